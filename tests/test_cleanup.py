"""Leftovers of dead runs are cleaned (issue 14, item 8): half-built releases, ``dists/.incoming``
of a dead push and old local bundles by the next deploy or ``cleanup``; ``*.restoring`` only while
no backup or restore holds the backup lock; ``*.before-restore-*`` only when asked, by age."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from invoke import Exit

from fabfile.build import bundle
from fabfile.pipeline import leftovers, releases
from fabfile.tasks import releases as release_tasks
from fabfile import onhost
from sites import make_site

DAY = 86400


# -- the pure parts -----------------------------------------------------------

def run_removal(lock: Path, *paths: Path) -> int:
    command = leftovers.removal_under_lock(str(lock), "test for cleanup", [str(p) for p in paths])
    return subprocess.run(command, shell=True).returncode


def test_restoring_files_go_when_nobody_holds_the_backup_lock_and_the_lock_is_dropped(tmp_path):
    (tmp_path / "backups").mkdir()
    doomed = tmp_path / "Data.fs.restoring"
    doomed.write_text("x")
    assert run_removal(tmp_path / "backups" / ".lock", doomed) == 0
    assert not doomed.exists() and not (tmp_path / "backups" / ".lock").exists()


def test_restoring_files_stay_while_a_backup_or_restore_holds_the_lock(tmp_path):
    (tmp_path / "backups" / ".lock").mkdir(parents=True)
    (tmp_path / "backups" / ".lock" / "holder").write_text("ann for restore\n")
    kept = tmp_path / "Data.fs.restoring"
    kept.write_text("x")
    assert run_removal(tmp_path / "backups" / ".lock", kept) == leftovers.HELD
    assert kept.exists() and (tmp_path / "backups" / ".lock" / "holder").read_text() == "ann for restore\n"


def test_without_a_backups_directory_no_lock_is_needed(tmp_path):
    doomed = tmp_path / "blobstorage.restoring"
    (doomed / "0x00").mkdir(parents=True)
    assert run_removal(tmp_path / "backups" / ".lock", doomed) == 0
    assert not doomed.exists() and not (tmp_path / "backups").exists()


def test_the_host_script_lists_leftovers_with_their_size_and_age(tmp_path):
    var = tmp_path / "var"
    (var / "filestorage").mkdir(parents=True)
    (var / "filestorage" / "Data.fs").write_bytes(b"live")
    (var / "filestorage" / "Data.fs.restoring").write_bytes(b"12345")
    (var / "filestorage" / "Data.fs.index.before-restore-2020-01-02-03-04-05.000001").write_bytes(b"123")
    old_blobs = var / "blobstorage.before-restore-2020-01-02-03-04-05.000001"
    (old_blobs / "0x01").mkdir(parents=True)
    (old_blobs / "0x01" / "a.blob").write_bytes(b"x" * 100)
    os.link(old_blobs / "0x01" / "a.blob", tmp_path / "elsewhere.blob")  # removing it frees nothing
    (old_blobs / "0x01" / "b.blob").write_bytes(b"y" * 10)
    (tmp_path / "dists" / ".incoming").mkdir(parents=True)
    (tmp_path / "dists" / ".incoming" / "half.whl").write_bytes(b"half")
    wanted = {"leftovers": {"beside": [str(var / "filestorage" / "Data.fs"), str(var / "blobstorage")],
                            "incoming": str(tmp_path / "dists" / ".incoming"), "lock": str(tmp_path / "b" / ".lock")}}
    found = json.loads(subprocess.run([sys.executable, "-c", onhost.source("backups"), json.dumps(wanted)],
                                      capture_output=True, text=True, check=True).stdout)
    restoring = [(i["path"], i["bytes"]) for i in found["restoring"]]
    assert restoring == [(str(var / "filestorage" / "Data.fs.restoring"), 5)]
    before = {Path(i["path"]).name: i for i in found["before_restore"]}
    assert before[old_blobs.name]["bytes"] == 10
    assert before["Data.fs.index.before-restore-2020-01-02-03-04-05.000001"]["age_days"] > 365
    assert [Path(i["path"]).name for i in found["incoming"]] == ["half.whl"] and found["locked"] is False


def make_bundles(directory: Path, ages_in_days: list[float]) -> list[Path]:
    directory.mkdir(exist_ok=True)
    made = []
    for number, age in enumerate(ages_in_days):
        path = directory / f"{number:08x}{'0' * 56}.tar.gz"
        path.write_bytes(b"bundle")
        os.utime(path, (time.time() - age * DAY,) * 2)
        made.append(path)
    return made


def test_local_bundles_keep_the_newest_the_recent_and_those_of_the_hosts_releases(tmp_path):
    made = make_bundles(tmp_path, [30 - n for n in range(15)])  # 30 days old down to 16
    on_host = f"20260101T000000Z-{made[0].name[:8]}"
    removed = [p for p, _ in bundle.prune_bundles(tmp_path, (on_host,))]
    assert removed == [made[4], made[3], made[2], made[1]]  # the oldest five but the host's
    assert sorted(tmp_path.iterdir()) == sorted([made[0], *made[5:]])


def test_local_bundles_used_within_a_day_are_kept_and_dry_removes_nothing(tmp_path):
    made = make_bundles(tmp_path, [0.1] * 12 + [2, 3])
    assert [p for p, _ in bundle.prune_bundles(tmp_path, (), dry=True)] == [made[12], made[13]]
    assert all(p.exists() for p in made)


@pytest.mark.parametrize("value", ["abc", "-1", "nan"])
def test_a_bad_age_is_refused_with_exit_2(value):
    with pytest.raises(Exit) as raised:
        release_tasks._days(value)
    assert raised.value.code == 2 and "--before-restore-older-than" in str(raised.value.message)


# -- integration: deploy and cleanup on the sandbox host -----------------------

HALF_BUILT = "20200101T000000Z-deadbeef"


@pytest.fixture(scope="module")
def site(sandbox_host, tmp_path_factory):
    site = make_site(tmp_path_factory.mktemp("cleanup"), sandbox_host)
    # what a dead deploy left before this one: a half-built release and a half-done push
    (site.root / "releases" / HALF_BUILT / ".deploy").mkdir(parents=True)
    (site.root / "dists" / ".incoming").mkdir(parents=True)
    (site.root / "dists" / ".incoming" / "half-pushed-1.0-py3-none-any.whl").write_bytes(b"half")
    site.first_deploy = site.fab("deploy")
    yield site
    site.stop_everything()


def test_the_next_deploy_removes_a_half_built_release_and_a_dead_push(site):
    assert "dists/.incoming of a dead push" in site.first_deploy.stdout
    assert HALF_BUILT not in site.release_ids()
    assert not (site.root / "dists" / ".incoming").exists()
    assert site.get("health") == "ok"


def restoring_files(site) -> list[Path]:
    var = site.root / "var"
    made = [var / "filestorage" / "Data.fs.restoring", var / "filestorage" / "Data.fs.restoring.index",
            var / "blobstorage.restoring" / "0x00" / "x.blob"]
    for path in made:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"r" * 1000)
    return made


def test_cleanup_leaves_restoring_files_while_the_backup_lock_is_held(site):
    made = restoring_files(site)
    lock = site.root / "backups" / ".lock"
    lock.mkdir(parents=True)
    (lock / "holder").write_text("someone for restore\n")
    try:
        result = site.fab("cleanup")
        assert "left 3 *.restoring" in result.stdout and str(lock) in result.stdout
        assert all(path.exists() for path in made)
    finally:
        (lock / "holder").unlink()
        lock.rmdir()
    result = site.fab("cleanup")
    assert "removed 3 *.restoring of a dead restore" in result.stdout
    assert not (site.root / "var" / "filestorage" / "Data.fs.restoring").exists()
    assert not (site.root / "var" / "blobstorage.restoring").exists() and not lock.exists()
    assert (site.root / "var" / "filestorage" / "Data.fs").is_file() and site.get("health") == "ok"


def test_before_restore_copies_go_only_when_asked_and_only_the_old_ones(site):
    var = site.root / "var"
    old = var / "filestorage" / "Data.fs.before-restore-2020-01-02-03-04-05.000001"
    old.write_bytes(b"o" * 3000)
    new = var / f"blobstorage.before-restore-{time.strftime('%Y-%m-%d-%H-%M-%S', time.gmtime())}.000001"
    (new / "0x00").mkdir(parents=True)
    (new / "0x00" / "x.blob").write_bytes(b"n" * 10)
    plain = site.fab("cleanup")
    assert old.exists() and new.exists()
    assert "kept 2 *.before-restore-* copies" in plain.stdout and "--before-restore-older-than" in plain.stdout

    bad = site.fab("cleanup", "--before-restore-older-than", "soon", check=False)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr and old.exists()

    asked = site.fab("cleanup", "--before-restore-older-than", "30")
    assert not old.exists() and new.exists()
    assert f"removed {old} (" in asked.stdout and "2.9 kB" in asked.stdout
    assert "freed 2.9 kB in all" in asked.stdout
    assert (var / "filestorage" / "Data.fs").is_file() and site.get("health") == "ok"
