"""Fault injection: the client killed (SIGINT, SIGKILL) at each step of a deploy (a first one too), a
rollback, a restart, a backup and a restore; the SSH connection dropped under it; the ZEO server
killed during a backup. The disk filled: ``test_faults_disk.py``.

The signal lands when the tool's own output shows the step starting, as a user's Ctrl-C
would; the SSH server is killed on the host's side (the sshd processes serving that
connection, or the whole sandbox sshd). After each: the site serves through the front
and on every health URL, the data equals what was stored before, and the next plain
command (no --force-unlock, no step on the host) succeeds. A known bug stays a strict
xfail whose reason says what happens and where; the fault table in docs/faults.md lists them all.
"""
from __future__ import annotations

import fcntl
import os
import queue
import shutil
import signal
import threading
import time
from collections.abc import Callable

import pytest

from sandbox import sshd
from sites import make_site
from support import free_port, parent_of, pids_running, require, ssh_session_of
from test_front import front_extra, request, stop_front, zeoserver_pid

SIGNALS = (signal.SIGINT, signal.SIGKILL)

# (the fault table's name for the step (docs/faults.md), what the output shows when the signal lands)
DEPLOY_STEPS = [
    ("push", "▸ push"),
    ("buildout", "▸ buildout"),
    ("backup-before-the-switch", "▸ repozo backup"),  # inside the backup: its lock is held
    ("switch-job-started", "] switch to "),  # the job's first line: it runs on the host
    ("out-of-the-front", "out of the front"),
    ("health-check-of-instance2", "instance1: back in the front"),  # instance2 restarts, then is checked
    ("cleanup", "▸ cleanup"),
]
DEPLOY_POINTS = [(name, marker, sig) for name, marker in DEPLOY_STEPS for sig in SIGNALS]
ROLLBACK_STEPS = [
    ("start", "▸ rollback "),
    ("mid-switch", "out of the front"),
    ("health-check-of-instance2", "instance1: back in the front"),
]
ROLLBACK_POINTS = [(name, marker, sig) for name, marker in ROLLBACK_STEPS for sig in SIGNALS]

def _point_id(name: str, sig: signal.Signals) -> str:
    return f"{name}-{sig.name}"


def _marked(points, xfails: dict[str, str]):
    return [pytest.param(*point, id=_point_id(point[0], point[-1]),
                         marks=[pytest.mark.xfail(strict=True, reason=xfails[_point_id(point[0], point[-1])])]
                         if _point_id(point[0], point[-1]) in xfails else [])
            for point in points]


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


def fab_acting_at(site, marker: str, act: Callable[[], None], *args: str, seconds: float = 300) -> tuple[str, int]:
    """Run ``fab ARGS``; call ``act`` once, when a line with ``marker`` shows; its output and exit code.

    Bounded: the command is killed after ``seconds``."""
    process = site.fab_in_background(*args)
    lines: queue.Queue = queue.Queue()

    def read() -> None:
        for line in process.stdout:
            lines.put(line)
        lines.put(None)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    seen, acted, deadline = [], False, time.monotonic() + seconds
    try:
        while time.monotonic() < deadline:
            try:
                line = lines.get(timeout=0.5)
            except queue.Empty:
                continue
            if line is None:
                break
            seen.append(line)
            if not acted and marker in line:
                act(process)
                acted = True
        process.wait(timeout=max(1.0, deadline - time.monotonic()))
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)
    reader.join(timeout=10)
    while not lines.empty():
        line = lines.get_nowait()
        if line is not None:
            seen.append(line)
    output = "".join(seen)
    assert acted, f"{marker!r} never showed:\n{output}"
    return output, process.returncode


def killed_at(site, marker: str, sig: int, *args: str) -> str:
    """Run ``fab ARGS``, send ``sig`` when a line with ``marker`` shows; its output."""
    return fab_acting_at(site, marker, lambda process: process.send_signal(sig), *args)[0]


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


def assert_serving_with_the_data(site, data: list[dict] | None = None) -> None:
    """Both instances and the front answer; the data is what it was (``data``, when given)."""
    wait_for_switch_jobs(site)
    wait_for_data_jobs(site)
    assert site.answers("instance1") and site.answers("instance2")
    deadline = time.monotonic() + 30  # instances the job stopped and started: the front's checks see them up
    while request(site)[0] != 200 and time.monotonic() < deadline:  # after its `rise` checks
        time.sleep(0.5)
    assert request(site)[0] == 200
    stored = site.objects()
    assert "before the faults" in [o["title"] for o in stored]
    if data is not None:
        assert stored == data


def wait_for_data_jobs(site, seconds: float = 180) -> None:
    """A backup or restore job left by a dead client finishes on the host: wait until its lock is gone."""
    lock, deadline = site.root / "backups" / ".lock", time.monotonic() + seconds
    while lock.exists() and time.monotonic() < deadline:
        time.sleep(0.2)


def remove_a_stale_backup_lock(site) -> None:
    """After an xfail point: what a person would remove by hand, so that the next points start clean."""
    lock = site.root / "backups" / ".lock"
    if lock.exists():
        shutil.rmtree(lock)


def no_release_marked_bad(site) -> bool:
    return not [r for r in site.release_ids() if (site.root / "releases" / r / ".deploy" / "bad.json").exists()]


def deploys_plainly(site) -> None:
    result = site.fab("deploy")  # no --force-unlock, nothing done by hand
    assert "deployed" in result.stdout or "nothing to deploy" in result.stdout


@pytest.mark.parametrize("name, marker, sig", _marked(DEPLOY_POINTS, {}))
def test_a_deploy_killed_at_each_step_leaves_a_serving_site_and_the_next_deploy_works(site, name, marker, sig):
    site.change_code(f"# fault: {name} {sig.name}")
    if name.startswith("backup"):
        site.add(f"new since the last backup: {sig.name}", "kept")  # so that repozo has work
    data = site.objects()
    try:
        killed_at(site, marker, sig, "deploy")
        assert_serving_with_the_data(site, data)
        deploys_plainly(site)
        assert_serving_with_the_data(site, data)
        assert no_release_marked_bad(site)
    finally:
        remove_a_stale_backup_lock(site)


@pytest.mark.parametrize("name, marker, sig", _marked(ROLLBACK_POINTS, {}))
def test_a_rollback_killed_at_each_step_finishes_on_the_host_or_changes_nothing(site, name, marker, sig):
    leaving = site.current()
    data = site.objects()
    killed_at(site, marker, sig, "rollback")
    assert_serving_with_the_data(site, data)
    if name != "start":  # at its start the client may die before the job does
        assert site.current() != leaving  # the job on the host finished the rollback
    site.change_code(f"# fault: after a rollback killed at {name} {sig.name}")
    deploys_plainly(site)
    assert_serving_with_the_data(site, data)


@pytest.mark.parametrize("sig", SIGNALS, ids=[_point_id("mid-way", s) for s in SIGNALS])
def test_a_restart_killed_mid_way_finishes_on_the_host_and_the_next_restart_works(site, sig):
    data, release = site.objects(), site.current()
    killed_at(site, "instance1: back in the front", sig, "restart")
    assert_serving_with_the_data(site, data)
    result = site.fab("restart")
    assert "instance2: back in the front" in result.stdout
    assert_serving_with_the_data(site, data)
    assert site.current() == release


# -- the SSH connection dropped by the server ----------------------------------------------

def kill_the_connection_running(listener: int, *words: str, seconds: float = 10) -> list[int]:
    """SIGKILL the sshd processes serving the connection whose remote command holds ``words``
    (found within ``seconds``); the listening sshd stays up. The pids killed."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for pid in pids_running(*words):
            session = ssh_session_of(pid, listener)
            if session:
                for each in session:
                    os.kill(each, signal.SIGKILL)
                return session
        time.sleep(0.02)
    raise AssertionError(f"no process of an SSH session ran {words} within {seconds}s")


def kill_the_connection_of(listener: int, pid_file, seconds: float = 10) -> list[int]:
    """SIGKILL the sshd processes serving the connection of the process named in ``pid_file``."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            session = ssh_session_of(int(pid_file.read_text().strip()), listener)
        except (OSError, ValueError):
            session = []
        if session:
            for each in session:
                os.kill(each, signal.SIGKILL)
            return session
        time.sleep(0.02)
    raise AssertionError(f"no SSH session holds the process in {pid_file} within {seconds}s")


def test_the_ssh_connection_dropped_during_buildout_leaves_a_serving_site_and_the_next_deploy_works(
        site, sandbox_host):
    listener = sshd.running_pid(sandbox_host.state_dir)
    site.change_code("# fault: the connection dropped during buildout")
    data, leaving = site.objects(), site.current()
    killed = []
    output, code = fab_acting_at(site, "▸ buildout", lambda process: killed.extend(
        kill_the_connection_running(listener, "bin/buildout", str(site.root))), "deploy")
    assert killed and code != 0, output
    assert site.current() == leaving
    assert_serving_with_the_data(site, data)
    deploys_plainly(site)
    assert not pids_running("bin/buildout", str(site.root)), "the dropped deploy's buildout still runs"
    assert site.current() != leaving
    assert_serving_with_the_data(site, data)
    assert no_release_marked_bad(site)


def test_the_ssh_connection_dropped_mid_switch_lets_the_switch_finish_and_the_next_deploy_works(
        site, sandbox_host):
    listener = sshd.running_pid(sandbox_host.state_dir)
    site.change_code("# fault: the connection dropped mid-switch")
    data = site.objects()
    killed = []
    output, code = fab_acting_at(site, "instance1: out of the front", lambda process: killed.extend(
        kill_the_connection_running(listener, f"{site.root}/.switch/", ".result.json")), "deploy")
    assert killed and code != 0, output
    assert_serving_with_the_data(site, data)
    deploys_plainly(site)
    assert_serving_with_the_data(site, data)
    assert no_release_marked_bad(site)


def test_the_ssh_server_restarted_mid_switch_lets_the_switch_finish_and_the_next_deploy_works(
        site, sandbox_host):
    site.change_code("# fault: the whole sshd restarted mid-switch")
    data = site.objects()

    def restart_sshd(process) -> None:
        sshd.stop(sandbox_host.state_dir)  # the listener and every session it serves
        sshd.start(sandbox_host.state_dir, port=sandbox_host.port)

    output, code = fab_acting_at(site, "instance1: out of the front", restart_sshd, "deploy")
    assert code != 0, output
    assert_serving_with_the_data(site, data)
    deploys_plainly(site)
    assert_serving_with_the_data(site, data)
    assert no_release_marked_bad(site)


def test_the_ssh_connection_dropped_during_the_backup_before_the_switch_leaves_a_serving_site_and_the_next_deploy_works(
        site, sandbox_host):
    listener = sshd.running_pid(sandbox_host.state_dir)
    site.change_code("# fault: the connection dropped during the backup")
    site.add("new since the last backup: connection dropped", "kept")  # so that repozo has work
    data, leaving = site.objects(), site.current()
    killed = []
    try:
        # the deploy's lock keeper runs in the same connection: its pid is in <root>/.lock/pid
        output, code = fab_acting_at(site, "▸ repozo ", lambda process: killed.extend(
            kill_the_connection_of(listener, site.root / ".lock" / "pid")), "deploy")
        assert killed and code != 0, output
        assert site.current() == leaving
        assert_serving_with_the_data(site, data)
        deploys_plainly(site)
        assert_serving_with_the_data(site, data)
    finally:
        remove_a_stale_backup_lock(site)


def test_the_ssh_connection_dropped_mid_rollback_lets_the_rollback_finish_and_the_next_deploy_works(
        site, sandbox_host):
    listener = sshd.running_pid(sandbox_host.state_dir)
    data, leaving = site.objects(), site.current()
    killed = []
    output, code = fab_acting_at(site, "instance1: out of the front", lambda process: killed.extend(
        kill_the_connection_running(listener, f"{site.root}/.switch/", ".result.json")), "rollback")
    assert killed and code != 0, output
    assert_serving_with_the_data(site, data)
    assert site.current() != leaving  # the job on the host finished the rollback
    site.change_code("# fault: after the connection dropped mid-rollback")
    deploys_plainly(site)
    assert_serving_with_the_data(site, data)


# -- backup and restore -------------------------------------------------------------------

@pytest.mark.parametrize("sig", [
    pytest.param(signal.SIGINT, id=_point_id("repozo", signal.SIGINT)),
    pytest.param(signal.SIGKILL, id=_point_id("repozo", signal.SIGKILL))])
def test_a_backup_killed_mid_way_leaves_the_data_and_the_next_backup_works(site, sig):
    site.add(f"new since the last backup: backup killed {sig.name}", "kept")  # so that repozo has work
    data = site.objects()
    try:
        killed_at(site, "▸ repozo ", sig, "backup")
        assert_serving_with_the_data(site, data)
        site.fab("backup")
        assert_serving_with_the_data(site, data)
    finally:
        remove_a_stale_backup_lock(site)


def signal_once_stopped(site, sig: int, seconds: float = 20) -> Callable:
    """An action: wait (bounded) until instance1 stops answering (the programs stopped for the swap), then
    send ``sig``; so that the signal lands while the site is down, between the stop and the start."""
    def act(process) -> None:
        deadline = time.monotonic() + seconds
        while site.answers("instance1") and time.monotonic() < deadline:
            time.sleep(0.02)
        process.send_signal(sig)
    return act


def test_the_zeo_server_killed_during_a_backup_comes_back_and_the_next_backup_works(site):
    site.add("new since the last backup: ZEO killed", "kept")  # so that repozo has work
    data, zeo = site.objects(), int(zeoserver_pid(site))
    try:
        output, code = fab_acting_at(site, "▸ repozo ", lambda process: os.kill(zeo, signal.SIGKILL), "backup")
        assert code == 0, output  # repozo reads Data.fs itself: the backup does not need ZEO
        deadline = time.monotonic() + 60  # supervisor starts it again; the instances reconnect, and the
        while time.monotonic() < deadline and not (  # front's health checks see them up again (its rise)
                site.answers("instance1") and site.answers("instance2") and request(site)[0] == 200):
            time.sleep(0.5)
        assert_serving_with_the_data(site, data)
        assert zeoserver_pid(site) not in ("", str(zeo))
        site.fab("backup")
        assert_serving_with_the_data(site, data)
    finally:
        remove_a_stale_backup_lock(site)


RESTORE_STEPS = [("recover", "▸ recover with repozo"), ("swap-site-stopped", "▸ stop, swap the data, start")]
RESTORE_POINTS = [(name, marker, sig) for name, marker in RESTORE_STEPS for sig in SIGNALS]


@pytest.mark.parametrize("name, marker, sig", _marked(RESTORE_POINTS, {}))
def test_a_restore_killed_at_each_step_leaves_a_serving_site_and_the_next_restore_works(site, name, marker, sig):
    site.fab("backup")  # the latest backup holds the data as it is: a restore changes nothing
    data = site.objects()
    act = signal_once_stopped(site, sig) if name.startswith("swap") else lambda process: process.send_signal(sig)
    try:
        fab_acting_at(site, marker, act, "restore", "latest", "--no-prompt")
        assert_serving_with_the_data(site, data)
        site.fab("restore", "latest", "--no-prompt")
        assert_serving_with_the_data(site, data)
    finally:  # after an xfail point: what a person would do by hand, so that the next points start clean
        remove_a_stale_backup_lock(site)
        site.fab("maintenance", "off", check=False)
        site.fab("start", check=False)


def kill_every_session(listener: int) -> list[int]:
    """SIGKILL every SSH connection the sandbox sshd serves (only the command under test is connected); the
    listener stays up."""
    sessions = [pid for pid in pids_running("sshd") if parent_of(pid) == listener]
    sessions += [pid for pid in pids_running("sshd") if parent_of(pid) in sessions]
    for pid in sessions:
        os.kill(pid, signal.SIGKILL)
    return sessions


def test_the_ssh_connection_dropped_while_a_restore_has_the_site_stopped_leaves_a_serving_site(site, sandbox_host):
    listener = sshd.running_pid(sandbox_host.state_dir)
    site.fab("backup")  # the latest backup holds the data as it is: a restore changes nothing
    data = site.objects()
    killed = []

    def drop_once_stopped(process) -> None:
        deadline = time.monotonic() + 20
        while site.answers("instance1") and time.monotonic() < deadline:
            time.sleep(0.02)
        killed.extend(kill_every_session(listener))

    try:
        output, code = fab_acting_at(site, "▸ stop, swap the data, start", drop_once_stopped,
                                     "restore", "latest", "--no-prompt")
        assert killed and code != 0, output
        assert_serving_with_the_data(site, data)
        site.fab("restore", "latest", "--no-prompt")
        assert_serving_with_the_data(site, data)
    finally:  # after an xfail point: what a person would do by hand
        remove_a_stale_backup_lock(site)
        site.fab("maintenance", "off", check=False)
        site.fab("start", check=False)


# -- a first deploy: nothing serves yet --------------------------------------------------

@pytest.fixture
def new_site(sandbox_host, tmp_path_factory):
    """A site never deployed (its own front), stopped afterwards. (A short directory: HAProxy's admin
    socket under the root takes 97 bytes at most.)"""
    require(shutil.which("haproxy") or os.path.exists("/usr/sbin/haproxy"), "haproxy not found: apt-get install haproxy")
    ports = free_port(), free_port()
    test_site = make_site(tmp_path_factory.mktemp("first"), sandbox_host, front_extra(*ports))
    test_site.front_ports = ports
    yield test_site
    test_site.stop_everything()
    stop_front(test_site)


@pytest.mark.parametrize("name, marker", [("buildout", "▸ buildout"), ("switch-job-started", "] switch to ")],
                         ids=["buildout-SIGKILL", "switch-job-started-SIGKILL"])
def test_a_first_deploy_killed_half_makes_nothing_current_and_the_next_deploy_works(new_site, name, marker):
    killed_at(new_site, marker, signal.SIGKILL, "deploy")
    wait_for_switch_jobs(new_site)
    if (new_site.root / "current").exists():  # the switch job went on by itself: then it serves, complete
        assert (new_site.root / "current" / ".deploy" / "built.json").exists()
        assert new_site.answers("instance1") and new_site.answers("instance2")
    else:
        assert not (new_site.root / "current").is_symlink(), "current points at nothing"
    deploys_plainly(new_site)
    assert new_site.answers("instance1") and new_site.answers("instance2")
    assert request(new_site)[0] == 200
    assert no_release_marked_bad(new_site)
