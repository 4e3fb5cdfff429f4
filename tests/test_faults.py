"""Fault injection: the client killed (SIGINT, SIGKILL) at each step of a deploy and a rollback.

The signal lands when the tool's own output shows the step starting, as a user's Ctrl-C
would. After each: the site serves through the front and on every health URL, the data
equals what was stored before, and the next plain command (no --force-unlock, no step on
the host) succeeds.
"""
from __future__ import annotations

import fcntl
import os
import shutil
import signal
import subprocess
import time

import pytest

from sites import FAB, REPO, make_site
from support import free_port, require
from test_front import front_extra, request, stop_front

# (what the output shows when the signal lands, which signal)
DEPLOY_POINTS = [(marker, sig) for marker in ("▸ buildout", "out of the front", "▸ cleanup")
                 for sig in (signal.SIGINT, signal.SIGKILL)]
ROLLBACK_POINTS = [("out of the front", sig) for sig in (signal.SIGINT, signal.SIGKILL)]


@pytest.fixture(scope="module")
def site(sandbox_host, tmp_path_factory):
    require(shutil.which("haproxy") or os.path.exists("/usr/sbin/haproxy"), "haproxy not found: apt-get install haproxy")
    ports = free_port(), free_port()
    test_site = make_site(tmp_path_factory.mktemp("faults"), sandbox_host, front_extra(*ports))
    test_site.front_ports = ports
    test_site.fab("deploy")
    test_site.add("before the faults", "kept")
    yield test_site
    test_site.stop_everything()
    stop_front(test_site)


def killed_at(site, marker: str, sig: int, *args: str) -> str:
    """Run ``fab ARGS``, send ``sig`` when a line with ``marker`` shows; its output."""
    process = subprocess.Popen([FAB, "-H", "test", *args], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True, env={**os.environ, **site.env})
    seen, deadline = [], time.monotonic() + 300
    try:
        for line in process.stdout:
            seen.append(line)
            if marker in line:
                process.send_signal(sig)
                break
            if time.monotonic() > deadline:
                break
        rest, _ = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
    output = "".join(seen) + (rest or "")
    assert any(marker in line for line in seen), f"{marker!r} never showed:\n{output}"
    return output


def wait_for_switch_jobs(site, seconds: float = 120) -> None:
    """A switch job left by a dead client finishes on the host: wait until none holds its lock."""
    path = site.root / ".switch" / "lock"
    deadline = time.monotonic() + seconds
    while path.exists() and time.monotonic() < deadline:
        with open(path, "a") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                pass
        time.sleep(0.2)


def assert_serving_with_the_data(site) -> None:
    wait_for_switch_jobs(site)
    assert site.answers("instance1") and site.answers("instance2")
    assert request(site)[0] == 200
    assert "before the faults" in [o["title"] for o in site.objects()]


@pytest.mark.parametrize("marker, sig", DEPLOY_POINTS,
                         ids=[f"{m.strip('▸ ').replace(' ', '-')}-{s.name}" for m, s in DEPLOY_POINTS])
def test_a_deploy_killed_at_each_step_leaves_a_serving_site_and_the_next_deploy_works(site, marker, sig):
    site.change_code(f"# fault: {marker} {sig.name}")
    killed_at(site, marker, sig, "deploy")
    assert_serving_with_the_data(site)
    result = site.fab("deploy")  # no --force-unlock, nothing done by hand
    assert "deployed" in result.stdout or "nothing to deploy" in result.stdout
    assert_serving_with_the_data(site)
    assert not [r for r in site.release_ids() if (site.root / "releases" / r / ".deploy" / "bad.json").exists()]


@pytest.mark.parametrize("marker, sig", ROLLBACK_POINTS, ids=[f"mid-switch-{s.name}" for _, s in ROLLBACK_POINTS])
def test_a_rollback_killed_mid_switch_finishes_on_the_host(site, marker, sig):
    leaving = site.current()
    killed_at(site, marker, sig, "rollback")
    assert_serving_with_the_data(site)
    assert site.current() != leaving  # the job on the host finished the rollback
    site.change_code(f"# fault: after a killed rollback {sig.name}")
    site.fab("deploy")
    assert_serving_with_the_data(site)
