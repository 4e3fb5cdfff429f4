"""Local tests: the host script observe.py reports from /proc what really runs (listeners, pid files, supervisords)."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from support import free_port, require

SOURCE = (Path(__file__).resolve().parent.parent / "fabfile" / "onhost" / "observe.py").read_text()
RELEASE = "20261201T000000Z-abcdef12"
SLEEP = [sys.executable, "-c", "import time; time.sleep(120)"]

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads Linux /proc")


def observe(**spec) -> dict:
    done = subprocess.run([sys.executable, "-c", SOURCE, json.dumps(spec)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


@pytest.fixture
def spawn():
    """Start a process (output discarded); each one still running is killed by its pid at the end."""
    started = []

    def start(args, **kwargs) -> subprocess.Popen:
        process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, **kwargs)
        started.append(process)
        return process

    yield start
    for process in started:
        if process.poll() is None:
            os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=10)


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """A site root with one release, ``current`` pointing at it."""
    site = tmp_path / "site"
    (site / "releases" / RELEASE / "parts").mkdir(parents=True)
    (site / "var").mkdir()
    (site / "current").symlink_to(f"releases/{RELEASE}")
    return site


def loopback_v6_port() -> int | None:
    """A free port on ::1, or None when this machine has no IPv6 loopback."""
    if not socket.has_ipv6:
        return None
    try:
        with socket.socket(socket.AF_INET6) as sock:
            sock.bind(("::1", 0))
            return sock.getsockname()[1]
    except OSError:
        return None


def wait_listening(process: subprocess.Popen, host: str, port: int) -> None:
    deadline = time.monotonic() + 10
    while True:
        assert process.poll() is None, f"the server on port {port} exited ({process.returncode})"
        try:
            socket.create_connection((host, port), timeout=1).close()
            return
        except OSError:
            assert time.monotonic() < deadline, f"nothing listens on {host} port {port} after 10 s"
            time.sleep(0.1)


@pytest.mark.parametrize("host", ["127.0.0.1", "::1"])
def test_a_listener_is_reported_with_its_pid_cmdline_and_release(host, root, spawn):
    port = free_port() if host == "127.0.0.1" else loopback_v6_port()
    require(port, "this machine has no IPv6 loopback (::1)")
    command = [sys.executable, "-m", "http.server", "--bind", host, str(port)]
    server = spawn(command, cwd=root / "releases" / RELEASE / "parts")
    wait_listening(server, host, port)
    nobody = free_port()
    with socket.create_connection((host, port), timeout=5) as client:  # its port is connected, not listening
        connected = client.getsockname()[1]
        report = observe(root=str(root), ports={str(port): "front", str(nobody): "instance1", str(connected): "x"},
                         pidfiles={})

    assert report["ports"][str(nobody)] is None and report["ports"][str(connected)] is None
    held = report["ports"][str(port)]
    assert held["pids"] == [server.pid] and held["visible"] is True
    [process] = held["processes"]
    assert process["pid"] == server.pid and process["ppid"] == os.getpid() and process["uid"] == os.getuid()
    assert process["cmdline"] == command
    assert process["cwd"] == str((root / "releases" / RELEASE / "parts").resolve())
    assert process["exe"] == os.path.realpath(sys.executable)
    assert process["release"] == RELEASE and process["under_root"] is True


def wait_zombie(process: subprocess.Popen) -> None:
    """Wait until ``process`` has exited, leaving it unreaped (a zombie)."""
    deadline = time.monotonic() + 10
    while Path(f"/proc/{process.pid}/stat").read_text().rpartition(")")[2].split()[0] != "Z":
        assert time.monotonic() < deadline, f"{process.pid} did not exit in 10 s"
        time.sleep(0.05)


def test_pidfiles_tell_a_live_process_from_a_dead_pid(root, spawn, tmp_path):
    live = spawn(SLEEP)
    dead = spawn(["true"])
    dead.wait(timeout=10)
    zombie = spawn(["true"])
    wait_zombie(zombie)
    (root / "var" / "live.pid").write_text(f"{live.pid}\n")
    (root / "var" / "dead.pid").write_text(f"{dead.pid}\n")
    (root / "var" / "zombie.pid").write_text(f"{zombie.pid}\n")
    (root / "var" / "empty.pid").write_text("")

    names = ("live", "dead", "zombie", "missing", "empty")
    paths = {name: str(root / "var" / f"{name}.pid") for name in names}
    paths["no directory"] = str(tmp_path / "nowhere" / "x.pid")
    report = observe(root=str(root), ports={}, pidfiles=paths)

    pidfiles = report["pidfiles"]
    assert pidfiles["live"]["pid"] == live.pid and pidfiles["live"]["alive"] is True
    assert pidfiles["live"]["process"]["cmdline"] == SLEEP and pidfiles["live"]["process"]["release"] is None
    assert pidfiles["live"]["process"]["under_root"] is False
    assert pidfiles["dead"] == {"pid": dead.pid, "alive": False, "process": None, "newest_child": None}
    assert pidfiles["zombie"] == {"pid": zombie.pid, "alive": False, "process": None, "newest_child": None}  # exited, not yet reaped
    assert pidfiles["missing"] is None and pidfiles["empty"] is None and pidfiles["no directory"] is None


def test_every_supervisord_of_the_site_is_a_manager(root, spawn, tmp_path):
    other = tmp_path / "other"
    (other / "var").mkdir(parents=True)
    first = spawn(SLEEP + ["supervisord", "-c", str(root / "var" / "supervisord.conf")])
    second = spawn(SLEEP + ["/usr/bin/supervisord", f"--configuration={root}/current/.deploy/supervisord.conf"])
    third = spawn(SLEEP + ["bin/supervisord", "-c", "var/supervisord.conf"], cwd=root)  # relative to its cwd
    elsewhere = spawn(SLEEP + ["supervisord", "-c", str(other / "var" / "supervisord.conf")])
    control = spawn(SLEEP + ["supervisorctl", "-c", str(root / "var" / "supervisord.conf"), "status"])

    report = observe(root=str(root), ports={}, pidfiles={},
                     manager_config=f"{root}/current/.deploy/supervisord.conf")

    managers = {process["pid"]: process for process in report["managers"]}
    assert set(managers) == {first.pid, second.pid, third.pid}, (elsewhere.pid, control.pid)
    assert managers[first.pid]["release"] is None and managers[third.pid]["release"] is None  # var/ is shared
    assert managers[second.pid]["release"] == RELEASE  # current/ resolves into the release


def test_pids_are_described_with_their_start_time_and_release(root, spawn, tmp_path):
    before = time.time()
    instance = spawn(SLEEP + [str(root / "current" / "parts" / "instance1")], cwd=tmp_path)
    old = root / "releases" / "20261101T000000Z-0123abcd"
    old.mkdir()
    stale = spawn(SLEEP, cwd=old)
    old.rmdir()  # the cleanup removed the release its process still runs in
    gone = spawn(["true"])
    gone.wait(timeout=10)

    report = observe(root=str(root), ports={}, pidfiles={},
                     pids={"instance1": instance.pid, "stale": stale.pid, "gone": gone.pid})

    process = report["pids"]["instance1"]
    assert process["pid"] == instance.pid and process["cwd"] == str(tmp_path.resolve())
    assert process["release"] == RELEASE
    assert -5 < process["started"] - before < 5
    assert report["pids"]["stale"]["release"] == old.name
    assert report["pids"]["stale"]["cwd"] == f"{old.resolve()} (deleted)"
    assert report["pids"]["gone"] is None
    assert report["boot"] < process["started"] <= report["now"]
