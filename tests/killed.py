"""Helpers of the tests that SIGKILL the switch job at each step of a rolling and of a blue/green switch, under load.

The client says only what it read back afterwards; ``fab status`` names the dead job; one plain
``fab deploy`` puts the site on one whole release again (it undoes the dead switch from its
plan, then switches forward as any deploy does): the new release serves, every accepted write
is stored, and ``fab status`` exits 0.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import time

from sandbox.load import Load
from sites import make_site
from support import free_port, require
from test_drift import DOMAIN, assert_serving, assert_writes_stored, front_extra, stop_pid_file, supervisord_pids

ROLLING_STEPS = ["switch to", "zeoserver:", "instance1: out of the front", "instance1: back in the front",
                 "instance2: out of the front"]
BLUEGREEN_STEPS = ["switch to", "instance1-", "started and healthy", "front flipped"]


def make(mode: str, sandbox_host, tmp_path_factory):
    require(shutil.which("haproxy") or os.path.exists("/usr/sbin/haproxy"), "haproxy not found: apt-get install haproxy")
    ports = free_port(), free_port()
    if mode == "bluegreen":
        green = {"instance1": free_port(), "instance2": free_port()}
        extra = front_extra(*ports, "keep_warm = 5\n") + "[green]\n" + "".join(
            f"ports:{name} = {port}\n" for name, port in green.items())
        test_site = make_site(tmp_path_factory.mktemp("killed-bluegreen"), sandbox_host, extra,
                              deploy="switch = bluegreen\n",
                              program_options={n: f"green_address = 127.0.0.1:{p}\n" for n, p in green.items()})
    else:
        test_site = make_site(tmp_path_factory.mktemp("killed-rolling"), sandbox_host, front_extra(*ports))
    test_site.front_ports, test_site.mode = ports, mode
    test_site.green = green if mode == "bluegreen" else {}
    test_site.fab("deploy")
    return test_site


def tear_down(test_site) -> None:
    test_site.stop_everything()
    stop_pid_file(test_site.root / "front" / "run" / "haproxy.pid")


def newest_job_log(site, after: set[str]):
    directory = site.root / ".switch"
    found = sorted(p for p in directory.glob("*.log") if p.name[:1].isdigit() and p.name not in after)
    return found[-1] if found else None


def kill_the_job_at(site, step: str) -> tuple[str, str]:
    """Deploy a change; SIGKILL its switch job once its log shows ``step``; the client's output and the
    release the deploy was switching to."""
    seen = {p.name for p in (site.root / ".switch").glob("*.log")}
    deploy = site.fab_in_background("deploy")
    deadline = time.monotonic() + 240
    log = None
    while time.monotonic() < deadline and deploy.poll() is None:
        log = log or newest_job_log(site, seen)
        if log and step in log.read_text():
            break
        time.sleep(0.05)
    assert deploy.poll() is None, f"the deploy ended before the job reached {step!r}:\n{deploy.stdout.read()}"
    holder = (site.root / ".switch" / "lock").read_text().split()
    pid = int(holder[holder.index("pid") + 1])
    plan = json.loads((site.root / ".switch" / log.name.replace(".log", ".json")).read_text())
    os.kill(pid, signal.SIGKILL)
    said, _ = deploy.communicate(timeout=300)
    assert deploy.returncode == 1, said
    return said, plan["release"]


def killed_then_deployed(site, step: str) -> None:
    site.change_code(f"# killed at {step}")
    time.sleep(0 if site.mode == "rolling" else 6)  # blue/green: the warm set of the last switch cooled down
    with Load(site.front_ports[1], DOMAIN) as load:
        said, release = kill_the_job_at(site, step)
        assert "is current again" not in said, said
        assert "died" in said and "read back" in said, said
        code = site.fab("status", "--json", check=False)
        assert code.returncode != 0 and "job-died" in code.stdout, code.stdout
        result = site.fab("deploy")
    assert site.current() == release, result.stdout
    print(result.stdout)  # shown when a check below fails
    assert len(supervisord_pids(site)) == 1
    assert_writes_stored(site, load)
    assert_serving(site, release)
