"""Alerts: a scheduled backup that fails posts the ``[notify]`` webhook; ``fab status`` exits by kind of trouble.

The site on the sandbox has a backup schedule and a webhook on a receiver on
127.0.0.1 whose URL carries a secret token. The shipped job (``run.py``, as cron
runs it) is made to fail by moving the filestorage away; the receiver must get the
JSON that ``fab`` sends for its own events, with no form of the token in it.
"""
from __future__ import annotations

import json
import os
import signal
import stat
import subprocess

import pytest

from fabfile.config import hostconfig
from fabfile.data import schedule
from fabfile.state import status
from sites import make_site
from support import webhook_receiver

TOKEN = "hook-t0ken-7"


@pytest.mark.parametrize("deployed, down, health, switch, backup, code", [
    (False, True, True, None, None, 1),
    (True, True, True, {"result": "failed"}, {"event": "backup-failed"}, 3),
    (True, False, True, {"result": "failed"}, None, 4),
    (True, False, False, {"result": "failed"}, None, 5),
    (True, False, False, {"result": "ok"}, {"event": "backup-failed"}, 5),
    (True, False, False, {"result": "ok"}, {"event": "backup"}, 0),
    (True, False, False, None, None, 0),
])
def test_status_exits_with_the_worst_trouble_found(deployed, down, health, switch, backup, code):
    assert status.trouble_code(deployed, down, health, switch, backup) == code


def test_the_job_settings_carry_the_webhook_and_the_pattern_of_its_secrets(tmp_path):
    (tmp_path / "h.cfg").write_text("[host]\naddress = h.example\nroot = /srv/site\n[buildout]\ndirectory = .\n"
                                    "[notify]\nwebhook = https://hooks.example/?t=${env:T}\n")
    config = hostconfig.load(tmp_path / "h.cfg", environ={"T": TOKEN})
    settings = schedule.job_settings(config)
    assert settings["notify"] == {"webhook": f"https://hooks.example/?t={TOKEN}", "host": "h", "address": "h.example"}
    assert hostconfig.secret_pattern(frozenset([TOKEN])).pattern == settings["secret_pattern"]
    assert schedule.cron_block(config) == ""  # the URL goes to settings.json (0600), never to a command line


# -- on the sandbox host -------------------------------------------------------

@pytest.fixture(scope="module")
def webhook():
    with webhook_receiver() as hook:
        yield hook


@pytest.fixture(scope="module")
def site(sandbox_host, tmp_path_factory, webhook):
    port, _ = webhook
    test_site = make_site(tmp_path_factory.mktemp("alerts"), sandbox_host,
                          f"[notify]\nwebhook = http://127.0.0.1:{port}/hook?token=${{env:HOOK_TOKEN}}\n"
                          "[backup]\nschedule_incremental = daily\n")
    test_site.env["HOOK_TOKEN"] = TOKEN
    test_site.fab("deploy")
    yield test_site
    subprocess.run(f"crontab -l 2>/dev/null | grep -v {test_site.root} | crontab -", shell=True)
    test_site.stop_everything()


def run_job(test_site) -> subprocess.CompletedProcess:
    """The shipped job, as cron runs it: in <root>, a bare environment."""
    return subprocess.run(["/bin/sh", "-c", f"cd {test_site.root} && python3 "
                                            f"{test_site.root}/current/.deploy/backup-job/run.py --quiet"],
                          capture_output=True, text=True, timeout=300,
                          env={"PATH": "/usr/bin:/bin", "HOME": os.environ.get("HOME", "/")})


def test_status_of_a_healthy_site_exits_0(site):
    assert site.fab("status", check=False).returncode == 0


def test_a_scheduled_backup_that_fails_posts_the_webhook_without_its_secret(site, webhook):
    _, received = webhook
    said = site.fab("schedule").stdout
    assert "crontab" in said
    settings = site.root / "current" / ".deploy" / "backup-job" / "settings.json"
    assert stat.S_IMODE(settings.stat().st_mode) == 0o600
    assert TOKEN in settings.read_text()
    crontab = subprocess.run(["crontab", "-l"], capture_output=True, text=True).stdout
    assert str(site.root) in crontab and TOKEN not in crontab
    before = len(received)
    data_fs = site.root / "var" / "filestorage" / "Data.fs"
    data_fs.rename(data_fs.with_name("Data.fs.away"))
    try:
        ran = run_job(site)
    finally:
        data_fs.with_name("Data.fs.away").rename(data_fs)
    assert ran.returncode == 1 and "backup failed" in ran.stderr, ran.stderr
    assert TOKEN not in ran.stdout + ran.stderr
    assert len(received) == before + 1
    path, body = received[-1]
    assert path == f"/hook?token={TOKEN}"  # the URL the hostconfig names; the token stays out of the payload
    payload = json.loads(body)
    assert set(payload) == {"event", "host", "address", "release", "who", "duration", "error"}
    assert (payload["event"], payload["host"], payload["release"]) == ("backup-failed", "test", site.current())
    assert "(scheduled)" in payload["who"] and payload["error"] and TOKEN not in body.decode()
    assert site.deploy_log()[-1]["event"] == "backup-failed"


def test_status_exits_5_after_a_failed_backup_and_0_after_a_good_one(site):
    result = site.fab("status", check=False)
    assert result.returncode == 5, result.stdout + result.stderr
    assert "last backup" in result.stdout and "failed" in result.stdout
    assert "the last switch or the last backup failed" in result.stderr
    assert run_job(site).returncode == 0
    assert site.fab("status", check=False).returncode == 0


def supervisorctl(site, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(site.root / "venv" / "bin" / "supervisorctl"), "-c",
                           str(site.root / "current" / "etc" / "supervisord.conf"), *args],
                          capture_output=True, text=True)


def test_status_exits_4_when_a_program_runs_but_its_health_url_does_not_answer(site):
    pid = int(supervisorctl(site, "pid", "instance2").stdout.strip())
    os.kill(pid, signal.SIGSTOP)  # running, as supervisord sees it, and answering nothing
    try:
        result = site.fab("status", check=False)
    finally:
        os.kill(pid, signal.SIGCONT)
    assert result.returncode == 4, result.stdout + result.stderr
    assert "a health URL does not answer" in result.stderr


def test_status_exits_3_when_a_program_is_stopped(site):
    supervisorctl(site, "stop", "instance2")
    try:
        result = site.fab("status", check=False)
    finally:
        supervisorctl(site, "start", "instance2")
    assert result.returncode == 3, result.stdout + result.stderr
    assert "a program is not running" in result.stderr and "Traceback" not in result.stderr


def test_status_exits_1_when_nothing_is_deployed(sandbox_host, tmp_path):
    fresh = make_site(tmp_path, sandbox_host)
    result = fresh.fab("status", check=False)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "nothing is deployed" in result.stderr
