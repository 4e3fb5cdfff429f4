"""What every ``fab`` pays before its task starts: the task list loads no engine.

``fab --list``, a rollback and a no-op all import ``fabfile`` first; the engines (zc.buildout and
pip's internals, ZODB, the config readers, the pipeline) load when a task that needs them runs.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

PROJECT = Path(__file__).resolve().parent.parent

LOADED = ("import json, sys, fabfile; print(json.dumps(sorted(sys.modules)))")


def loaded_after(code: str) -> set[str]:
    result = subprocess.run([sys.executable, "-c", code], cwd=PROJECT, capture_output=True, text=True, check=True)
    return set(json.loads(result.stdout.splitlines()[-1]))


def test_the_task_list_loads_no_engine_of_ours_and_none_of_the_heavy_libraries():
    modules = loaded_after(LOADED)
    ours = sorted(m for m in modules if m.startswith("fabfile."))
    assert [m for m in ours if not m.startswith("fabfile.tasks")] == [
        "fabfile.arguments", "fabfile.data", "fabfile.data.helptexts", "fabfile.paths"], ours
    heavy = ("zc.buildout", "pip", "setuptools", "ZODB", "packaging", "rich", "fabfile.config", "fabfile.pipeline")
    assert sorted(m for m in modules if any(m == name or m.startswith(name + ".") for name in heavy)) == []


def test_the_deploy_engine_reads_profiles_without_zc_buildouts_patches():
    modules = loaded_after("import json, sys; from fabfile.pipeline import deploy; print(json.dumps(sorted(sys.modules)))")
    assert "fabfile.config.hostconfig" in modules and "fabfile.buildout.profile" in modules
    # the buildout parser is loaded alone: zc.buildout's own __init__ patches pip and setuptools
    assert "zc.buildout" not in modules and "pip._internal.index.collector" not in modules


def test_fab_list_names_every_task():
    result = subprocess.run([str(PROJECT / ".venv" / "bin" / "fab"), "--list"], cwd=PROJECT, capture_output=True,
                            text=True, check=True)
    for name in ("deploy", "rollback", "status", "backup", "restore", "copy-data", "schedule", "bootstrap-host"):
        assert f"  {name} " in result.stdout
