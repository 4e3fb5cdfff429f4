"""The pure parts of backups: the commands they run, dates, names, locations and retention."""
from __future__ import annotations

from datetime import datetime, timezone

import subprocess

import pytest

from fabfile.config import hostconfig
from fabfile.backups import retention
from fabfile.backups.repozo import backup_command, BackupError, blob_archive_command, blob_copy_command, blob_restore_command, data_files, layout, parse_date, pick, recover_command, swap_command

SETTINGS = layout("/srv/site/var", "/srv/site/backups", "/srv/site/current/bin/repozo", "python3",
                  additional=("catalog",))
MAIN, CATALOG = SETTINGS.main, SETTINGS.storages[0]
PLAIN = layout("/v", "/b", "repozo", "python3", quick=False, gzip=False)


@pytest.mark.parametrize("command, expected", [
    (backup_command(SETTINGS, MAIN, full=False, snapshot=False),
     "/srv/site/current/bin/repozo -B -f /srv/site/var/filestorage/Data.fs -r /srv/site/backups/filestorage -Q -z"),
    (backup_command(SETTINGS, MAIN, full=True, snapshot=False),
     "/srv/site/current/bin/repozo -B -f /srv/site/var/filestorage/Data.fs -r /srv/site/backups/filestorage -F -Q -z"),
    (backup_command(SETTINGS, CATALOG, full=False, snapshot=True),
     "/srv/site/current/bin/repozo -B -f /srv/site/var/filestorage/catalog.fs "
     "-r /srv/site/backups/snapshots/filestorage-catalog -F -Q -z"),
    (backup_command(PLAIN, PLAIN.main, full=False, snapshot=False),
     "repozo -B -f /v/filestorage/Data.fs -r /b/filestorage"),
    (recover_command(SETTINGS, "/srv/site/backups/filestorage", "/srv/site/var/filestorage/Data.fs.restoring",
                     "2026-11-20-03"),
     "/srv/site/current/bin/repozo -R -w -r /srv/site/backups/filestorage "
     "-o /srv/site/var/filestorage/Data.fs.restoring -D 2026-11-20-03"),
    (blob_copy_command("/d/blobs", "/b/2026-01-02-03-04-05", "/b/2026-01-01-00-00-00", rsync=True),
     "rsync -a --delete --exclude=/tmp/ --link-dest=/b/2026-01-01-00-00-00 /d/blobs/ /b/2026-01-02-03-04-05.partial/ "
     "&& mv -T /b/2026-01-02-03-04-05.partial /b/2026-01-02-03-04-05"),
    (blob_copy_command("/d/blobs", "/b/x", None, rsync=False),
     "rm -rf -- /b/x.partial && cp -a /d/blobs /b/x.partial && mv -T /b/x.partial /b/x"),
    (blob_restore_command("/b/x", "/d/blobs.restoring", rsync=True), "rsync -a --delete /b/x/ /d/blobs.restoring/"),
    (blob_restore_command("/b/x", "/d/blobs.restoring", rsync=True, live="/d/blobs"),
     "rsync -a --delete --link-dest=/d/blobs /b/x/ /d/blobs.restoring/"),
    (blob_archive_command("/d/blobs", "/b/2026-01-02-03-04-05.tar.gz"),
     "tar -czf /b/2026-01-02-03-04-05.tar.gz.partial -C /d/blobs . "
     "&& mv -T /b/2026-01-02-03-04-05.tar.gz.partial /b/2026-01-02-03-04-05.tar.gz"),
    (blob_archive_command("/d/blobs", "/b/x.tar"), "tar -cf /b/x.tar.partial -C /d/blobs . && mv -T /b/x.tar.partial /b/x.tar"),
    (blob_restore_command("/b/x.tar.gz", "/d/blobs.restoring", rsync=True),
     "rm -rf -- /d/blobs.restoring && mkdir -p -m 0700 /d/blobs.restoring && tar -xzf /b/x.tar.gz -C /d/blobs.restoring"),
])
def test_commands_are_built_from_quoted_tokens(command, expected):
    assert command == expected


def test_a_path_with_a_space_or_a_dollar_is_quoted_once():
    settings = layout("/srv/my site$x/var", "/srv/my site$x/backups", "/srv/my site$x/bin/repozo", "python3")
    assert "'/srv/my site$x/var/filestorage/Data.fs'" in backup_command(settings, settings.main, full=False,
                                                                          snapshot=False)
    assert "'/srv/my site$x/var/blobstorage.restoring'" in swap_command(
        [("/srv/my site$x/var/blobstorage.restoring", "/srv/my site$x/var/blobstorage")], ".old")


@pytest.mark.parametrize("text", ["2026-11-20", "2026-11-20-03", "2026-11-20-03-15", "2026-11-20-03-15-59"])
def test_dates_as_repozo_reads_them_are_accepted(text):
    assert parse_date(text) == text


@pytest.mark.parametrize("text, message", [
    ("20261120", "is not yyyy-mm-dd"), ("2026-11-20 03:15", "is not yyyy-mm-dd"), ("yesterday", "is not yyyy-mm-dd"),
    ("2026-02-30", "is not a real time"), ("2026-11-20-25", "is not a real time"),
])
def test_bad_dates_are_refused_with_the_format(text, message):
    with pytest.raises(BackupError, match=message):
        parse_date(text)


def test_a_date_picks_the_newest_backup_at_or_before_it_as_repozo_does():
    stamps = ["2026-11-20-03-00-00", "2026-11-21-03-00-00", "2026-11-22-03-00-00"]
    assert pick(stamps, "2026-11-21-03-00-00") == "2026-11-21-03-00-00"
    assert pick(stamps, "2026-11-21-12") == "2026-11-21-03-00-00"
    assert pick(stamps, "2026-11-21") == "2026-11-20-03-00-00"  # the start of that day, as repozo reads it
    assert pick(stamps, "2026-11-19") is None
    assert pick(stamps, None) == "2026-11-22-03-00-00"


def test_repozo_file_names_say_full_or_incremental():
    names = ["2026-01-01-00-00-00.fsz", "2026-01-01-00-00-00.dat", "2026-01-01-00-00-00.index",
             "2026-01-02-00-00-00.deltafsz", "2026-01-03-00-00-00.fs", "2026-01-04-00-00-00.deltafs", "notes.txt"]
    assert data_files(names) == {"2026-01-01-00-00-00": "full", "2026-01-02-00-00-00": "incremental",
                                 "2026-01-03-00-00-00": "full", "2026-01-04-00-00-00": "incremental"}


@pytest.mark.parametrize("options, message", [
    ({"location": "x", "blob_location": "x"}, "main backups and blob backups are the same directory"),
    ({"location": "/srv/site/backups/a/../b", "snapshot_location": "b"},
     "main backups and main snapshots are the same directory"),
    ({"blob_location": "/srv/site/var/blobstorage/backups"}, "blob backups .* is inside the blobstorage"),
    ({"location": "/srv/site/var/blobstorage"}, "blobstorage and main backups|main backups and blobstorage"),
    ({"verify": "sometimes"}, "verify = 'sometimes'"),
    ({"additional": ("bad name",)}, "is not NAME, NAME:PATH"),
])
def test_locations_that_would_lose_data_are_refused(options, message):
    with pytest.raises(BackupError, match=message):
        layout("/srv/site/var", "/srv/site/backups", "repozo", "python3", **options)


def repository(*entries: str) -> list[str]:
    """File names for backups given as 'F1' (full at day 1) or 'I2' (incremental at day 2)."""
    names = []
    for entry in entries:
        stamp = f"2026-01-{int(entry[1:]):02d}-00-00-00"
        names += [f"{stamp}.fsz", f"{stamp}.dat"] if entry[0] == "F" else [f"{stamp}.deltafsz"]
        names.append(f"{stamp}.index")
    return names


def days(names) -> list[int]:
    return sorted({int(name[8:10]) for name in names})


NOW = datetime(2026, 2, 1, tzinfo=timezone.utc)


@pytest.mark.parametrize("keep, removed", [(1, [1, 2, 3, 4]), (2, [1, 2]), (3, []), (0, [])])
def test_retention_keeps_full_backups_with_their_incrementals(keep, removed):
    names = repository("F1", "I2", "F3", "I4", "F5", "I6")
    assert days(retention.files_to_remove(names, keep)) == removed


def test_blob_copies_older_than_the_oldest_kept_full_backup_go():
    names = repository("F1", "I2", "F3", "I4")
    copies = [f"2026-01-0{d}-00-00-00" for d in (1, 2, 3, 4)]
    assert days(retention.blob_copies_to_remove(copies, names, 1, 14, NOW)) == [1, 2]
    assert retention.blob_copies_to_remove(copies, names, 0, 14, NOW) == []


def test_without_filestorage_backups_blob_copies_follow_keep_blob_days_but_the_newest_stays():
    copies = ["2026-01-01-00-00-00", "2026-01-20-00-00-00", "2026-01-25-00-00-00"]
    assert retention.blob_copies_to_remove(copies, [], 2, 10, NOW) == copies[:2]
    assert retention.blob_copies_to_remove(copies, [], 2, 14, NOW) == copies[:1]
    assert retention.blob_copies_to_remove(copies[:1], [], 2, 10, NOW) == []
    assert retention.blob_copies_to_remove(copies, [], 2, 0, NOW) == []


def test_the_backup_section_of_a_hostconfig_reaches_the_settings(tmp_path):
    (tmp_path / "h.cfg").write_text(
        "[host]\naddress = h\nroot = /srv/h\n[buildout]\ndirectory = .\n"
        "[backup]\nkeep = 3\nadditional_filestorages = catalog\nblob_location = /mnt/blobs\n"
        "gzip = false\npre_command = echo pre\nverify = always\n")
    options = hostconfig.load(tmp_path / "h.cfg", environ={}).backup_options
    settings = layout("/srv/h/var", "/srv/h/backups", "repozo", "python3", **options)
    assert (settings.keep, settings.gzip, settings.verify, settings.pre_command) == (3, False, "always", "echo pre")
    assert settings.blob_backups == "/mnt/blobs"
    assert [s.repository for s in settings.storages] == ["/srv/h/backups/filestorage-catalog",
                                                         "/srv/h/backups/filestorage"]


def test_an_unknown_backup_key_names_file_section_and_key(tmp_path):
    (tmp_path / "h.cfg").write_text("[host]\naddress = h\nroot = /srv/h\n[buildout]\ndirectory = .\n"
                                    "[backup]\nkepe = 3\n")
    with pytest.raises(hostconfig.ConfigError, match=r"h.cfg: \[backup\] kepe: unknown key"):
        hostconfig.load(tmp_path / "h.cfg", environ={})


def _swapped(tmp_path, pairs):
    return subprocess.run(swap_command([(str(tmp_path / new), str(tmp_path / live)) for new, live in pairs],
                                       ".before"), shell=True, capture_output=True, text=True)


def test_the_swap_puts_each_new_path_in_place_and_keeps_the_live_one_aside(tmp_path):
    for name, text in [("Data.fs", "old"), ("Data.fs.restoring", "new"), ("blobs.restoring", "new blobs")]:
        (tmp_path / name).write_text(text)
    done = _swapped(tmp_path, [("Data.fs.restoring", "Data.fs"), ("blobs.restoring", "blobs")])
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "Data.fs").read_text() == "new" and (tmp_path / "Data.fs.before").read_text() == "old"
    assert (tmp_path / "blobs").read_text() == "new blobs"
    assert not list(tmp_path.glob("*.restoring"))


def test_a_swap_that_fails_half_way_puts_every_path_back(tmp_path):
    for name, text in [("Data.fs", "old"), ("Data.fs.restoring", "new"), ("blobs", "old blobs"),
                       ("blobs.restoring", "new blobs"), ("extra.restoring", "new extra")]:
        (tmp_path / name).write_text(text)
    # The third pair's live path is in a directory that does not exist: its move fails.
    done = _swapped(tmp_path, [("Data.fs.restoring", "Data.fs"), ("blobs.restoring", "blobs"),
                               ("extra.restoring", "gone/extra")])
    assert done.returncode == 1
    assert "nothing changed" in done.stderr
    assert {p.name: p.read_text() for p in tmp_path.iterdir()} == {
        "Data.fs": "old", "Data.fs.restoring": "new", "blobs": "old blobs", "blobs.restoring": "new blobs",
        "extra.restoring": "new extra"}
