"""Offsite copies: every verified backup copied to a second host, checked there, kept as here, brought back.

The offsite host is a second sandbox sshd (its own state directory, port and host key),
run as the current user on 127.0.0.1 like the first. The site deploys to the first one
and its backup job reaches the second with ``[backup] offsite_identity`` and
``offsite_known_hosts``. The tests run in order on one site: copies, hard links,
retention, a failed copy and its catch-up, the cron job's alert, the site lost and
restored from offsite, and a corrupted offsite copy refused.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from fabfile.config import hostconfig
from fabfile.backups import offsite
from fabfile.backups.repozo import layout
from sandbox import sshd
from sites import make_site
from support import free_port, webhook_receiver


# -- the URL and the keys, at load time ----------------------------------------

def load(tmp_path: Path, backup: str) -> hostconfig.HostConfig:
    (tmp_path / "h.cfg").write_text("[host]\naddress = h.example\nroot = /srv/site\n[buildout]\ndirectory = .\n"
                                    f"[backup]\n{backup}\n")
    return hostconfig.load(tmp_path / "h.cfg", environ={"KEY": "/home/deploy/.ssh/offsite"})


def test_an_offsite_url_names_user_host_port_and_path(tmp_path):
    config = load(tmp_path, "offsite = ssh://backup@store.example:2200/srv/copies/site\n"
                            "offsite_identity = ${env:KEY}\noffsite_known_hosts = /home/deploy/.ssh/store_hosts")
    assert config.offsite == offsite.Offsite("backup", "store.example", 2200, "/srv/copies/site",
                                             "/home/deploy/.ssh/offsite", "/home/deploy/.ssh/store_hosts")
    assert load(tmp_path, "offsite = sftp://b@10.0.0.9/copies/").offsite.path == "/copies"
    assert load(tmp_path, "").offsite is None


@pytest.mark.parametrize("line, says", [
    ("offsite = /srv/copies", "[backup] offsite: '/srv/copies' is not ssh://"),
    ("offsite = rsync://b@h/srv/copies", "is not ssh://"),
    ("offsite = ssh://h.example/srv/copies", "needs a plain user name"),
    ("offsite = ssh://b:secret@h.example/srv/copies", "a password in the URL"),
    ("offsite = ssh://b@h.example:99999/srv/copies", "a port 1-65535"),
    ("offsite = ssh://b@h_x/srv/copies", "is not a hostname"),
    ("offsite = ssh://b@h.example/", "an absolute directory of its own"),
    ("offsite = ssh://b@h.example/srv/../etc", "without '..'"),
    ("offsite = ssh://b@h.example/srv/co pies", "plain"),
    ("offsite = ssh://b@h.example/srv/$(reboot)", "plain"),
    ("offsite = ssh://b@h.example/srv/c?x=1", "has a query (?...) or a fragment"),
    ("offsite = ssh://b@h.example/srv/c\noffsite_identity = key", "[backup] offsite_identity: 'key' is not an absolute"),
    ("offsite = ssh://b@h.example/srv/c\noffsite_known_hosts = /a b", "[backup] offsite_known_hosts"),
    ("offsite_identity = /home/d/.ssh/k", "[backup] offsite_identity: set only with [backup] offsite"),
])
def test_a_bad_offsite_setting_stops_at_load_time_naming_file_section_and_key(tmp_path, line, says):
    with pytest.raises(hostconfig.ConfigError) as refused:
        load(tmp_path, line)
    assert str(tmp_path / "h.cfg") in str(refused.value) and says in str(refused.value)


def test_a_bad_offsite_setting_makes_fab_exit_2(tmp_path):
    configs = tmp_path / "hostconfigs"
    configs.mkdir()
    (configs / "test.cfg").write_text("[host]\naddress = 127.0.0.1\nroot = /srv/site\n[buildout]\ndirectory = .\n"
                                      "[backup]\noffsite = ssh://b@h.example/srv/../etc\n")
    from sites import FAB, REPO
    result = subprocess.run([FAB, "-H", "test", "backups"], cwd=REPO, capture_output=True, text=True,
                            env={**os.environ, "DEPLOY_HOSTCONFIGS": str(configs)}, timeout=60)
    assert result.returncode == 2 and "[backup] offsite" in result.stderr and "test.cfg" in result.stderr


def test_the_offsite_host_key_is_checked_never_accepted_blindly():
    argv = offsite.ssh_argv(offsite.Offsite("b", "h.example", 22, "/c", "/k", "/kh"))
    assert "StrictHostKeyChecking=yes" in argv and "BatchMode=yes" in argv
    assert not any("StrictHostKeyChecking=no" in a or "accept-new" in a for a in argv)
    assert argv[argv.index("-i") + 1] == "/k" and "UserKnownHostsFile=/kh" in argv


def test_the_offsite_layout_is_the_default_one_whatever_the_locations_here():
    settings = layout("/srv/s/var", "/srv/s/backups", "/srv/s/current/bin/repozo", "python3",
                      additional=("catalog",), location="/data/repo", blob_location="blobs")
    record = {"stamp": "2026-11-30-03-15-00", "blob_copy": True,
              "files": {"catalog": ["2026-11-30-03-14-58.fsz", "2026-11-30-03-14-58.dat"],
                        "main": ["2026-11-30-03-15-00.fsz", "2026-11-30-03-15-00.index"]}}
    assert offsite.entries(settings, record) == [
        ("filestorage-catalog/2026-11-30-03-14-58.fsz", "/data/repo-catalog/2026-11-30-03-14-58.fsz"),
        ("filestorage/2026-11-30-03-15-00.fsz", "/data/repo/2026-11-30-03-15-00.fsz"),
        ("filestorage/2026-11-30-03-15-00.index", "/data/repo/2026-11-30-03-15-00.index"),
        ("blobstorage/2026-11-30-03-15-00", "/srv/s/backups/blobs/2026-11-30-03-15-00")]  # the growing .dat apart
    there = offsite.laid_out(settings, "/copies/s", "python3")
    assert [s.repository for s in there.storages] == ["/copies/s/filestorage-catalog", "/copies/s/filestorage"]
    assert (there.blob_backups, there.records, there.keep) == ("/copies/s/blobstorage", "/copies/s/records", 2)
    assert [s.live for s in there.storages] == [s.live for s in settings.storages]


# -- against a second sshd -------------------------------------------------------

@pytest.fixture(scope="module")
def offsite_host(tmp_path_factory):
    state_dir = tmp_path_factory.mktemp("offsitehost")
    host = sshd.start(state_dir, port=free_port())
    try:
        yield host
    finally:
        sshd.stop(state_dir)


@pytest.fixture(scope="module")
def webhook():
    with webhook_receiver() as hook:
        yield hook


@pytest.fixture(scope="module")
def copies(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("copies") / "site"


@pytest.fixture(scope="module")
def site(sandbox_host, offsite_host, copies, webhook, tmp_path_factory):
    test_site = make_site(tmp_path_factory.mktemp("offsite"), sandbox_host,
                          f"[backup]\nkeep = 2\nschedule_incremental = daily\n"
                          f"offsite = ssh://{offsite_host.user}@127.0.0.1:{offsite_host.port}{copies}\n"
                          f"offsite_identity = {offsite_host.key_file}\n"
                          f"offsite_known_hosts = {offsite_host.known_hosts}\n"
                          f"[notify]\nwebhook = http://127.0.0.1:{webhook[0]}/hook\n")
    test_site.fab("deploy")
    yield test_site
    subprocess.run(f"crontab -l 2>/dev/null | grep -v {test_site.root} | crontab -", shell=True)
    test_site.stop_everything()


def test_an_offsite_host_whose_key_is_not_known_is_refused(offsite_host, tmp_path):
    (tmp_path / "known_hosts").write_text("")
    unknown = offsite.Offsite(offsite_host.user, "127.0.0.1", offsite_host.port, "/tmp",
                              str(offsite_host.key_file), str(tmp_path / "known_hosts"))
    refused = subprocess.run(offsite.remote_command(unknown, "true"), shell=True, capture_output=True, text=True,
                             timeout=60)
    assert refused.returncode == 255 and "Host key verification failed" in refused.stderr
    known = offsite.Offsite(offsite_host.user, "127.0.0.1", offsite_host.port, "/tmp",
                            str(offsite_host.key_file), str(offsite_host.known_hosts))
    assert subprocess.run(offsite.remote_command(known, "true"), shell=True, timeout=60).returncode == 0


def here(site) -> dict[str, dict]:
    return {p.stem: json.loads(p.read_text()) for p in (site.root / "backups" / "records").glob("*.json")}


def there(copies) -> dict[str, dict]:
    return {p.stem: json.loads(p.read_text()) for p in (copies / "records").glob("*.json")}


def test_a_verified_backup_reaches_the_offsite_host_checked(site, copies):
    site.add("first", "first blob bytes")
    result = site.fab("backup", "--full")
    assert "1 backup(s) copied and checked (sha256 and size)" in result.stdout
    (stamp, record), = here(site).items()
    copied = there(copies)[stamp]
    fsz = f"filestorage/{stamp}.fsz"
    assert (copies / fsz).read_bytes() == (site.root / "backups" / fsz).read_bytes()
    assert copied["offsite"][fsz][0] == record["sha256"][str(site.root / "backups" / fsz)]
    assert (copies / "blobstorage" / stamp).is_dir()
    assert oct((copies).stat().st_mode & 0o777) == "0o700"


def files(directory: Path) -> dict[str, os.stat_result]:
    return {str(p.relative_to(directory)): p.stat() for p in directory.rglob("*") if p.is_file()}


def test_unchanged_blobs_are_hard_links_offsite_as_here(site, copies):
    site.add("second", "second blob bytes")
    print(site.fab("backup").stdout)  # its steps and their times: pytest -rP shows them
    first, second = sorted(there(copies))
    older, newer = files(copies / "blobstorage" / first), files(copies / "blobstorage" / second)
    assert older and len(newer) > len(older)
    assert all(newer[name].st_ino == stat.st_ino for name, stat in older.items())  # no disk for unchanged blobs
    assert all(newer[name].st_nlink == 1 for name in set(newer) - set(older))


def test_retention_keeps_the_same_backups_offsite(site, copies):
    for title in ("third", "fourth"):
        site.add(title, f"{title} blob")
        site.fab("backup", "--full")
    assert len([k for k in here(site).values() if k["kind"] == "full"]) == 2
    assert set(there(copies)) == set(here(site))
    assert sorted(p.name for p in (copies / "blobstorage").iterdir()) == sorted(here(site))
    assert sorted(p.name for p in (copies / "filestorage").glob("*.fs*")) == \
        sorted(p.name for p in (site.root / "backups" / "filestorage").glob("*.fs*"))


def test_a_failed_offsite_copy_is_reported_the_backup_counts_and_the_next_one_catches_up(
        site, copies, offsite_host):
    sshd.stop(offsite_host.state_dir)
    try:
        site.add("while the offsite host is down", "blob")
        failed = site.fab("backup", check=False)
    finally:
        sshd.start(offsite_host.state_dir, port=offsite_host.port)
    assert failed.returncode == 3, failed.stdout + failed.stderr
    assert "the backup here is verified and counts, but offsite copy to" in failed.stderr
    newest = max(here(site))
    assert here(site)[newest]["verified"] and newest not in there(copies)
    caught_up = site.fab("backup")
    assert "nothing to back up" in caught_up.stdout and "1 backup(s) copied and checked" in caught_up.stdout
    assert set(there(copies)) == set(here(site))


def test_the_scheduled_backup_posts_the_webhook_when_its_offsite_copy_fails(site, offsite_host, webhook):
    _, received = webhook
    site.fab("schedule")
    site.add("scheduled", "blob")
    sshd.stop(offsite_host.state_dir)
    try:
        ran = subprocess.run(["/bin/sh", "-c", f"cd {site.root} && python3 "
                                               f"{site.root}/current/.deploy/backup-job/run.py --quiet"],
                             capture_output=True, text=True, timeout=300,
                             env={"PATH": "/usr/bin:/bin", "HOME": os.environ.get("HOME", "/")})
    finally:
        sshd.start(offsite_host.state_dir, port=offsite_host.port)
    assert ran.returncode == 3 and "verified in" in ran.stderr and "the offsite copy failed" in ran.stderr, ran.stderr
    assert "Connection refused" in ran.stderr and "ssh -p" not in ran.stderr
    payload = json.loads(received[-1][1])
    assert payload["event"] == "offsite-failed" and "offsite copy to" in payload["error"]
    assert here(site)[max(here(site))]["verified"]
    site.fab("backup")  # catches up


def test_restore_from_offsite_after_the_site_is_lost_gives_back_the_last_verified_state(site, copies):
    last = site.objects()
    assert set(there(copies)) == set(here(site))
    site.stop_everything()
    shutil.rmtree(site.root)  # the host's disk lost: releases, var/ and backups/
    site.fab("deploy")
    assert site.objects() == []
    restored = site.fab("restore", "latest", "--from", "offsite", "--no-prompt")
    assert "fetch the offsite copies" in restored.stdout
    assert site.objects() == last == site.objects("instance2")
    assert [e for e in site.deploy_log() if e["event"] == "restore"]


@pytest.mark.parametrize("what", ["repozo file", "blob"])
def test_a_corrupted_offsite_copy_is_detected_and_not_restored(site, copies, what):
    newest = max(there(copies))
    if what == "repozo file":
        damaged = sorted((copies / "filestorage").glob("*.fsz"))[-1]
    else:
        damaged = next(p for p in sorted((copies / "blobstorage" / newest).rglob("*.blob")))
    original = damaged.read_bytes()
    site.add(f"live, after the backups ({what})", "kept")
    live = site.objects()
    damaged.write_bytes(original[:10] + bytes([original[10] ^ 0xFF]) + original[11:])
    try:
        refused = site.fab("restore", "latest", "--from", "offsite", "--no-prompt", check=False)
    finally:
        damaged.write_bytes(original)
    assert refused.returncode == 1, refused.stdout
    assert "CORRUPTED" in refused.stderr and "nothing restored, the live data is untouched" in refused.stderr
    # a blob is a hard link in every copy that holds it: the first copy of the chain read names it
    assert (f"filestorage/{damaged.name}" if what == "repozo file" else "offsite copy blobstorage/") in refused.stderr
    assert site.objects() == live and site.answers()


@pytest.mark.parametrize("args, says", [
    (("--from", "elsewhere"), "'elsewhere' is neither offsite nor an absolute path"),
    (("--from", "offsite", "--snapshot"), "snapshots are not copied offsite"),
    (("--from", "offsite", "--date", "yesterday"), "is not yyyy-mm-dd"),
])
def test_a_restore_from_offsite_mistake_exits_2_and_changes_nothing(site, args, says):
    live = site.objects()
    refused = site.fab("restore", *args, "--no-prompt", check=False) if "--date" in args else \
        site.fab("restore", "latest", *args, "--no-prompt", check=False)
    assert refused.returncode == 2 and says in refused.stderr and "Traceback" not in refused.stderr
    assert site.objects() == live
