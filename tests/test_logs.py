"""Logs: the logrotate rule bootstrap-host writes, run for real, and ``fab logs -f``.

The site on the sandbox gets a third program, ``web``: Python's ``http.server``,
which writes one line per request to its stderr, so supervisord writes one line per
request into ``var/log/web.log``. The rule is rendered for the site's root and the
current user, and the real ``logrotate -f`` rotates the files; a request afterwards
must land in the fresh file, the earlier one in the rotated file.
"""
from __future__ import annotations

import getpass
import grp
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from fabfile.host import bootstrap, logrotate
from fabfile.config import hostconfig
from fabfile.switch import logs
from sites import make_site
from support import free_port, require


def config(tmp_path: Path, extra: str = "") -> hostconfig.HostConfig:
    (tmp_path / "h.cfg").write_text("[host]\naddress = h\nroot = /srv/site\napp_user = plone\n"
                                    f"[buildout]\ndirectory = .\n{extra}")
    return hostconfig.load(tmp_path / "h.cfg", environ={})


def test_the_rule_rotates_var_log_daily_as_app_user_by_copy_and_truncate(tmp_path):
    rule = logrotate.render_rule(config(tmp_path))
    assert '"/srv/site/var/log/*.log" {' in rule
    for line in ("su plone plone", "daily", "rotate 14", "copytruncate", "compress", "delaycompress", "missingok"):
        assert f"    {line}\n" in rule
    assert logrotate.rule_path(config(tmp_path)) == "/etc/logrotate.d/srv-site"


def test_a_path_logrotate_cannot_quote_is_refused():
    with pytest.raises(ValueError, match="logrotate cannot take"):
        logrotate._quoted('/srv/a"b')


def test_bootstrap_writes_the_rule_once_and_then_finds_it(tmp_path):
    cfg = config(tmp_path)
    path, text = logrotate.rule_path(cfg), logrotate.render_rule(cfg)
    facts = {"files": {}}
    plan = bootstrap.Plan([], [])
    bootstrap.plan_logrotate(cfg, facts, plan)
    assert [change.what for change in plan.changes] == [f"rotate the logs under /srv/site/var/log ({path})"]
    assert "/etc/logrotate.d" in plan.changes[0].command and "copytruncate" in plan.changes[0].command
    assert path in bootstrap.fact_spec(cfg)["files"]
    plan = bootstrap.Plan([], [])
    bootstrap.plan_logrotate(cfg, {"files": {path: text}}, plan)
    assert plan.changes == [] and plan.checked == [f"{path} rotates /srv/site/var/log"]


def test_following_streams_every_program_and_ends_with_the_session(tmp_path):
    cfg = config(tmp_path, "[services]\nprograms = zeo web\n")
    command = logs.follow_command(cfg, ["zeo", "web"], 20)
    assert command.count(" tail -f ") == 2 and "sed -u 's|^|web |'" in command
    assert command.endswith("& cat >/dev/null; kill 0")
    cfg = config(tmp_path, "[services]\nmanager = systemd\nprograms = zeo web\n")
    assert logs.follow_command(cfg, ["zeo", "web"], 5).startswith(
        "journalctl --no-pager -f -n 5 -u srv-site-zeo.service -u srv-site-web.service & ")


# -- on the sandbox host -------------------------------------------------------

@pytest.fixture(scope="module")
def site(sandbox_host, tmp_path_factory):
    port = free_port()
    test_site = make_site(tmp_path_factory.mktemp("logs"), sandbox_host, "[notify]\nsyslog = local3\n",
                          programs=("zeoserver", "instance1", "instance2", "web"),
                          commands={"web": f"{sys.base_prefix}/bin/python3 -u -m http.server {port} "
                                           f"--bind 127.0.0.1"})
    test_site.ports["web"] = port
    test_site.fab("deploy")
    yield test_site
    test_site.stop_everything()


def request(site, path: str) -> None:
    """One GET to ``web``; http.server logs it (a 404 is logged as well as a 200)."""
    try:
        urllib.request.urlopen(site.url(path, "web"), timeout=10).close()
    except urllib.error.HTTPError:
        pass


def wait_for(condition, seconds: float = 10) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.1)
    return condition()


def test_logrotate_rotates_and_the_program_keeps_logging_into_the_fresh_file(site, tmp_path):
    require(shutil.which("logrotate"), "logrotate is not installed (apt-get install logrotate)")
    cfg = hostconfig.load(Path(site.env["DEPLOY_HOSTCONFIGS"]) / "test.cfg", environ={})
    user = getpass.getuser()
    rule = tmp_path / "rule"
    rule.write_text(logrotate.render_rule(cfg, user=user, group=grp.getgrgid(os.getgid()).gr_name))
    log = site.root / "var" / "log" / "web.log"
    request(site, "before-rotation")
    assert wait_for(lambda: log.exists() and "before-rotation" in log.read_text())

    result = subprocess.run(["logrotate", "-f", "-s", str(tmp_path / "state"), str(rule)],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    rotated = sorted(log.parent.glob("web.log-*"))
    assert len(rotated) == 1 and "before-rotation" in rotated[0].read_text()
    assert "before-rotation" not in log.read_text()

    request(site, "after-rotation")
    assert wait_for(lambda: "after-rotation" in log.read_text())
    text = log.read_text()
    assert "before-rotation" not in text and not text.startswith("\0"), "the program wrote at its old offset"
    assert site.answers() and site.answers("instance2")


def test_supervisord_runs_the_syslog_listener_beside_the_programs(site):
    ctl = [str(site.root / "venv" / "bin" / "supervisorctl"), "-c", str(site.root / "current" / "etc" /
                                                                       "supervisord.conf"), "status"]
    listing = subprocess.run(ctl, capture_output=True, text=True).stdout
    assert re.search(r"^syslog +RUNNING", listing, re.M), listing
    assert site.fab("status", check=False).returncode == 0


def test_logs_follow_streams_a_new_line_and_stops_cleanly_on_ctrl_c(site):
    follower = subprocess.Popen([*site_fab(site), "logs", "-f"], cwd=Path(__file__).resolve().parent.parent,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                env={**os.environ, **site.env})
    seen: list[str] = []
    reader = threading.Thread(target=lambda: seen.extend(iter(follower.stdout.readline, "")), daemon=True)
    reader.start()
    try:
        assert wait_for(lambda: any("following the logs" in line for line in seen), 30), seen
        time.sleep(2)  # the remote tails have started and printed what was there
        marker = f"followed-{time.monotonic_ns()}"
        request(site, marker)
        assert wait_for(lambda: any(marker in line and line.startswith("web ") for line in seen), 20), seen
        follower.send_signal(signal.SIGINT)
        started = time.monotonic()
        code = follower.wait(timeout=15)
        took = time.monotonic() - started
    finally:
        if follower.poll() is None:
            follower.kill()
            follower.wait()
    reader.join(5)
    text = "".join(seen)
    assert code == 0 and took < 15, text
    assert "Traceback" not in text and "stopped following the logs" in text
    # nothing of ours goes on following on the host
    assert wait_for(lambda: not leftover_tails(site), 10), leftover_tails(site)


def site_fab(site) -> list[str]:
    from sites import FAB
    return [FAB, "-H", "test"]


def leftover_tails(site) -> list[str]:
    listing = subprocess.run(["ps", "-eo", "pid,args"], capture_output=True, text=True).stdout
    return [line for line in listing.splitlines()
            if "tail -f" in line and str(site.root) in line and "ps -eo" not in line]


# -- program output to syslog, with the site's facility (supervisor) ----------------------

def test_with_a_syslog_facility_supervisor_sends_every_program_line_to_the_listener(tmp_path):
    from fabfile.programs import supervisor
    conf = supervisor.render_config(config(tmp_path, "[services]\nprograms = zeo web\n[notify]\nsyslog = local3\n"))
    assert conf.count("stdout_events_enabled = true") == 2 and "[eventlistener:syslog]" in conf
    assert "events = PROCESS_LOG" in conf and "local3 buildout-srv-site" in conf
    assert "eventlistener" not in supervisor.render_config(config(tmp_path, "[services]\nprograms = zeo web\n"))
    from fabfile.config.hostconfig import ConfigError
    with pytest.raises(ConfigError, match=r"\[notify\] syslog: 'local9' is not a syslog facility"):  # at load
        config(tmp_path, "[services]\nprograms = web\n[notify]\nsyslog = local9\n")


def test_the_listener_logs_each_line_with_the_facility_and_answers_supervisor(tmp_path):
    """The listener's own code, fed two PROCESS_LOG events as supervisord sends them, with a stand-in
    for the syslog module that prints what it was given."""
    import shlex
    from fabfile.programs import supervisor
    cfg = config(tmp_path, "[services]\nprograms = web\n[notify]\nsyslog = local3\n")
    argv = shlex.split(supervisor.syslog_listener_command(cfg))
    fake = ("import sys, types; fake = types.ModuleType('syslog'); fake.LOG_LOCAL3, fake.LOG_INFO = 19 << 3, 6; "
            "fake.openlog = lambda tag, option, facility: print('open', tag, facility, file=sys.stderr); "
            "fake.syslog = lambda priority, text: print('log', priority, text, file=sys.stderr); "
            "sys.modules['syslog'] = fake; exec(sys.argv.pop(1))")

    def event(program: str, data: str) -> bytes:
        body = f"processname:{program} groupname:{program} pid:42 channel:stdout\n{data}".encode()
        return f"ver:3.0 server:supervisor serial:1 pool:syslog poolserial:1 eventname:PROCESS_LOG_STDOUT " \
               f"len:{len(body)}\n".encode() + body

    result = subprocess.run([sys.executable, "-c", fake, argv[2], *argv[3:]], capture_output=True,
                            input=event("web", "GET / 200\nGET /x 404\n") + event("zeo", "ready é\n"), timeout=10)
    assert result.returncode == 0, result.stderr
    assert result.stderr.decode().splitlines() == [
        f"open buildout-srv-site {19 << 3}", "log 6 web: GET / 200", "log 6 web: GET /x 404", "log 6 zeo: ready é"]
    assert result.stdout.decode() == "READY\nRESULT 2\nOK" * 2 + "READY\n"
