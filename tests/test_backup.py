"""Backups and restores on this machine: real ZODB data with blobs, real repozo, real rsync.

Each test makes a small site (``var/filestorage/Data.fs`` and ``var/blobstorage``,
written with ZODB as a ZEO server would), backs it up and restores it through the
same functions ``invoke backup``/``restore`` and ``fab backup``/``restore`` use;
a few run the ``invoke`` command line itself, to see what an operator sees.
"""
from __future__ import annotations

import gzip
import json
import subprocess
import sys
from pathlib import Path

import invoke
import pytest
import ZODB
from ZODB.blob import Blob
from ZODB.FileStorage import FileStorage

from fabfile.data import backup as backups
from fabfile.data import restore as restores
from fabfile.backups.repozo import BackupError

REPO = Path(__file__).resolve().parent.parent
INVOKE = str(Path(sys.executable).parent / "invoke")


def commit(site: Path, **items: bytes | None) -> None:
    """One transaction: each item a blob under its name in the root (None removes it)."""
    (site / "var" / "filestorage").mkdir(parents=True, exist_ok=True)
    db = ZODB.DB(FileStorage(str(site / "var/filestorage/Data.fs"), blob_dir=str(site / "var/blobstorage")))
    with db.transaction() as connection:
        for name, data in items.items():
            if data is None:
                del connection.root()[name]
            else:
                connection.root()[name] = Blob(data)
    db.close()


def state(site: Path) -> dict[str, bytes]:
    """What the site holds: every item's blob bytes."""
    db = ZODB.DB(FileStorage(str(site / "var/filestorage/Data.fs"), blob_dir=str(site / "var/blobstorage"),
                             read_only=True))
    try:
        with db.transaction() as connection:
            return {name: blob.open("r").read() for name, blob in connection.root().items()}
    finally:
        db.close()


def settings(site: Path, **options):
    return backups.local_settings(site, **options)


def back_up(site: Path, **options) -> dict | None:
    kinds = {k: options.pop(k) for k in ("full", "snapshot") if k in options}
    return backups.make_backup(invoke.Context(), settings(site, **options), backups.Hooks(quiet=True), **kinds)


def restore(site: Path, date: str | None = None, **options) -> dict:
    snapshot = options.pop("snapshot", False)
    return restores.restore_backup(invoke.Context(), settings(site, **options), backups.Hooks(quiet=True),
                                   date=date, snapshot=snapshot)


def invoke_task(*args: str, answer: str = "") -> subprocess.CompletedProcess:
    return subprocess.run([INVOKE, *args], cwd=REPO, capture_output=True, text=True, input=answer, timeout=120)


def tree(path: Path) -> dict[str, bytes]:
    """Every file under ``path`` with its bytes."""
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


@pytest.fixture
def site(tmp_path: Path) -> Path:
    commit(tmp_path, first=b"first blob", second=b"second blob")
    return tmp_path


def test_full_then_incremental_then_restore_gives_the_same_objects_and_blob_bytes(site):
    full = back_up(site)
    commit(site, third=b"third blob", first=b"first, changed")
    incremental = back_up(site)
    committed = state(site)
    commit(site, second=None, fourth=b"after the backups")
    restore(site)
    assert (full["kind"], incremental["kind"]) == ("full", "incremental")
    assert full["verified"] and incremental["verified"]
    assert state(site) == committed == {"first": b"first, changed", "second": b"second blob", "third": b"third blob"}


def delta_check(site: Path) -> subprocess.CompletedProcess:
    """The incremental check, as a backup runs it, on the newest incremental of the main chain."""
    from fabfile import onhost
    repository = site / "var/backups/filestorage"
    dat = max(repository.glob("*.dat"))
    newest = max(repository.glob("*.deltafsz"))
    return subprocess.run([sys.executable, "-c", onhost.source("deltacheck"), str(dat), newest.name],
                          capture_output=True, text=True)


def test_an_incremental_is_checked_against_repozos_record_and_a_changed_byte_is_found(site):
    back_up(site)
    commit(site, third=b"third blob")
    incremental = back_up(site)
    newest = max((site / "var/backups/filestorage").glob("*.deltafsz"))
    assert incremental["verified"] and newest.name in "; ".join(incremental["checks"])
    assert json.loads(delta_check(site).stdout)["checked"] == [newest.name]
    data = bytearray(gzip.decompress(newest.read_bytes()))
    data[-20] ^= 0xFF  # one byte of the transaction, the size unchanged
    newest.write_bytes(gzip.compress(bytes(data)))
    changed = delta_check(site)
    assert changed.returncode == 1 and f"{newest} has checksum" in changed.stdout
    newest.write_bytes(b"not gzip")
    assert "does not read back" in delta_check(site).stdout


def test_an_incremental_that_does_not_follow_on_in_the_chain_is_refused(site):
    back_up(site)
    commit(site, third=b"third blob")
    back_up(site)
    dat = max((site / "var/backups/filestorage").glob("*.dat"))
    lines = dat.read_text().splitlines()
    name, start, end, digest = lines[-1].split()
    dat.write_text("\n".join([*lines[:-1], f"{name} {int(start) + 1} {end} {digest}"]) + "\n")
    result = delta_check(site)
    assert result.returncode == 1 and f"starts at {int(start) + 1}, the file before it ended at {start}" in result.stdout


def tail_recover(site: Path, *known: str) -> subprocess.CompletedProcess:
    """The full backup's check run beside repozo, started after repozo finished (the .dat files in
    ``known`` were there before)."""
    from fabfile import onhost
    return subprocess.run([sys.executable, "-c", onhost.source("tailrecover"), str(site / "var/backups/filestorage"),
                           str(site / "recovered.fs"), str(site / "stop"), "gzip", *known],
                          capture_output=True, text=True, timeout=60)


def test_a_full_backup_is_read_back_while_repozo_writes_it_and_a_wrong_checksum_is_found(site):
    full = back_up(site, full=True)
    assert full["verified"] and "main recovered while written and opened" in "; ".join(full["checks"])
    assert not (site / "var/backups/filestorage/tmp.tmp").exists()
    read_back = tail_recover(site)
    assert read_back.returncode == 0, read_back.stdout
    assert (site / "recovered.fs").read_bytes() == (site / "var/filestorage/Data.fs").read_bytes()
    dat = next((site / "var/backups/filestorage").glob("*.dat"))
    name, start, end, _ = dat.read_text().split()
    dat.write_text(f"{name} {start} {end} {'0' * 32}\n")
    changed = tail_recover(site)
    assert changed.returncode == 1 and "has checksum" in changed.stdout and "instead of 000" in changed.stdout


def test_the_full_backups_check_stops_when_repozo_fails(site):
    (site / "var/backups/filestorage").mkdir(parents=True)
    (site / "stop").touch()
    stopped = tail_recover(site)
    assert stopped.returncode == 1 and "repozo stopped before the full backup started" in stopped.stdout


def test_restore_to_a_date_between_two_backups_gives_the_earlier_state(site):
    earlier = back_up(site)
    before = state(site)
    commit(site, third=b"later")
    back_up(site)
    restore(site, earlier["stamp"])
    assert state(site) == before


def test_a_restore_keeps_the_live_data_aside(site):
    back_up(site)
    commit(site, third=b"not in the backup")
    live = (site / "var/filestorage/Data.fs").read_bytes()
    record = restore(site)
    suffix = record["kept_aside"].lstrip("*")
    assert (site / f"var/filestorage/Data.fs{suffix}").read_bytes() == live
    assert (site / f"var/blobstorage{suffix}").is_dir()


def test_restored_blobs_are_linked_to_the_live_ones_they_equal_never_to_the_backups(site):
    back_up(site)
    commit(site, third=b"not in the backup")
    restore(site)
    restored = {p.relative_to(site / "var/blobstorage"): p.stat() for p in (site / "var/blobstorage").rglob("*.blob")}
    aside = next((site / "var").glob("blobstorage.before-restore-*"))
    copy = next(p for p in (site / "var/backups/blobstorage").iterdir() if p.is_dir())
    assert len(restored) == 2 and state(site) == {"first": b"first blob", "second": b"second blob"}
    for path, stat in restored.items():
        assert stat.st_ino == (aside / path).stat().st_ino  # unchanged: the live file itself
        assert stat.st_ino != (copy / path).stat().st_ino   # the backup is never shared with the site


def test_a_date_before_every_backup_stops_before_anything_changes(site):
    back_up(site)
    live = tree(site / "var")
    with pytest.raises(BackupError, match="no backup at or before 2001-01-01: the oldest is from"):
        restore(site, "2001-01-01")
    assert tree(site / "var") == live


def test_unchanged_blobs_share_inodes_between_copies(site):
    first = back_up(site)
    commit(site, third=b"new blob")
    second = back_up(site)
    copies = site / "var/backups/blobstorage"
    inodes = lambda stamp: {p.relative_to(copies / stamp): p.stat().st_ino for p in (copies / stamp).rglob("*.blob")}
    old, new = inodes(first["stamp"]), inodes(second["stamp"])
    assert len(new) == len(old) + 1
    assert all(new[name] == inode for name, inode in old.items())


def test_a_backup_without_changes_makes_nothing_and_says_so(site):
    back_up(site)
    listing = sorted(p.name for p in (site / "var/backups").rglob("*"))
    assert back_up(site) is None
    assert sorted(p.name for p in (site / "var/backups").rglob("*")) == listing


@pytest.mark.parametrize("keep, fulls_left", [(1, 1), (2, 2), (0, 3)])
def test_retention_keeps_that_many_full_backups_with_their_incrementals_and_blobs(site, keep, fulls_left):
    made = []
    for round_ in range(3):
        made.append(back_up(site, full=True, keep=keep))
        commit(site, **{f"item{round_}": b"x" * round_})
        made.append(back_up(site, keep=keep))
    repository = site / "var/backups/filestorage"
    kept = [r["stamp"] for r in made][-2 * fulls_left:]
    fulls = sorted(p.name[:19] for p in repository.glob("*.fsz"))
    assert fulls == [r["stamp"] for r in made if r["kind"] == "full"][-fulls_left:]
    assert sorted(p.name[:19] for p in repository.glob("*.deltafsz")) == kept[1::2]
    assert sorted(p.name for p in (site / "var/backups/blobstorage").iterdir()) == kept
    assert sorted(p.stem for p in (site / "var/backups/records").iterdir()) == kept


def test_snapshots_are_full_backups_kept_apart_from_the_regular_ones(site):
    regular = back_up(site)
    commit(site, third=b"snapshot me")
    snapshot = back_up(site, snapshot=True)
    assert snapshot["kind"] == "snapshot" and snapshot["verified"]
    assert (site / f"var/backups/snapshots/filestorage/{snapshot['stamp']}.fsz").exists()
    assert (site / f"var/backups/snapshots/blobstorage/{snapshot['stamp']}").is_dir()
    assert not (site / f"var/backups/filestorage/{snapshot['stamp']}.fsz").exists()
    commit(site, third=None)
    restore(site, snapshot=True)
    assert state(site)["third"] == b"snapshot me"
    restore(site, regular["stamp"])
    assert "third" not in state(site)


def test_a_failed_recover_keeps_the_live_data_and_the_services(site):
    record = back_up(site)
    commit(site, third=b"live and precious")
    live = tree(site / "var/filestorage"), tree(site / "var/blobstorage")
    backup_file = site / f"var/backups/filestorage/{record['stamp']}.fsz"
    backup_file.write_bytes(backup_file.read_bytes()[:-40])
    stopped = []
    hooks = backups.Hooks(quiet=True, stop=lambda: stopped.append(True))
    with pytest.raises(BackupError, match="repozo could not recover main .*the live data is untouched"):
        restores.restore_backup(invoke.Context(), settings(site), hooks)
    after = tree(site / "var/filestorage"), tree(site / "var/blobstorage")
    assert {k: len(v) for k, v in after[0].items()} == {k: len(v) for k, v in live[0].items()}
    assert after == live
    assert not stopped
    assert not list((site / "var").rglob("*.restoring*"))


def test_a_backup_whose_blobs_are_missing_does_not_verify_and_the_next_one_is_full(site):
    back_up(site)
    commit(site, third=b"a blob that goes missing")
    missing = next(b for b in (site / "var/blobstorage").rglob("*.blob") if b.read_bytes().endswith(b"missing"))
    missing.unlink()
    with pytest.raises(BackupError, match="did not verify: .*blob of object .* is missing"):
        back_up(site, full=True)
    records = [json.loads(p.read_text()) for p in sorted((site / "var/backups/records").iterdir())]
    assert [(r["kind"], r["verified"]) for r in records] == [("full", True), ("full", False)]
    missing.write_bytes(b"a blob that goes missing")
    commit(site, fourth=b"more")
    again = back_up(site)
    assert again["kind"] == "full" and again["verified"]


@pytest.mark.parametrize("full", [False, True])
def test_repozo_failing_keeps_nothing_of_that_backup(site, full):
    good = back_up(site)
    commit(site, third=b"x")
    listing = tree(site / "var/backups")
    data = site / "var/filestorage/Data.fs"
    data.write_bytes(b"this is not a filestorage")
    with pytest.raises(BackupError, match=r"repozo failed backing up .*Data.fs \(exit 1\): .*FileStorageFormatError.*nothing of this backup is kept"):
        back_up(site, full=full)
    assert tree(site / "var/backups") == listing  # the blob copy and the full's read-back, if begun: gone
    assert good["verified"]


def test_pre_command_failing_stops_the_backup_and_post_command_runs_after_success(site):
    with pytest.raises(BackupError, match=r"pre_command failed \(exit 3\)"):
        back_up(site, pre_command="echo the site is busy; exit 3")
    assert not (site / "var/backups/filestorage").exists()
    marker = site / "post-ran"
    back_up(site, post_command=f"touch {marker}")
    assert marker.exists()


def test_an_additional_filestorage_has_its_own_repository_and_comes_back(site):
    catalog = site / "var/filestorage/catalog.fs"
    db = ZODB.DB(FileStorage(str(catalog)))
    with db.transaction() as connection:
        connection.root()["index"] = "v1"
    db.close()
    back_up(site, additional=("catalog",))
    db = ZODB.DB(FileStorage(str(catalog)))
    with db.transaction() as connection:
        connection.root()["index"] = "v2"
    db.close()
    restore(site, additional=("catalog",))
    db = ZODB.DB(FileStorage(str(catalog), read_only=True))
    with db.transaction() as connection:
        assert connection.root()["index"] == "v1"
    db.close()
    assert list((site / "var/backups/filestorage-catalog").glob("*.fsz"))


@pytest.mark.parametrize("archive", ["tar", "tar.gz"])
def test_blob_archives_are_made_per_backup_and_restored(site, archive):
    full = back_up(site, blob_archive=archive)
    then = state(site)
    commit(site, third=b"in the second archive")
    incremental = back_up(site, blob_archive=archive)
    commit(site, first=None)
    copies = site / "var/backups/blobstorage"
    assert sorted(p.name for p in copies.iterdir()) == [f"{full['stamp']}.{archive}", f"{incremental['stamp']}.{archive}"]
    assert full["verified"] and incremental["verified"]
    restore(site, full["stamp"], blob_archive=archive)
    assert state(site) == then
    restore(site, blob_archive=archive)
    assert state(site)["third"] == b"in the second archive" and "first" in state(site)


def test_blob_archives_follow_retention_and_a_wrong_kind_is_refused(site):
    made = []
    for round_ in range(2):
        made.append(back_up(site, full=True, keep=1, blob_archive="tar.gz"))
        commit(site, **{f"item{round_}": b"x"})
    assert sorted(p.name for p in (site / "var/backups/blobstorage").iterdir()) == [f"{made[-1]['stamp']}.tar.gz"]
    with pytest.raises(BackupError, match="blob_archive = 'zip': use tar or tar.gz"):
        settings(site, blob_archive="zip")


def test_two_locations_in_one_directory_are_refused(site):
    with pytest.raises(BackupError, match="main backups and blob backups are the same directory"):
        settings(site, location="shared", blob_location="shared/")


# -- the command line ------------------------------------------------------

def test_the_restore_prompt_answered_no_changes_nothing(site):
    assert invoke_task("backup", "--directory", str(site), "-q").returncode == 0
    commit(site, third=b"keep me")
    before = tree(site / "var")
    result = invoke_task("restore", "latest", "--directory", str(site), answer="no\n")
    assert result.returncode == 1
    assert "Type yes to go on" in result.stdout and "restore cancelled: nothing changed" in result.stderr
    assert tree(site / "var") == before


def test_invoke_backup_quiet_prints_nothing_and_restore_no_prompt_restores(site):
    quiet = invoke_task("backup", "--directory", str(site), "--quiet")
    assert quiet.returncode == 0 and quiet.stdout == "" and quiet.stderr == ""
    commit(site, first=None)
    restored = invoke_task("restore", "latest", "--directory", str(site), "--no-prompt")
    assert restored.returncode == 0, restored.stderr
    assert state(site) == {"first": b"first blob", "second": b"second blob"}


@pytest.mark.parametrize("args, message", [
    (("backup",), "cannot back up: no filestorage at {site}/var/filestorage/Data.fs; no blobstorage at"),
    (("restore", "2026-1-2"), "date '2026-1-2' is not yyyy-mm-dd[-hh[-mm[-ss]]]"),
    (("restore", "latest", "--no-prompt"), "no backups in {site}/var/backups/filestorage: nothing to restore"),
])
def test_bad_input_gives_a_clear_message_and_a_non_zero_exit(tmp_path, args, message):
    result = invoke_task(*args, "--directory", str(tmp_path))
    assert result.returncode == 1
    assert message.format(site=tmp_path) in result.stderr


def test_a_second_backup_while_one_runs_stops_naming_the_first(site):
    lock = site / "var/backups/.lock"
    lock.mkdir(parents=True)
    (lock / "holder").write_text("cron@host since 2026-11-22T03:00:00+00:00 for backup\n")
    with pytest.raises(BackupError, match="another backup or restore runs: cron@host since .* for backup"):
        back_up(site)
    lock.joinpath("holder").unlink()
    lock.rmdir()
    assert back_up(site)["verified"]
