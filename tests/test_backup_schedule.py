"""Scheduled backups: the cron lines made from ``[backup]``, and the job they run on the host.

The unit tests check the text cron gets. The integration test deploys the example
site with a schedule, installs it as the deploy does (``schedule.install_schedule``),
finds the lines in the crontab (or, on a host without ``crontab``, in the job's
``crontab`` file), then runs each line's command as cron would run it, in a bare
environment, and checks a verified backup (packed first for the full one).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from fabric import Connection

from fabfile.config import hostconfig
from fabfile.data import schedule
from fabfile.remote.site import Site
from sites import make_site

VENV_BIN = Path(sys.executable).parent


def config(tmp_path: Path, backup: str) -> hostconfig.HostConfig:
    (tmp_path / "h.cfg").write_text("[host]\naddress = h\nroot = /srv/site\n[buildout]\ndirectory = .\n"
                                    f"[backup]\n{backup}")
    return hostconfig.load(tmp_path / "h.cfg", environ={})


@pytest.mark.parametrize("incremental, full, lines", [
    ("daily", "weekly", ["15 3 * * 1-6 cd /srv/site && python3 /srv/site/current/.deploy/backup-job/run.py --quiet",
                         "15 3 * * 0 cd /srv/site && python3 /srv/site/current/.deploy/backup-job/run.py --full --quiet"]),
    ("daily", "monthly", ["15 3 2-31 * * cd /srv/site && python3 /srv/site/current/.deploy/backup-job/run.py --quiet",
                          "15 3 1 * * cd /srv/site && python3 /srv/site/current/.deploy/backup-job/run.py --full --quiet"]),
    ("hourly", "daily", ["15 0-2,4-23 * * * cd /srv/site && python3 /srv/site/current/.deploy/backup-job/run.py --quiet",
                         "15 3 * * * cd /srv/site && python3 /srv/site/current/.deploy/backup-job/run.py --full --quiet"]),
    ("daily", "daily", ["15 3 * * * cd /srv/site && python3 /srv/site/current/.deploy/backup-job/run.py --full --quiet"]),
    ("*/30 8-18 * * 1-5", None,
     ["*/30 8-18 * * 1-5 cd /srv/site && python3 /srv/site/current/.deploy/backup-job/run.py --quiet"]),
])
def test_the_schedule_becomes_cron_lines_that_never_start_two_backups_at_once(tmp_path, incremental, full, lines):
    backup = f"schedule_incremental = {incremental}\n" + (f"schedule_full = {full}\n" if full else "")
    block = schedule.cron_block(config(tmp_path, backup))
    assert block.splitlines() == [
        "# BEGIN buildout-deploy backups of /srv/site (written by fab deploy from [backup]; "
        "change the hostconfig, not this)", *lines, "# END buildout-deploy backups of /srv/site"]


def test_no_schedule_makes_no_cron_lines(tmp_path):
    assert schedule.cron_block(config(tmp_path, "keep = 2\n")) == ""


def test_a_bad_schedule_names_the_key():
    with pytest.raises(schedule.ScheduleError, match=r"\[backup\] schedule_full = 'fortnightly': use hourly"):
        schedule.cron_fields("schedule_full", "fortnightly")
    with pytest.raises(schedule.ScheduleError, match="five cron fields"):
        schedule.cron_fields("schedule_incremental", "15 3 * *")


def test_the_crontab_keeps_other_lines_and_replaces_only_this_sites_block():
    ours = "# BEGIN buildout-deploy backups of /srv/a\n1 2 * * * a\n# END buildout-deploy backups of /srv/a\n"
    other = "# BEGIN buildout-deploy backups of /srv/b\n1 2 * * * b\n# END buildout-deploy backups of /srv/b\n"
    existing = "MAILTO=ops@example.org\n0 4 * * * certbot renew\n" + other + ours
    new = ours.replace("1 2", "5 6")
    merged = schedule.merged_crontab(existing, "/srv/a", new)
    assert merged.startswith("MAILTO=ops@example.org\n0 4 * * * certbot renew\n" + other)
    assert merged.endswith(new) and "1 2 * * * a" not in merged
    assert schedule.merged_crontab(merged, "/srv/a", new) == merged
    assert "/srv/a" not in schedule.merged_crontab(merged, "/srv/a", "")


def test_the_job_settings_carry_the_backup_options_and_the_zeopack_command(tmp_path):
    settings = schedule.job_settings(config(tmp_path, "keep = 3\nblob_archive = tar.gz\nzeopack_before_full = true\n"
                                                      "pack_days = 3\nzeopack = bin/zeopack -u var/zeo.sock\n"))
    assert settings["options"]["keep"] == 3 and settings["options"]["blob_archive"] == "tar.gz"
    assert settings["zeopack"] == ["/srv/site/current/bin/zeopack", "-u", "var/zeo.sock"]
    assert (settings["zeopack_before_full"], settings["pack_days"]) == (True, 3)
    assert settings["repozo"] == "/srv/site/current/bin/repozo"


def test_the_shipped_engine_imports_with_the_standard_library_only(tmp_path):
    data, _ = schedule.job_archive(config(tmp_path, "schedule_full = daily\n"), "")
    (tmp_path / "job.tar.gz").write_bytes(data)
    subprocess.run(["tar", "-xzf", "job.tar.gz"], cwd=tmp_path, check=True)
    result = subprocess.run([sys.base_prefix + "/bin/python3", "-S", "-c",
                             "import sys; sys.path.insert(0, '.'); import deploybackup.backups.engine; "
                             "print(sorted(m for m in sys.modules if m.split('.')[0] in "
                             "('fabric', 'invoke', 'paramiko', 'rich', 'ZODB')))"],
                            cwd=tmp_path, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


# -- on the sandbox host -------------------------------------------------------

@pytest.fixture(scope="module")
def site(sandbox_host, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("schedule")
    test_site = make_site(workdir, sandbox_host)
    zeo = test_site.ports["zeo"]
    with open(test_site.env["DEPLOY_HOSTCONFIGS"] + "/test.cfg", "a") as cfg:
        cfg.write(f"[backup]\nschedule_incremental = daily\nschedule_full = weekly\nzeopack_before_full = true\n"
                  f"pack_days = 0\nzeopack = {VENV_BIN / 'zeopack'} 127.0.0.1:{zeo}\n")
    test_site.deployed = test_site.fab("deploy").stdout
    config = hostconfig.load(workdir / "hostconfigs" / "test.cfg", environ={})
    remote = Site(Connection("127.0.0.1"), config)
    yield test_site, remote
    remote.run(f"crontab -l >/dev/null 2>&1 && crontab -l | grep -v 'backups of {config.root}' "
               f"| grep -v '{config.root}/current' | crontab - || true", warn=True)
    remote.close()
    test_site.stop_everything()


def cron_lines(test_site, remote) -> list[str]:
    found = remote.run("command -v crontab >/dev/null && crontab -l", changes=False, warn=True)
    text = found.stdout if not found.exited else (
        test_site.root / "current" / ".deploy" / "backup-job" / "crontab").read_text()
    return [line for line in text.splitlines() if line and not line.startswith("#")
            and f"{test_site.root}/current" in line]


def run_as_cron(line: str) -> subprocess.CompletedProcess:
    """The command of a cron line, run as cron runs it: /bin/sh, a bare environment."""
    command = " ".join(line.split()[5:])
    return subprocess.run(["/bin/sh", "-c", command], capture_output=True, text=True, timeout=300,
                          env={"PATH": "/usr/bin:/bin", "HOME": os.environ.get("HOME", "/"), "SHELL": "/bin/sh"})


def records(test_site) -> list[dict]:
    folder = test_site.root / "backups" / "records"
    return [json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))] if folder.exists() else []


def test_the_deploy_installs_the_schedule_once_and_its_commands_make_verified_backups(site):
    test_site, remote = site
    assert "backup job written" in test_site.deployed
    again = schedule.install_schedule(remote)
    assert "backup job written" not in again and "crontab:" not in again
    lines = cron_lines(test_site, remote)
    assert [line.split()[:5] for line in lines] == [["15", "3", "*", "*", "1-6"], ["15", "3", "*", "*", "0"]]
    incremental, full = lines
    test_site.add("scheduled", "backed up at three")
    ran = run_as_cron(full)
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout == "" and ran.stderr == ""   # --quiet: nothing unless something fails
    test_site.add("later", "an incremental")
    ran = run_as_cron(incremental)
    assert ran.returncode == 0, ran.stderr
    made = records(test_site)
    assert [(r["kind"], r["verified"], r["release"]) for r in made] == [
        ("full", True, test_site.current()), ("incremental", True, test_site.current())]
    logged = [e for e in test_site.deploy_log() if e["event"] == "backup"]
    assert [e["stamp"] for e in logged] == [r["stamp"] for r in made]
    assert all("(scheduled)" in e["who"] for e in logged)
    assert (test_site.root / "var" / "filestorage" / "Data.fs.old").exists()  # what a FileStorage pack leaves
    assert test_site.answers()


def test_a_failing_scheduled_backup_says_why_and_exits_non_zero(site):
    test_site, remote = site
    lock = test_site.root / "backups" / ".lock"
    lock.mkdir()
    (lock / "holder").write_text("someone since now for backup\n")
    try:
        ran = run_as_cron(cron_lines(test_site, remote)[1])
    finally:
        (lock / "holder").unlink()
        lock.rmdir()
    assert ran.returncode == 1
    assert "backup failed" in ran.stderr and "another backup or restore runs: someone" in ran.stderr
