"""``deploy --plan`` in full: every pin that changes, a diff of the buildout files, programs,
restarts and the backup; read from the host, which it leaves unchanged (issue 12, item 5)."""
from __future__ import annotations

import os
import zipfile
from pathlib import Path

import pytest

from fabfile.pipeline import plan
from sites import make_site

PROBE = "bd-plan-probe"


def make_wheel(directory: Path, version: str) -> Path:
    """A pure-Python wheel of ``PROBE`` at ``version``: a pin nothing requires, offered by find-links."""
    module = PROBE.replace("-", "_")
    path = directory / f"{module}-{version}-py3-none-any.whl"
    info = f"{module}-{version}.dist-info"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr(f"{module}.py", "")
        archive.writestr(f"{info}/METADATA", f"Metadata-Version: 2.1\nName: {PROBE}\nVersion: {version}\n\n")
        archive.writestr(f"{info}/WHEEL", "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\n"
                                          "Tag: py3-none-any\n")
        archive.writestr(f"{info}/RECORD", "")
    return path


# -- the pure parts -------------------------------------------------------------

def test_pin_changes_name_old_and_new_added_and_removed():
    assert plan.pin_changes({"zeo": "6.2", "waitress": "3.0.2", "gone": "1"},
                            {"zeo": "6.3", "waitress": "3.0.2", "new": "2"}) == [
        "  gone: removed (was 1)", "  new: added 2", "  zeo: 6.2 -> 6.3"]


def test_pins_come_from_the_manifests_distributions():
    manifest = {"dists": {"ZEO-6.2-py3-none-any.whl": "x", "zope_interface-8.7-cp311-cp311-linux_x86_64.whl": "y",
                          "demoapp-1.0.post2+src.ab-py3-none-any.whl": "z", "odd.tar.gz": "w"}}
    assert plan.pins_of(manifest) == {"zeo": "6.2", "zope-interface": "8.7", "demoapp": "1.0.post2+src.ab"}


def test_a_script_uses_a_pin_when_its_egg_is_on_its_path():
    script = "sys.path[0:0] = [\n  '/srv/eggs/zope.interface-8.7-py3.11-linux-x86_64.egg',\n  '/srv/eggs/ZEO-6.2-py3.11.egg']"
    assert plan.uses_pin(script, "zope-interface", "8.7")
    assert plan.uses_pin(script, "zeo", "6.2")
    assert not plan.uses_pin(script, "zeo", "6")
    assert not plan.uses_pin(script, "demoapp", "1.0")


def test_the_programs_of_a_supervisor_config_with_twins_as_one():
    text = "[supervisord]\nx = 1\n[program:zeoserver]\n[program:instance1-blue]\n[program:instance1-green]\n"
    assert plan.supervisor_programs(text) == {"zeoserver", "instance1"}
    assert plan.supervisor_programs(None) is None


def test_a_file_diff_is_unified_against_the_current_release():
    diff = plan.file_diff("base.cfg", "[a]\nx = 1\n", "[a]\nx = 2\n")
    assert diff[:2] == ["--- current/base.cfg", "+++ new/base.cfg"]
    assert "-x = 1" in diff and "+x = 2" in diff


# -- on the sandbox host ----------------------------------------------------------

@pytest.fixture(scope="module")
def site(sandbox_host, tmp_path_factory):
    from fabfile.paths import CACHE
    workdir = tmp_path_factory.mktemp("plan")
    offered = workdir / "offered"
    offered.mkdir()
    for version in ("1.0", "2.0"):
        make_wheel(offered, version)
    test_site = make_site(workdir, sandbox_host)
    versions = test_site.buildout / "versions.cfg"
    versions.write_text(versions.read_text() + f"{PROBE} = 1.0\n")
    test_site.env["PIP_FIND_LINKS"] = " ".join(filter(None, [os.environ.get("PIP_FIND_LINKS"), str(offered)]))
    yield test_site
    test_site.stop_everything()
    for left in (CACHE / "dists").glob(f"{PROBE.replace('-', '_')}-*"):
        left.unlink()


def host_state(site) -> dict:
    """What a plan must not change: releases, current, dists, the lock, the deploy log."""
    root = site.root
    return {"releases": sorted(p.name for p in (root / "releases").iterdir()), "current": os.readlink(root / "current"),
            "dists": sorted(p.name for p in (root / "dists").iterdir()), "lock": (root / ".lock").exists(),
            "log": (root / "deploy.log").read_text(), "mtime": (root / "releases").stat().st_mtime_ns}


def test_the_plan_lists_a_changed_pin_and_changes_nothing(site):
    site.fab("deploy")
    before = host_state(site)
    versions = site.buildout / "versions.cfg"
    versions.write_text(versions.read_text().replace(f"{PROBE} = 1.0", f"{PROBE} = 2.0"))
    result = site.fab("deploy", "--plan")
    assert f"  {PROBE}: 1.0 -> 2.0" in result.stdout, result.stdout
    assert "pins: 1 change" in result.stdout
    assert f"+{PROBE} = 2.0" in result.stdout and f"-{PROBE} = 1.0" in result.stdout  # versions.cfg's diff
    assert "programs (against the current release's supervisord.conf): unchanged" in result.stdout
    # no front: stopstart, every program restarts, and the plan says so
    assert "zeoserver: restarts (stopstart" in result.stdout and "instance2: restarts (stopstart" in result.stdout
    assert "backup: runs before the switch" in result.stdout
    assert "plan only: the host is unchanged" in result.stdout
    assert host_state(site) == before


def test_the_plan_shows_a_changed_option_as_a_diff_line(site):
    before = host_state(site)
    base = site.buildout / "base.cfg"
    base.write_text(base.read_text().replace("show-picked-versions = true", "show-picked-versions = false"))
    result = site.fab("deploy", "--plan")
    assert "--- current/base.cfg" in result.stdout and "+++ new/base.cfg" in result.stdout
    assert "-show-picked-versions = true" in result.stdout
    assert "+show-picked-versions = false" in result.stdout
    assert host_state(site) == before
