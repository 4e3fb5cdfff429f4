"""Faults a clumsy or hostile operator leaves behind, on a real sshd, supervisor and HAProxy, under load.

Each test breaks the running site the way an operator would (a deleted socket, a killed front,
another process on a port, an edited config, a job killed mid-switch), checks that ``fab status``
says so (non-zero, the kind named), then runs one plain command and checks that the site serves
the release it should, every accepted write is stored, and ``fab status`` exits 0 only then.
"""
from __future__ import annotations

import http.client
import json
import os
import ssl
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections import Counter

import pytest

from sandbox.load import Load
from sites import make_site
from support import free_port, require

DOMAIN = "www.example.test"


def front_extra(http_port: int, https_port: int, more: str = "") -> str:
    return (f"[front]\nserver = haproxy\ncontrol = self\nbind = 127.0.0.1\nhttp_port = {http_port}\n"
            f"https_port = {https_port}\ntls = internal\ndomains = {DOMAIN}\nsite_path = /\ndrain_timeout = 10\n"
            f"{more}")


def stop_pid_file(path) -> None:
    if path.exists():
        try:
            os.kill(int(path.read_text().split()[0]), signal.SIGTERM)
        except (ProcessLookupError, ValueError):
            pass


@pytest.fixture(scope="module")
def site(sandbox_host, tmp_path_factory):
    require(shutil.which("haproxy") or os.path.exists("/usr/sbin/haproxy"), "haproxy not found: apt-get install haproxy")
    ports = free_port(), free_port()
    test_site = make_site(tmp_path_factory.mktemp("drift"), sandbox_host, front_extra(*ports))
    test_site.front_ports = ports
    test_site.fab("deploy")
    yield test_site
    test_site.stop_everything()
    stop_pid_file(test_site.root / "front" / "run" / "haproxy.pid")


def status(site) -> tuple[int, dict]:
    result = site.fab("status", "--json", check=False)
    return result.returncode, json.loads(result.stdout)


def assert_serving(site, release: str | None = None) -> None:
    """``release`` current, every program of it running, the front answering, ``status`` 0."""
    code, found = status(site)
    assert code == 0, json.dumps(found, indent=1)  # a string: shown whole when it fails
    assert found["drift"] == []
    if release:
        assert site.current() == release
        serving = [p for name, p in found["programs"].items() if name.startswith("instance")
                   and (found["serving_set"] is None or name.endswith(found["serving_set"]))]
        assert serving and all(p["release"] == release for p in serving), found
    assert front_answers(site) == 200


def front_answers(site) -> int:
    context = ssl.create_default_context()
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    connection = http.client.HTTPSConnection("127.0.0.1", site.front_ports[1], timeout=10, context=context)
    try:
        connection.request("GET", "/", headers={"Host": DOMAIN})
        return connection.getresponse().status
    finally:
        connection.close()


def under_load(site) -> Load:
    return Load(site.front_ports[1], DOMAIN)


def objects(site) -> list[dict]:
    """The stored objects, read from whichever instance answers (blue/green: either set's)."""
    for port in (site.ports["instance1"], site.ports["instance2"], *getattr(site, "green", {}).values()):
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/objects.json", timeout=10) as response:
                return json.loads(response.read())
        except OSError:
            continue
    raise AssertionError("no instance answers")


def assert_writes_stored(site, load: Load) -> None:
    assert load.total > 20, f"the load sent only {load.total} requests"
    titles = Counter(o["title"] for o in objects(site))
    missing = [t for t in load.stored if titles[t] != 1]
    assert not missing, f"{len(missing)} accepted POSTs are not stored exactly once: {missing[:5]}"


def supervisord_pids(site) -> list[int]:
    found = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                command = open(f"/proc/{name}/cmdline", "rb").read().split(b"\0")
            except OSError:
                continue
            if any(part.endswith(b"/supervisord") for part in command) and str(site.root).encode() in b" ".join(command):
                found.append(int(name))
    return found


@pytest.fixture
def foreign(site):
    """A process that is not the site's, listening on a port: ``start(port)``; killed afterwards."""
    started = []

    def start(port: int) -> subprocess.Popen:
        process = subprocess.Popen([sys.executable, "-m", "http.server", "--bind", "127.0.0.1", str(port)],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        started.append(process)
        deadline = time.monotonic() + 10
        while subprocess.run(["sh", "-c", f"grep -qi ':{port:04X} 00000000:0000 0A' /proc/net/tcp"]).returncode:
            assert time.monotonic() < deadline and process.poll() is None, f"http.server did not listen on {port}"
            time.sleep(0.1)
        return process

    yield start
    for process in started:
        process.kill()
        process.wait(timeout=10)


def test_a_deployed_site_has_no_drift_and_status_says_so(site):
    assert_serving(site, site.current())
    result = site.fab("deploy")
    assert "nothing to deploy" in result.stdout and "repaired" not in result.stdout


def test_a_foreign_process_on_the_zeo_port_stops_a_first_deploy_before_anything_changes(sandbox_host,
                                                                                         tmp_path_factory, foreign):
    # a short root: the front's admin socket under it must fit a unix socket's path (HAProxy: 97 bytes)
    fresh = make_site(tmp_path_factory.mktemp("zp"), sandbox_host, front_extra(free_port(), free_port()))
    holder = foreign(fresh.ports["zeo"])
    result = fresh.fab("deploy", check=False)
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"port {fresh.ports['zeo']}" in result.stderr and f"pid {holder.pid}" in result.stderr
    assert "http.server" in result.stderr and "nothing was changed" in result.stderr
    assert not (fresh.root / "current").exists() and not (fresh.root / "releases").exists()
    assert holder.poll() is None  # the holder is named, never touched


def test_a_foreign_process_on_an_instance_port_stops_a_change_deploy(site, foreign):
    before, ids = site.current(), site.release_ids()
    ctl = [str(site.root / "venv" / "bin" / "supervisorctl"), "-c", str(site.root / "current" / "etc" / "supervisord.conf")]
    subprocess.run([*ctl, "stop", "instance2"], check=True, capture_output=True)
    holder = foreign(site.ports["instance2"])
    code, found = status(site)
    assert code == 3 and {"program-down", "port-taken"} <= {d["kind"] for d in found["drift"]}, found
    site.change_code("# drift: a change while another process holds instance2's port")
    result = site.fab("deploy", check=False)
    assert result.returncode == 1 and f"pid {holder.pid}" in result.stderr, result.stdout + result.stderr
    assert site.current() == before and site.release_ids() == ids  # refused before the build
    holder.kill()
    holder.wait(timeout=10)
    with under_load(site) as load:
        site.fab("deploy")
    assert site.current() != before
    assert_writes_stored(site, load)
    assert_serving(site, site.current())


def test_a_deleted_supervisor_socket_never_gets_a_second_supervisord(site):
    (site.root / "var" / "run" / "supervisor.sock").unlink()
    code, found = status(site)
    assert code == 3 and "manager-unreachable" in {d["kind"] for d in found["drift"]}, found
    site.change_code("# drift: a change after the supervisor socket went")
    with under_load(site) as load:
        result = site.fab("deploy")
    assert "stray supervisord" in result.stdout
    assert len(supervisord_pids(site)) == 1
    assert_writes_stored(site, load)
    assert_serving(site, site.current())


def test_a_killed_front_is_reported_and_started_by_a_deploy_of_the_same_content(site):
    pid = int((site.root / "front" / "run" / "haproxy.pid").read_text().split()[0])
    os.kill(pid, signal.SIGKILL)
    time.sleep(0.5)
    code, found = status(site)
    assert code == 6 and "front-down" in {d["kind"] for d in found["drift"]}, found
    result = site.fab("deploy")
    assert "nothing to deploy" in result.stdout and "repaired: front" in result.stdout
    assert_serving(site, site.current())


def test_a_front_config_edited_on_the_host_is_reported_and_written_again(site):
    path = site.root / "front" / "conf" / "site.cfg"
    path.write_text(path.read_text() + "\n# an operator was here\n")
    code, found = status(site)
    assert code == 6 and "front-config" in {d["kind"] for d in found["drift"]}, found
    site.fab("deploy")
    assert "an operator was here" not in path.read_text()
    assert_serving(site)


def test_a_front_only_change_is_deployed(site):
    config = site.workdir / "hostconfigs" / "test.cfg"
    before = config.read_text()
    config.write_text(before + "retry_after = 42\n")
    release = site.current()
    result = site.fab("deploy")
    assert "front config loaded" in result.stdout
    assert "Retry-After 42" in (site.root / "front" / "conf" / "site.cfg").read_text()
    assert_serving(site, release)


def test_maintenance_left_on_is_reported_and_a_deploy_turns_it_off(site):
    site.fab("maintenance", "on")
    code, found = status(site)
    assert code == 7 and "maintenance-on" in {d["kind"] for d in found["drift"]}, found
    result = site.fab("deploy")
    assert "maintenance page off" in result.stdout
    assert_serving(site)


def test_current_pointing_at_a_missing_release_is_reported_and_deployed_again(site):
    release = site.current()
    shutil.move(site.root / "releases" / release, site.workdir / "moved-away")
    try:
        code, found = status(site)
        assert code == 3 and "current-missing" in {d["kind"] for d in found["drift"]}, found
        with under_load(site) as load:
            site.fab("deploy")
        assert site.current() != release
        assert_writes_stored(site, load)
        assert_serving(site, site.current())
    finally:
        shutil.rmtree(site.workdir / "moved-away", ignore_errors=True)


def test_a_program_that_dies_two_seconds_after_each_start_never_counts_as_started(site):
    release = site.current()
    module = site.buildout / "src" / "demoapp" / "demoapp" / "__init__.py"
    healthy = module.read_text()
    site.change_code("import os as _os, threading as _threading\n_threading.Timer(2, _os._exit, [3]).start()")
    try:
        with under_load(site) as load:
            result = site.fab("deploy", check=False)
        assert result.returncode == 1, result.stdout + result.stderr
        assert "did not stay up" in result.stdout + result.stderr
        assert site.current() == release
    finally:
        module.write_text(healthy)
    assert_writes_stored(site, load)
    code, found = status(site)
    assert code == 5 and found["drift"] == [], found  # serving; the last switch failed, and says so
    assert front_answers(site) == 200
