"""Integration: backups and restores of a deployed site over SSH, against a real sshd.

The example site is deployed once; objects and blobs are added over HTTP, as a user
would, then ``fab -H test backup``, ``backups`` and ``restore`` run as an operator
runs them. The last test calls the two functions the deploy chain uses (the backup
before the switch, and the restore of ``rollback --with-data``) on the same site.
"""
from __future__ import annotations

import json
import stat

import pytest
from fabric import Connection

from fabfile.data import backup as backups
from fabfile.config import hostconfig
from fabfile.data import restore as restores
from fabfile.switch import services
from fabfile.remote.site import Site
from sites import make_site


@pytest.fixture(scope="module")
def site(sandbox_host, tmp_path_factory):
    test_site = make_site(tmp_path_factory.mktemp("backup"), sandbox_host, "[backup]\nkeep = 2\n")
    test_site.fab("deploy")
    yield test_site
    test_site.stop_everything()


def stamps(site) -> list[str]:
    return sorted(p.stem for p in (site.root / "backups" / "records").glob("*.json"))


def test_fab_backup_then_restore_brings_back_the_objects_and_blobs_of_that_time(site):
    site.add("first", "first blob bytes")
    site.fab("backup")
    then = site.objects()
    site.add("second", "second blob bytes")
    site.fab("backup")
    first, second = stamps(site)
    restored = site.fab("restore", first, "--no-prompt")
    assert site.objects() == then and site.objects("instance2") == then
    assert f"restored {first[:10]}" in restored.stdout
    site.fab("restore", "latest", "--no-prompt")
    assert [o["title"] for o in site.objects()] == ["first", "second"]


def test_backups_are_private_and_logged_with_the_release(site):
    assert stat.S_IMODE((site.root / "backups").stat().st_mode) == 0o700
    logged = [e for e in site.deploy_log() if e["event"] == "backup"]
    assert [e["stamp"] for e in logged] == stamps(site)
    assert {e["release"] for e in logged} == {site.current()}
    assert all(e["verified"] for e in logged)


def test_fab_backups_shows_time_kind_size_release_and_verified(site):
    table = site.fab("backups").stdout
    first, second = stamps(site)
    rows = [line for line in table.splitlines() if site.current() in line]
    assert len(rows) == 2
    assert first[:10] in rows[0] and "full" in rows[0] and "yes" in rows[0]
    assert "incremental" in rows[1] and "yes" in rows[1]


def test_a_second_fab_backup_without_changes_makes_nothing(site):
    before = stamps(site)
    result = site.fab("backup")
    assert "nothing to back up" in result.stdout
    assert stamps(site) == before


def test_a_dry_run_backs_up_nothing(site):
    site.add("dry", "not backed up")
    before = stamps(site)
    result = site.fab("--dry", "backup")
    assert "[dry] would back up" in result.stdout
    assert stamps(site) == before


def test_a_bad_restore_date_stops_with_a_message_and_the_site_serving(site):
    result = site.fab("restore", "yesterday", "--no-prompt", check=False)
    assert result.returncode == 2 and "is not yyyy-mm-dd" in result.stderr  # an argument mistake
    result = site.fab("restore", "2001-01-01", "--no-prompt", check=False)
    assert result.returncode == 1 and "no backup at or before 2001-01-01" in result.stderr
    assert site.answers()


def test_the_deploy_chain_backup_is_tagged_with_the_leaving_release_and_rollback_restores_it(site):
    config = hostconfig.load(site.workdir / "hostconfigs" / "test.cfg", environ={})
    remote = Site(Connection("127.0.0.1"), config)
    leaving = site.current()
    site.add("third", "before the switch")
    then = site.objects()
    record = backups.backup_before_switch(remote, leaving)
    assert record["release"] == leaving and record["verified"]
    site.add("fourth", "after the switch")
    restores.restore_for_rollback(remote, leaving)
    assert not site.answers()  # left stopped: the rollback switches, then starts
    services.start_programs(remote)
    assert not services.check_health(remote)
    assert site.objects() == then
    assert json.loads((site.root / "backups" / "records" / f"{record['stamp']}.json").read_text())["release"] == leaving
    remote.close()


def test_rollback_with_data_returns_code_and_data_to_the_earlier_release(site):
    first_release, first_version = site.current(), site.get("version")
    site.add("before the deploy", "kept")
    before_deploy = site.objects()
    site.change_code("# a change to deploy and roll back")
    result = site.fab("deploy")
    assert "backup (tagged " + first_release in result.stdout
    backup_stamp = site.deploy_log()[-1]["backup"]
    assert backup_stamp and site.current() != first_release
    site.add("after the deploy", "lost by the rollback")
    assert backup_stamp in site.fab("releases").stdout
    site.fab("rollback", "--with-data")
    assert site.current() == first_release and site.get("version") == first_version
    assert site.objects() == before_deploy == site.objects("instance2")
    assert site.deploy_log()[-1]["event"] == "rollback" and site.deploy_log()[-1]["data"] == backup_stamp
    assert any(p.name.startswith("Data.fs.before-restore-") for p in (site.root / "var" / "filestorage").iterdir())
