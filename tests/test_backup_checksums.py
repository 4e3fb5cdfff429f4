"""``backups`` re-checks each backup's files against the sha256 its record holds (issue 14, item 8):
a changed file shows as CORRUPTED, a gone one as MISSING, each named under the table, exit 1."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import invoke
import pytest

from fabfile.data import backup as backups
from sites import make_site
from test_backup import back_up, commit, settings


def add_checksums(records: Path, stamp: str, paths: list[Path]) -> None:
    """What a backup writes into its record: the sha256 of every file it made."""
    record_file = records / f"{stamp}.json"
    record = json.loads(record_file.read_text())
    record["sha256"] = {str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in paths}
    record_file.write_text(json.dumps(record))


def flip_a_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def table(site: Path) -> tuple[dict[str, str], dict]:
    """{stamp as shown: its verified column}, and the checks the host script reported."""
    wanted = settings(site)
    found = backups.inventory(invoke.Context(), wanted, sizes=True)
    return {row[0]: row[4] for row in backups.rows(wanted, found)}, found.data["checksums"]


@pytest.fixture
def two_backups(tmp_path: Path):
    """A full and an incremental backup made by repozo, their records holding sha256s."""
    commit(tmp_path, first=b"first blob")
    full = back_up(tmp_path, full=True)
    commit(tmp_path, second=b"second blob")
    incremental = back_up(tmp_path)
    repository = tmp_path / "var/backups/filestorage"
    records = tmp_path / "var/backups/records"
    for record in (full, incremental):
        made = sorted(p for p in repository.iterdir() if p.name.startswith(record["stamp"]))
        assert made, f"repozo made no file for {record['stamp']}"
        add_checksums(records, record["stamp"], made)
    return tmp_path, full["stamp"], incremental["stamp"], repository


def shown(stamp: str) -> str:
    return backups.readable(stamp)


def test_intact_backups_pass_their_sha256_check(two_backups):
    site, full, incremental, _ = two_backups
    verified, checks = table(site)
    assert verified[shown(full)] == verified[shown(incremental)] == "yes"
    assert all(not c["corrupted"] and not c["missing"] for c in checks.values()) and len(checks) == 2


def test_a_flipped_byte_shows_the_backup_as_corrupted_naming_the_file(two_backups):
    site, full, incremental, repository = two_backups
    damaged = next(p for p in repository.iterdir() if p.name.startswith(incremental) and p.suffix == ".deltafsz")
    flip_a_byte(damaged)
    verified, checks = table(site)
    assert verified[shown(incremental)] == "CORRUPTED"
    assert verified[shown(full)] == "yes"
    assert checks[incremental]["corrupted"] == [str(damaged)]


def test_a_deleted_file_shows_the_backup_as_missing(two_backups):
    site, full, _, repository = two_backups
    gone = next(p for p in repository.iterdir() if p.name.startswith(full) and p.suffix == ".dat")
    gone.unlink()
    verified, checks = table(site)
    assert verified[shown(full)] == "MISSING"
    assert checks[full]["missing"] == [str(gone)]


def test_the_engine_records_sha256s_and_a_record_without_them_shows_as_before(tmp_path):
    commit(tmp_path, first=b"first blob")
    record = back_up(tmp_path, full=True)
    record_file = tmp_path / "var/backups/records" / f"{record['stamp']}.json"
    written = json.loads(record_file.read_text())
    assert written["sha256"] and all(len(digest) == 64 for digest in written["sha256"].values())
    verified, checks = table(tmp_path)
    assert verified == {shown(record["stamp"]): "yes"} and checks[record["stamp"]]["files"] == len(written["sha256"])
    del written["sha256"]  # as a backup made before sha256s were recorded
    record_file.write_text(json.dumps(written))
    verified, checks = table(tmp_path)
    assert verified == {shown(record["stamp"]): "yes"} and checks == {}


# -- integration: fab backups on the sandbox host ------------------------------

STAMPS = ("2026-01-01-03-00-00", "2026-01-02-03-00-00")


def test_fab_backups_shows_corrupted_names_the_file_and_exits_1(sandbox_host, tmp_path):
    site = make_site(tmp_path, sandbox_host)
    repository = site.root / "backups" / "filestorage"
    records = site.root / "backups" / "records"
    repository.mkdir(parents=True)
    records.mkdir()
    for number, stamp in enumerate(STAMPS):
        files = [repository / f"{stamp}.fsz", repository / f"{stamp}.dat", repository / f"{stamp}.index"]
        for path in files:
            path.write_bytes(f"{path.name} of backup {number}".encode() * 100)
        (records / f"{stamp}.json").write_text(json.dumps({"stamp": stamp, "kind": "full", "verified": True}))
        add_checksums(records, stamp, files)
    intact = site.fab("backups")
    assert "CORRUPTED" not in intact.stdout and intact.stdout.count(" yes ") >= 2

    damaged = repository / f"{STAMPS[1]}.fsz"
    flip_a_byte(damaged)
    result = site.fab("backups", check=False)
    assert result.returncode == 1
    assert "CORRUPTED" in result.stdout
    assert f"CORRUPTED (backup {shown(STAMPS[1])}, not the sha256 recorded): {damaged}" in result.stdout
    assert "failed their sha256 check" in result.stderr
    assert "Traceback" not in result.stdout + result.stderr
