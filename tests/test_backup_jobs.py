"""Backups and restores run as a job on the host: a client that dies, a job that dies, a lock left behind.

After each fault: the backups that count are complete and verified, ``restore latest``
brings back the data of the last complete one, and the next plain ``fab backup``
works (no ``--force-unlock``, no step on the host).
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time

import pytest

from sites import FAB, REPO, make_site
from support import require


@pytest.fixture(scope="module")
def site(sandbox_host, tmp_path_factory):
    test_site = make_site(tmp_path_factory.mktemp("backupjobs"), sandbox_host, "[backup]\nkeep = 3\n")
    test_site.fab("deploy")
    test_site.add("first", "first blob")
    test_site.fab("backup", "--full")
    yield test_site
    test_site.stop_everything()


def records(site) -> dict[str, dict]:
    return {p.stem: json.loads(p.read_text()) for p in (site.root / "backups" / "records").glob("*.json")}


def lock(site):
    return site.root / "backups" / ".lock"


def wait_unlocked(site, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while lock(site).exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not lock(site).exists(), "the backup job still holds its lock"


def new_job_log(site, old: set):
    """The log of the job started after ``old`` was listed, once there is one."""
    logs = set((site.root / ".jobs").glob("*.log")) - old
    return logs.pop() if logs else None


def fab(site, *args: str) -> subprocess.Popen:
    return subprocess.Popen([FAB, "-H", "test", *args], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, env={**os.environ, **site.env})


def wait_for_line(path_of, marker: str, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        path = path_of()
        if path and marker in path.read_text(errors="replace"):
            return
        time.sleep(0.005)
    raise AssertionError(f"{marker!r} never showed in the job's log")


def test_a_client_killed_during_the_backup_leaves_the_job_to_finish_it(site):
    before = set(records(site))
    site.add("during a dead client", "blob")
    process = fab(site, "backup")
    for line in process.stdout:
        if "▸ repozo" in line:
            process.send_signal(signal.SIGKILL)
            break
    process.communicate(timeout=60)
    wait_unlocked(site)
    new = {stamp: r for stamp, r in records(site).items() if stamp not in before}
    assert len(new) == 1 and next(iter(new.values()))["verified"], new
    assert site.fab("backup").returncode == 0


@pytest.mark.parametrize("marker", ["▸ repozo", "▸ blobs", "▸ verify"])
def test_a_backup_job_killed_half_way_never_counts(site, marker):
    """The job itself dies (SIGKILL on the host, as the OOM killer or a reboot would) at ``marker``."""
    complete = set(records(site))
    kept = site.objects()
    site.add(f"lost with the job at {marker}", "blob")
    old = set((site.root / ".jobs").glob("*.log"))
    process = fab(site, "backup", "--full")  # a full one has each step: repozo, blobs, verify
    try:
        wait_for_line(lambda: new_job_log(site, old), marker)
        pid = int((lock(site) / "pid").read_text())
        os.kill(pid, signal.SIGKILL)
        output, _ = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode != 0, output
    assert set(records(site)) == complete  # no record: nothing of it counts
    restored = site.fab("restore", "latest", "--no-prompt")
    assert "stale" in restored.stdout and "interrupted half-way" in restored.stdout, restored.stdout
    assert site.objects() == kept
    again = site.fab("backup", "--full")
    assert again.returncode == 0
    assert all(r["verified"] for r in records(site).values())


def test_a_lock_held_by_a_live_process_stops_a_backup_and_force_unlock_takes_it(site):
    lock(site).mkdir()
    (lock(site) / "holder").write_text("someone@elsewhere for backup\n")
    (lock(site) / "pid").write_text(f"{os.getpid()}\n")  # a process that runs
    try:
        refused = site.fab("backup", check=False)
        assert refused.returncode == 1
        assert "another backup or restore runs: someone@elsewhere" in refused.stderr
        assert "--force-unlock" in refused.stderr
        taken = site.fab("backup", "--full", "--force-unlock")
        assert taken.returncode == 0 and not lock(site).exists()
    finally:
        shutil.rmtree(lock(site), ignore_errors=True)


def test_a_full_disk_during_a_backup_says_disk_full_and_keeps_the_chain(site):
    require(os.geteuid() == 0, "mounting a small filesystem for the backups needs root")
    require(shutil.which("mount"), "mount not found")
    backups = site.root / "backups"
    aside = site.root / "backups.aside"
    complete = set(records(site))
    kept = site.objects()
    backups.rename(aside)
    backups.mkdir(mode=0o700)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m,mode=0700", "tmpfs", str(backups)], check=True)
    try:
        subprocess.run(["cp", "-a", f"{aside}/.", str(backups)], check=True)
        filler = backups / "filler"
        subprocess.run(["dd", "if=/dev/zero", f"of={filler}", "bs=64k"], capture_output=True)  # until ENOSPC
        site.add("no room for this one", "x" * 200_000)
        failed = site.fab("backup", check=False)
        assert failed.returncode == 1
        assert "disk full" in failed.stderr and "another backup" not in failed.stderr, failed.stderr
        assert set(records(site)) == complete
        filler.unlink()
        freed = site.fab("backup")
        assert freed.returncode == 0, freed.stderr
        assert all(r["verified"] for r in records(site).values())
    finally:
        subprocess.run(["umount", "-l", str(backups)], capture_output=True)
        shutil.rmtree(backups, ignore_errors=True)
        aside.rename(backups)
    assert site.objects()[: len(kept)] == kept


# -- restores: the client dies, the connection drops, the ZEO server dies ----------------

def wait_for_jobs(site, seconds: float = 180) -> None:
    """The newest data job (the one a dead client left) has written its verdict."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        plans = [p for p in (site.root / ".jobs").glob("*.json") if not p.name.endswith(".result.json")]
        newest = max(plans, key=lambda p: p.stat().st_mtime)
        if newest.with_name(newest.stem + ".result.json").exists():
            return
        time.sleep(0.2)
    raise AssertionError("a data job never finished")


def killed_at(site, marker: str, sig: int, *args: str) -> str:
    """``fab ARGS``, sent ``sig`` when its output shows ``marker``; its output."""
    process = fab(site, *args)
    seen = []
    try:
        for line in process.stdout:
            seen.append(line)
            if marker in line:
                process.send_signal(sig)
                break
        rest, _ = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
    output = "".join(seen) + (rest or "")
    assert marker in output, f"{marker!r} never showed:\n{output}"
    return output


def session_of(pid: int) -> int | None:
    """The ``sshd:`` process that serves the session ``pid`` runs in (walking up its parents)."""
    while pid > 1:
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as handle:
                if handle.read().startswith(b"sshd:"):
                    return pid
            with open(f"/proc/{pid}/stat") as handle:
                pid = int(handle.read().rsplit(")", 1)[1].split()[1])
        except OSError:
            return None
    return None


def drop_connection_of(text: str) -> bool:
    """SIGKILL the sshd session of the processes whose command line holds ``text``, as a dropped
    connection ends it; the listening sshd stays up."""
    dropped = False
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as handle:
                if text.encode() not in handle.read():
                    continue
        except OSError:
            continue
        session = session_of(int(entry))
        if session:
            os.kill(session, signal.SIGKILL)
            dropped = True
    return dropped


RESTORE_POINTS = [(marker, sig) for marker in ("▸ recover", "▸ stop, swap the data, start")
                  for sig in (signal.SIGINT, signal.SIGKILL)]


@pytest.mark.parametrize("marker, sig", RESTORE_POINTS,
                         ids=[f"{m.strip('▸ ').split(',')[0].replace(' ', '-')}-{s.name}" for m, s in RESTORE_POINTS])
def test_a_restore_whose_client_is_killed_finishes_on_the_host(site, marker, sig):
    site.fab("backup")
    backed_up = site.objects()
    site.add("after the backup", "gone with the restore")
    output = killed_at(site, marker, sig, "restore", "latest", "--no-prompt")
    wait_for_jobs(site)
    assert not lock(site).exists()
    assert site.answers("instance1") and site.answers("instance2")
    assert site.objects() == backed_up, output  # the restore finished: the data of the backup
    assert site.fab("backup").returncode == 0  # the next plain command works


def test_a_restore_whose_connection_drops_finishes_on_the_host(site):
    site.fab("backup")
    backed_up = site.objects()
    site.add("after the backup", "gone with the restore")
    process = fab(site, "restore", "latest", "--no-prompt")
    try:
        for line in process.stdout:
            if "▸ recover" in line:
                break
        jobs_dir = str(site.root / ".jobs")
        assert drop_connection_of(f"{jobs_dir}/"), "no session follows the restore job"
        process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode != 0
    wait_for_jobs(site)
    assert site.answers("instance1") and site.answers("instance2")
    assert site.objects() == backed_up
    assert site.fab("backup").returncode == 0


def test_the_zeo_server_killed_during_a_backup_leaves_a_complete_chain_and_a_serving_site(site):
    pid_of_zeo = subprocess.run(["pgrep", "-f", f"{site.root}/.*zeo"],
                                capture_output=True, text=True).stdout.split()
    require(pid_of_zeo, "the ZEO server's process was not found")
    complete = set(records(site))
    kept = site.objects()
    process = fab(site, "backup", "--full")
    try:
        for line in process.stdout:
            if "▸ repozo" in line:
                for pid in pid_of_zeo:
                    os.kill(int(pid), signal.SIGKILL)
                break
        output, _ = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
    new = {s: r for s, r in records(site).items() if s not in complete}
    # repozo reads the file, not the server: the backup completes and verifies, or counts for nothing
    assert all(r["verified"] for r in new.values()), output
    deadline = time.monotonic() + 60  # supervisor starts the ZEO server again; its clients reconnect
    while not (site.answers("instance1") and site.answers("instance2")) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert site.objects() == kept
    assert site.fab("backup").returncode == 0
