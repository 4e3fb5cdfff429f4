"""Integration: ``switch = bluegreen`` behind HAProxy on the sandbox host, under a bounded load.

The new release's instances start beside the serving ones (the other set of ports),
the front flips in one go, and the old set stays warm for ``keep_warm`` seconds: a
rollback then flips back and starts no program. The tests run in order on one site.
"""
from __future__ import annotations

import re
import shutil
import subprocess
import time

import pytest

from sandbox.load import Load
from sites import make_site
from support import free_port, require
from test_front import DOMAIN, assert_no_request_failed, front_extra, request, stop_front

KEEP_WARM = 25


@pytest.fixture(scope="module")
def site(sandbox_host, tmp_path_factory):
    require(shutil.which("haproxy"), "haproxy not found: apt-get install haproxy")
    require(shutil.which("openssl"), "openssl not found: apt-get install openssl")
    ports, green = (free_port(), free_port()), {"instance1": free_port(), "instance2": free_port()}
    extra = (front_extra(*ports) + f"keep_warm = {KEEP_WARM}\n[green]\n"
             + "".join(f"ports:{name} = {port}\n" for name, port in green.items()))
    test_site = make_site(tmp_path_factory.mktemp("bluegreen"), sandbox_host, extra, deploy="switch = bluegreen\n",
                          program_options={name: f"green_address = 127.0.0.1:{port}\n" for name, port in green.items()})
    test_site.front_ports = ports
    yield test_site
    test_site.stop_everything()
    stop_front(test_site)


def pids(site) -> dict[str, str]:
    """Every supervisor program's pid (empty when it does not run)."""
    ctl = site.root / "venv" / "bin" / "supervisorctl"
    conf = site.root / "current" / "etc" / "supervisord.conf"
    names = ("zeoserver", "instance1-blue", "instance2-blue", "instance1-green", "instance2-green")
    found = {}
    for name in names:
        answer = subprocess.run([str(ctl), "-c", str(conf), "pid", name], capture_output=True, text=True).stdout.strip()
        found[name] = answer if answer.isdigit() and answer != "0" else ""
    return found


def test_the_first_deploy_serves_the_blue_set(site):
    site.fab("deploy")
    running = pids(site)
    assert running["instance1-blue"] and running["instance2-blue"] and running["zeoserver"]
    assert not running["instance1-green"] and not running["instance2-green"]
    assert request(site)[0] == 200


def test_a_change_starts_the_green_set_beside_and_flips_without_a_failed_request(site):
    before = pids(site)
    site.change_code("# blue/green: a code change")
    with Load(site.front_ports[1], DOMAIN) as load:
        result = site.fab("deploy")
    assert_no_request_failed(site, load)
    flip = float(re.search(r"front flipped to the green set in ([\d.]+)s", result.stdout).group(1))
    assert flip < 0.5, result.stdout
    after = pids(site)
    assert after["instance1-green"] and after["instance2-green"]
    # the old set stays warm, the ZEO server was not touched
    assert (after["instance1-blue"], after["zeoserver"]) == (before["instance1-blue"], before["zeoserver"])
    assert (site.root / "green").resolve() == (site.root / "current").resolve()


def test_a_rollback_within_keep_warm_flips_back_and_starts_no_program(site):
    before = pids(site)
    leaving = site.current()
    with Load(site.front_ports[1], DOMAIN) as load:
        started = time.monotonic()
        result = site.fab("rollback")
        seconds = time.monotonic() - started
    assert site.current() != leaving
    assert_no_request_failed(site, load)
    assert "front flipped to the blue set" in result.stdout
    assert "started and healthy" not in result.stdout and "(kept warm): nothing to start" in result.stdout
    assert pids(site) == before, "a program was started or stopped"
    print(f"rollback within keep_warm: {seconds:.2f}s")


def test_the_warm_set_stops_after_keep_warm(site):
    deadline = time.monotonic() + KEEP_WARM + 30
    while pids(site)["instance1-green"] and time.monotonic() < deadline:
        time.sleep(1)
    running = pids(site)
    assert not running["instance1-green"] and not running["instance2-green"]
    assert running["instance1-blue"] and request(site)[0] == 200


def test_a_new_set_that_fails_its_health_check_is_never_flipped_to(site):
    leaving = site.current()
    site.change_code("import demoapp.app as _app\n"
                     "_app.DemoApp.health = lambda self, environ: _app.text('503 Service Unavailable', 'broken')")
    try:
        with Load(site.front_ports[1], DOMAIN) as load:
            result = site.fab("deploy", check=False)
    finally:
        site.change_code("# health fixed again")
    assert result.returncode == 1 and "health check failed" in result.stdout + result.stderr
    assert "front flipped" not in result.stdout
    assert site.current() == leaving
    assert_no_request_failed(site, load)
    running = pids(site)
    assert not running["instance1-green"] and running["instance1-blue"]
