"""Fixtures for the integration tests, and the rule that CI skips nothing."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from sandbox import sshd
from support import free_port, in_ci, require


@pytest.fixture(scope="session")
def sandbox_host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[sshd.Sandbox]:
    """An OpenSSH server on 127.0.0.1, run as the current user, for the whole session."""
    require(sshd.find_sshd(), sshd.MISSING_SSHD)
    state_dir = tmp_path_factory.mktemp("sandbox")
    sandbox = sshd.start(state_dir, port=free_port())
    try:
        yield sandbox
    finally:
        sshd.stop(state_dir)


# Modules that share something outside their own temporary directories run on one worker, one after
# the other: the test hosts (network namespaces, addresses, the debootstrap cache), the crontab of
# this login.
SHARED = {"test_bootstrap": "test hosts", "test_bootstrap_systemd": "test hosts",
          "test_backup_schedule": "crontab", "test_alerts": "crontab"}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Under pytest-xdist (``make test``: ``-n 2 --dist loadgroup``), keep each module on one worker, so
    its module-scoped site is deployed once, and the modules in ``SHARED`` together."""
    for item in items:
        module = item.module.__name__.rsplit(".", 1)[-1] if item.module else item.nodeid
        item.add_marker(pytest.mark.xdist_group(SHARED.get(module, module)))


def _skipped(config: pytest.Config) -> list[pytest.TestReport]:
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    return reporter.stats.get("skipped", []) if reporter else []


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """In CI, a session that skipped anything fails."""
    if in_ci() and exitstatus == pytest.ExitCode.OK and _skipped(session.config):
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    """Say why a CI session with skipped tests fails."""
    skipped = _skipped(config)
    if in_ci() and skipped:
        terminalreporter.write_line(
            f"CI=true: {len(skipped)} test(s) skipped; CI must run every test, "
            "so this session fails.",
            red=True,
            bold=True,
        )
