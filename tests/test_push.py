"""Integration: ``push`` builds beside the serving release and ``deploy`` then only switches; then
commands in the site (``run``, ``instance-run``, ``pack``) on the same deployed site.

The tests run in order on one site, as a user would type the commands.
"""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sites import FAB, REPO, make_site

VENV_BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def site(sandbox_host, tmp_path_factory):
    test_site = make_site(tmp_path_factory.mktemp("push"), sandbox_host)
    with open(test_site.env["DEPLOY_HOSTCONFIGS"] + "/test.cfg", "a") as cfg:
        cfg.write(f"[backup]\nzeopack = {VENV_BIN / 'zeopack'} 127.0.0.1:{test_site.ports['zeo']}\n")
    test_site.fab("deploy")
    test_site.first = test_site.current()
    test_site.first_version = test_site.get("version")
    yield test_site
    test_site.stop_everything()


def test_push_builds_a_release_that_is_not_current_while_the_old_one_serves(site):
    site.add("before push", "blob")
    site.change_code("# pushed, not switched")
    result = site.fab("push")
    pushed = [r for r in site.release_ids() if r != site.first]
    assert len(pushed) == 1
    site.pushed = pushed[0]
    assert (site.root / "releases" / site.pushed / ".deploy" / "built.json").exists()
    assert (site.root / "releases" / site.pushed / "bin" / "instance1").exists()
    assert site.current() == site.first
    assert site.get("version") == site.first_version
    assert f"pushed {site.pushed}" in result.stdout and "▸ buildout" in result.stdout
    assert "switch" not in result.stdout.replace("deploy switches", "")
    assert [e["event"] for e in site.deploy_log()][-1] == "push"


def test_releases_shows_the_pushed_release_built_and_not_current(site):
    table = site.fab("releases").stdout
    row = next(line for line in table.splitlines() if site.pushed in line)
    assert "current" not in row and "(not built)" not in row and "bad" not in row
    assert "current" in next(line for line in table.splitlines() if site.first in line)


def test_a_second_push_of_the_same_content_does_nothing_and_says_so(site):
    before = site.release_ids()
    result = site.fab("push")
    assert f"nothing to push: {site.pushed} is built already" in result.stdout
    assert "▸ buildout" not in result.stdout and "▸ push" not in result.stdout
    assert site.release_ids() == before


def test_deploy_after_push_only_switches_and_serves_the_new_code(site):
    result = site.fab("deploy")
    assert f"{site.pushed} is built already: switching to it" in result.stdout
    assert "▸ buildout" not in result.stdout and "▸ push" not in result.stdout
    assert site.current() == site.pushed
    assert site.get("version") != site.first_version
    assert [o["title"] for o in site.objects()] == ["before push"]


def test_push_of_what_is_current_does_nothing(site):
    result = site.fab("push")
    assert f"nothing to push: {site.pushed} is current" in result.stdout


def test_push_stops_at_the_deploy_lock_naming_its_holder(site):
    lock = site.root / ".lock"
    keeper = subprocess.Popen(["sleep", "60"])
    lock.mkdir()
    (lock / "holder").write_text("someone since now for deploy\n")
    (lock / "pid").write_text(f"{keeper.pid}\n")
    try:
        result = site.fab("push", check=False)
    finally:
        keeper.kill()
        keeper.wait()
        for name in ("holder", "pid"):
            (lock / name).unlink()
        lock.rmdir()
    assert result.returncode == 1 and "is locked by someone since now for deploy" in result.stderr


# -- commands in the site ------------------------------------------------------

def test_run_passes_the_exit_code_on(site):
    assert site.fab("run", "--", "sh", "-c", "exit 7", check=False).returncode == 7
    assert site.fab("run", "--", "true").returncode == 0


def test_run_arguments_cannot_run_another_command(site):
    marker = site.workdir / "must-not-exist"
    for text in (f"a; touch {marker}", f"$(touch {marker})", f"`touch {marker}`", f"a && touch {marker}"):
        result = site.fab("run", "--", "echo", text)
        assert result.stdout.strip().splitlines()[-1] == text
        assert not marker.exists()


def test_run_runs_in_current_with_the_site_bin_first_on_path(site):
    out = site.fab("run", "--", "sh", "-c", 'pwd; echo "$PATH"').stdout.splitlines()
    assert out[0] == str(site.root / "current")
    assert out[1].startswith(f"{site.root}/current/bin:{site.root}/venv/bin:")


def test_run_streams_its_output(site):
    fab = subprocess.Popen([FAB, "-H", "test", "run", "--", "sh", "-c", "echo first; sleep 4; echo second"],
                           cwd=REPO, stdout=subprocess.PIPE, text=True, env={**os.environ, **site.env})
    try:
        assert fab.stdout.readline().strip() == "first"
        assert fab.poll() is None  # still running: the line came while the command slept
        started = time.monotonic()
        assert fab.stdout.readline().strip() == "second"
        assert time.monotonic() - started > 2
    finally:
        fab.wait(timeout=30)
    assert fab.returncode == 0


def test_instance_run_runs_a_local_script_with_the_instance_eggs(site, tmp_path):
    script = tmp_path / "hello.py"
    script.write_text("import sys\nimport demoapp.storage\n"
                      "print('hello from', demoapp.storage.__name__, sys.argv[1:])\nsys.exit(3)\n")
    result = site.fab("instance-run", str(script), "--", "one arg", "two", check=False)
    assert "hello from demoapp.storage ['one arg', 'two']" in result.stdout
    assert result.returncode == 3
    assert "not a Zope instance script" in result.stderr
    assert not list(site.root.glob(".instance-run-*"))


def test_pack_packs_the_storage_and_logs_it(site):
    site.add("to pack", "more blob")
    old = site.root / "var" / "filestorage" / "Data.fs.old"
    assert not old.exists()
    result = site.fab("pack", "--days", "0")
    assert "packed the storage of test, keeping 0 days" in result.stdout
    assert old.exists()  # what a FileStorage pack leaves
    assert [e for e in site.deploy_log() if e["event"] == "pack"][-1]["days"] == 0
    assert [o["title"] for o in site.objects()] == ["before push", "to pack"]
    assert site.fab("pack", "--days", "soon", check=False).returncode == 2
