# make demo / make test / make docs: set-up included, nothing else needed.

PYTHON ?= python3
VENV := .venv
# pytest-xdist workers for make test (each module stays on one: tests/conftest.py)
WORKERS ?= 3
BIN := $(VENV)/bin

.PHONY: venv docs-venv ensure-dot ensure-sshd sandbox sandbox-stop test demo demo-stop bench docs

venv: $(VENV)/.stamp

# Re-run only when requirements.txt changes. A venv without pip (made where
# python3-venv was missing) is made again rather than half-used.
$(VENV)/.stamp: requirements.txt
	$(BIN)/python -m pip --version >/dev/null 2>&1 || $(PYTHON) -m venv --clear $(VENV)
	$(BIN)/python -m pip install -q -r requirements.txt
	touch $@

# The manual's own packages (requirements-docs.txt), on top of the project's venv.
docs-venv: $(VENV)/.docs-stamp

$(VENV)/.docs-stamp: $(VENV)/.stamp requirements-docs.txt
	$(BIN)/python -m pip install -q -r requirements-docs.txt
	touch $@

# Graphviz's dot draws the architecture's pictures (SVG) while the docs build.
ensure-dot:
	bash docs/ensure-dot.sh

ensure-sshd:
	bash sandbox/ensure-sshd.sh

sandbox: venv ensure-sshd
	$(BIN)/python -m sandbox.sshd start

sandbox-stop:
	$(BIN)/python -m sandbox.sshd stop

test: venv ensure-sshd
	$(BIN)/pytest -q -n $(WORKERS) --dist loadfile --durations=15 tests

demo: venv ensure-sshd
	$(BIN)/invoke demo

demo-stop: venv
	$(BIN)/invoke demo-stop

bench: venv
	$(BIN)/invoke bench

# The manual: warnings are errors (a broken link or anchor, a key without a meaning);
# the references are made from the code as it builds. Opens at docs/_build/html/index.html.
docs: docs-venv ensure-dot
	$(BIN)/sphinx-build -W --keep-going -q -b html docs docs/_build/html
