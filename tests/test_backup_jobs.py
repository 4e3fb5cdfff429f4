"""Backups run as a job on the host: the job itself killed half-way, a lock left behind, a full disk.

After each fault: the backups that count are complete and verified, ``restore latest``
brings back the data of the last complete one, and the next plain ``fab backup``
works (no ``--force-unlock``, no step on the host). A client killed or disconnected
during a backup or a restore: ``test_faults.py``.
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


@pytest.mark.parametrize("marker", ["▸ repozo", "▸ verify"])
def test_a_backup_job_killed_half_way_never_counts(site, marker):
    """The job itself dies (SIGKILL on the host, as the OOM killer or a reboot would) at ``marker``
    (the blobs are copied while repozo runs: the first marker cuts both short)."""
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


def test_a_lock_that_names_no_process_stops_a_backup_and_force_unlock_takes_it(site):
    """A lock taken over SSH by a client (copy-data) names no process on the host: nobody can tell it
    stale. (One naming a live process is waited for; one naming a dead one is taken.)"""
    lock(site).mkdir()
    (lock(site) / "holder").write_text("someone@elsewhere for backup\n")
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

