"""``[hooks]``: checked at load time, and run around real deploys to the sandbox host.

The integration tests run in order on one site; between deploys they rewrite the
site's ``[hooks]`` section, as a user would edit the hostconfig.
"""
from __future__ import annotations

import os
import shlex
import time
from pathlib import Path

import pytest

from fabfile.switch import hooks, job as switch
from fabfile.config import hostconfig
from fabfile.config.hostconfig import ConfigError
from sites import make_site

SECRET = "hook-s3cret-value"

CONFIG = """
[host]
address = plone.example.org
root = /srv/mysite
[buildout]
directory = ../example
[services]
programs = zeoserver instance1
[program:instance1]
health_url = http://127.0.0.1:8081/
"""


def load(tmp_path: Path, hooks_section: str, environ: dict | None = None) -> hostconfig.HostConfig:
    path = tmp_path / "p.cfg"
    path.write_text(CONFIG + "[hooks]\n" + hooks_section)
    return hostconfig.load(path, environ=environ or {})


# -- the config ------------------------------------------------------------------------------------

def test_hooks_are_read_with_a_default_timeout(tmp_path):
    config = load(tmp_path, "before_switch = bin/instance run upgrade.py\nafter_switch = curl -f localhost\n")
    assert config.hook("before_switch") == "bin/instance run upgrade.py"
    assert config.hook("before_deploy") is None
    assert config.hook_timeout == 600


@pytest.mark.parametrize("section, message", [
    ("after_switch = echo one\n  echo two\n", "line break"),
    ("before_deploy =\n", "is empty"),
    ("before_switch = echo 'unclosed\n", "close every quote"),
    ("after_deploy = echo\n", "unknown key"),
    ("hook_timeout = 0\n", "out of range"),
])
def test_a_hook_that_is_not_one_shell_line_is_refused_at_load_time(tmp_path, section, message):
    with pytest.raises(ConfigError, match=message):
        load(tmp_path, section)


def test_a_hook_on_the_host_runs_from_its_private_file_bounded_by_timeout(tmp_path):
    config = load(tmp_path, f"before_switch = echo ${{env:TOKEN}}\nhook_timeout = 30\n", {"TOKEN": SECRET})
    command = hooks.remote_command(config, "before_switch", "/srv/mysite/releases/r2")
    assert command.startswith("cd /srv/mysite/releases/r2 && sh -c ")
    assert command.endswith(" sh -k 10 30 sh /srv/mysite/.hooks/before_switch.sh")
    assert shlex.split(command.split(" && ", 1)[1])[2] == hooks.GROUP_ENDS_WITH_IT
    assert SECRET not in command


def test_the_switch_job_gets_after_switch_in_its_plan_never_in_a_command(tmp_path):
    config = load(tmp_path, f"after_switch = check ${{env:TOKEN}}\n", {"TOKEN": SECRET})
    plan = switch.build_plan(config, "r2", "r1", "job", with_hooks=True)
    hook = plan["hooks"]["after_switch"]
    assert (hook["line"], hook["directory"]) == (f"check {SECRET}", "/srv/mysite/current")
    assert SECRET not in hook["command"] and shlex.split(hook["command"])[4:] == ["-k", "10", "600", "sh", "-c",
                                                                                    hooks.EVAL]
    assert plan["hooks"]["after_rollback"] is None
    assert switch.build_plan(config, "r2", "r1", "job")["hooks"] == {}  # a restart, a rollback: no hooks


# -- deploys ---------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def site(sandbox_host, tmp_path_factory):
    test_site = make_site(tmp_path_factory.mktemp("hooks"), sandbox_host, "[hooks]\n")
    test_site.env["HOOK_SECRET"] = SECRET
    yield test_site
    test_site.stop_everything()


def set_hooks(site, **keys) -> None:
    """The site's ``[hooks]`` section, rewritten with ``keys``."""
    path = site.workdir / "hostconfigs" / "test.cfg"
    base = path.read_text().split("[hooks]\n")[0]
    path.write_text(base + "[hooks]\n" + "".join(f"{key} = {value}\n" for key, value in keys.items()))


def hook_events(site) -> list[dict]:
    return [event for event in site.deploy_log() if event["event"] == "hook"]


def release_dir(site, release: str) -> str:
    return os.path.realpath(site.root / "releases" / release)


def bad_reason(site, release: str) -> str | None:
    path = site.root / "releases" / release / ".deploy" / "bad.json"
    return path.read_text() if path.exists() else None


def no_process_runs(command_line: str) -> bool:
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if command_line in Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode():
                return False
        except OSError:
            continue
    return True


def test_every_hook_runs_in_its_place_with_its_output_shown_and_secrets_redacted(site):
    set_hooks(site, before_deploy='echo "before_deploy in $(pwd -P) sees ${env:HOOK_SECRET}"',
              before_switch="pwd -P > before_switch.ran && echo upgrade step done",
              after_switch='echo "after_switch in $(pwd -P) sees ${env:HOOK_SECRET}"')
    result = site.fab("deploy")
    current = site.current()
    assert f"before_deploy in {os.path.realpath(site.buildout)} sees ***" in result.stdout
    assert "upgrade step done" in result.stdout
    assert (site.root / "releases" / current / "before_switch.ran").read_text().strip() == release_dir(site, current)
    assert f"after_switch in {release_dir(site, current)} sees ***" in result.stdout
    assert SECRET not in result.stdout + result.stderr
    assert SECRET not in (site.root / "deploy.log").read_text()
    events = hook_events(site)
    assert [e["hook"] for e in events] == ["before_deploy", "before_switch", "after_switch"]
    assert all(e["exit"] == 0 and isinstance(e["seconds"], float) and not e["timed_out"] for e in events)
    assert site.answers()


def test_a_failing_before_deploy_stops_the_deploy_with_nothing_sent(site):
    site.change_code("# a change the site's tests refuse")
    set_hooks(site, before_deploy="echo 2 tests failed; exit 3")
    before = (site.current(), site.release_ids(), sorted(p.name for p in (site.root / "dists").iterdir()))
    result = site.fab("deploy", check=False)
    assert result.returncode == 1
    assert "2 tests failed" in result.stdout
    assert "before_deploy hook failed (exit 3): nothing was sent" in result.stderr
    assert (site.current(), site.release_ids(), sorted(p.name for p in (site.root / "dists").iterdir())) == before
    assert hook_events(site)[-1]["exit"] == 3
    assert site.answers()


def test_a_before_deploy_that_hangs_is_stopped_after_hook_timeout(site):
    set_hooks(site, before_deploy="echo waiting; sleep 61.25", hook_timeout=2)
    started = time.monotonic()
    result = site.fab("deploy", check=False)
    assert result.returncode == 1 and time.monotonic() - started < 60
    assert "before_deploy hook stopped after 2s ([hooks] hook_timeout)" in result.stderr
    assert hook_events(site)[-1]["timed_out"] is True
    assert no_process_runs("sleep 61.25")


def test_a_failing_before_switch_leaves_the_old_release_serving_and_marks_the_new_one_bad(site):
    set_hooks(site, before_switch="echo upgrading the catalog; exit 4")
    current, version, before = site.current(), site.get("version"), set(site.release_ids())
    result = site.fab("deploy", check=False)
    assert result.returncode == 1
    assert "upgrading the catalog" in result.stdout
    assert "before_switch hook failed (exit 4); nothing was switched" in result.stderr
    assert site.current() == current and site.answers() and site.get("version") == version
    [new] = set(site.release_ids()) - before
    assert "before_switch hook failed (exit 4)" in bad_reason(site, new)
    assert "bad: before_switch hook failed" in site.fab("releases").stdout


def test_an_after_switch_hook_that_hangs_rolls_back_and_after_rollback_runs(site):
    site.change_code("# a change whose smoke test hangs")
    ran = site.workdir / "after_rollback.ran"
    set_hooks(site, after_switch="echo smoke test; sleep 62.25", hook_timeout=3, after_rollback=f"pwd -P > {ran}")
    current, version, before = site.current(), site.get("version"), set(site.release_ids())
    result = site.fab("deploy", check=False)
    assert result.returncode == 1
    assert "smoke test" in result.stdout
    assert "after_switch hook stopped after 3s" in result.stderr and f"{current} is current again" in result.stderr
    assert site.current() == current and site.answers() and site.get("version") == version
    [new] = set(site.release_ids()) - before
    assert "after_switch hook stopped" in bad_reason(site, new)
    assert ran.read_text().strip() == release_dir(site, current)
    last = {e["hook"]: e for e in hook_events(site)[-2:]}
    assert last["after_switch"]["timed_out"] is True and last["after_rollback"]["exit"] == 0
    assert no_process_runs("sleep 62.25")


def test_what_a_hook_leaves_running_ends_with_it_so_the_deploy_does_not_wait(site):
    """A hook that starts a child holding its output (``cmd &``) and ends: the child ends with it, here
    and on the host, and the deploy goes on (it waited for the child before: "hook ok in 90.1s")."""
    site.change_code("# a change whose hooks leave children")
    set_hooks(site, before_deploy="sleep 41.5 & echo started here", before_switch="sleep 42.5 & echo started there",
              hook_timeout=30)
    started = time.monotonic()
    result = site.fab("deploy")
    assert "started here" in result.stdout and "started there" in result.stdout
    assert time.monotonic() - started < 40, result.stdout
    events = {e["hook"]: e for e in hook_events(site)[-2:]}
    assert events["before_deploy"]["seconds"] < 5 and events["before_switch"]["seconds"] < 5, events
    assert no_process_runs("sleep 41.5") and no_process_runs("sleep 42.5")


def test_a_hook_that_prints_megabytes_keeps_its_first_and_last_64_kb_in_the_job_log(site):
    site.change_code("# a change whose smoke test talks a lot")
    set_hooks(site, after_switch="echo first line; yes 'x' | head -c 3000000; echo; echo last line")
    result = site.fab("deploy")
    assert "first line" in result.stdout and "last line" in result.stdout
    log = max((site.root / ".switch").glob("*.log"), key=lambda path: path.stat().st_mtime)
    text = log.read_text()
    assert log.stat().st_size < 200_000, log.stat().st_size
    assert "first line" in text and "last line" in text and "bytes of output left out" in text


def test_fab_rollback_runs_after_rollback_in_the_release_it_went_back_to(site):
    ran = site.workdir / "after_rollback.ran"
    ran.unlink(missing_ok=True)
    set_hooks(site, after_rollback=f'pwd -P > {ran} && echo "caches warmed"')
    site.change_code("# a good change")
    previous = site.current()
    site.fab("deploy")
    assert site.current() != previous and not ran.exists()
    result = site.fab("rollback")
    assert site.current() == previous and site.answers()
    assert "caches warmed" in result.stdout
    assert ran.read_text().strip() == release_dir(site, previous)
    assert hook_events(site)[-1]["hook"] == "after_rollback"
