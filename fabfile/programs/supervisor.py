"""Supervisor as the site's process manager: its config, and the commands that drive it.

supervisord runs from ``<root>/venv`` as ``app_user`` (through ``sudo -n -u app_user``
and the rule bootstrap-host writes when that is not the deploy login), with its
socket, pid and logs under ``<root>/var/run`` and ``<root>/var/log``, which
bootstrap-host makes for ``app_user``. Its config is part of each release
(``etc/supervisord.conf``), so a rollback brings back the programs it had.
"""
from __future__ import annotations

import base64
import shlex

from .. import commands
from ..config.hostconfig import HostConfig, Program
from ..config.schema import SYSLOG_FACILITIES

CONFIG_IN_RELEASE = "etc/supervisord.conf"


def socket_path(config: HostConfig) -> str:
    return config.path_on_host("var", "run", "supervisor.sock")


COLORS = ("blue", "green")


def program_command(config: HostConfig, program: Program, link: str = "current") -> str:
    """The program's command line, its relative executable under ``<root>/current`` (or a color's link)."""
    tokens = shlex.split(program.command)
    if not tokens[0].startswith("/"):
        tokens[0] = config.path_on_host(link, tokens[0])
    return shlex.join(tokens)


def processes(config: HostConfig) -> list[tuple[str, Program, str]]:
    """supervisord's programs: ``(name, program, link it runs from)``; under blue/green each front
    instance twice, ``instance1-blue`` from ``<root>/blue`` and ``instance1-green`` from ``<root>/green``."""
    twins = set(config.front.instances) if config.switch == "bluegreen" else set()
    found = []
    for program in config.programs:
        if program.name in twins:
            found += [(f"{program.name}-{color}", program, color) for color in COLORS]
        else:
            found.append((program.name, program, "current"))
    return found


# An event listener that gives each line the programs print to syslog with the site's facility
# (supervisor's own ``stdout_syslog`` always uses the ``user`` facility). Standard library only:
# it runs on the host's python3, from supervisord.conf, where it is one base64 line.
SYSLOG_LISTENER = """\
import sys, syslog
facility, tag = sys.argv[1], sys.argv[2]
syslog.openlog(tag, 0, getattr(syslog, "LOG_" + facility.upper()))
events, answers = sys.stdin.buffer, sys.stdout
while True:
    answers.write("READY\\n")
    answers.flush()
    line = events.readline()
    if not line:  # supervisord is gone
        break
    header = dict(field.split(":", 1) for field in line.decode().split())
    body = events.read(int(header["len"])).decode("utf-8", "replace")
    about, _, data = body.partition("\\n")
    program = dict(field.split(":", 1) for field in about.split()).get("processname", "?")
    for line in data.splitlines():
        if line.strip():
            syslog.syslog(syslog.LOG_INFO, program + ": " + line)
    answers.write("RESULT 2\\nOK")
    answers.flush()
"""


FACILITIES = SYSLOG_FACILITIES  # checked at load time


def syslog_listener_command(config: HostConfig) -> str:
    """The listener's command line: ``python3 -c ... FACILITY TAG``, its tag the site's name."""
    if config.syslog not in FACILITIES:
        raise ValueError(f"{config.path}: [notify] syslog = {config.syslog!r}: use one of {', '.join(FACILITIES)}")
    source = base64.b64encode(SYSLOG_LISTENER.encode()).decode()
    tag = "buildout-" + config.root.strip("/").replace("/", "-")
    return shlex.join([config.python, "-c", f"import base64; exec(base64.b64decode('{source}'))",
                       config.syslog, tag])


def render_config(config: HostConfig) -> str:
    """supervisord.conf for the site: every program, none started by supervisord itself."""
    escape = lambda value: value.replace("%", "%%")  # supervisor expands %(name)s
    var = lambda *parts: escape(config.path_on_host("var", *parts))
    lines = [
        "[unix_http_server]", f"file = {var('run', 'supervisor.sock')}", "chmod = 0700", "",
        "[supervisord]", f"logfile = {var('log', 'supervisord.log')}", f"pidfile = {var('run', 'supervisord.pid')}",
        f"directory = {escape(config.path_on_host('current'))}", "logfile_maxbytes = 10MB", "logfile_backups = 5", "",
        "[rpcinterface:supervisor]",
        "supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface", "",
        "[supervisorctl]", f"serverurl = unix://{var('run', 'supervisor.sock')}", "",
    ]
    for order, (name, program, link) in enumerate(processes(config), start=1):
        lines += [
            f"[program:{name}]",
            f"command = {escape(program_command(config, program, link))}",
            f"directory = {escape(config.path_on_host(link))}",
            f"priority = {order * 10}",
            "autostart = false", "autorestart = true", "startsecs = 0", "stopwaitsecs = 30",
            "stopasgroup = true", "killasgroup = true", "redirect_stderr = true",
            f"stdout_logfile = {var('log', name + '.log')}",
            "stdout_logfile_maxbytes = 10MB", "stdout_logfile_backups = 5",
            *(("stdout_events_enabled = true",) if config.syslog else ()), "",
        ]
    if config.syslog:  # the files stay (fab logs reads them); syslog gets each line too
        lines += ["[eventlistener:syslog]", f"command = {escape(syslog_listener_command(config))}",
                  "events = PROCESS_LOG", "buffer_size = 1024", "autostart = true", "autorestart = true",
                  "startsecs = 0", f"stderr_logfile = {var('log', 'syslog-listener.log')}", ""]
    return "\n".join(lines)


def _as_app_user(config: HostConfig, *tokens: str) -> str:
    """``tokens`` run as ``app_user`` (through the sudo rule bootstrap-host writes) when it is not us."""
    prefix = ("sudo", "-n", "-u", config.app_user) if config.app_user != config.user else ()
    return commands.join(*prefix, *tokens)


def _ctl(config: HostConfig, *args: str) -> str:
    return _as_app_user(config, config.path_on_host("venv", "bin", "supervisorctl"),
                        "-c", config.path_on_host("current", CONFIG_IN_RELEASE), *args)


def _running(config: HostConfig) -> str:
    return f"{_ctl(config, 'pid')} >/dev/null 2>&1"


def _stray(config: HostConfig) -> str:
    """Succeeds (``$pid`` set) when the pid file names a live supervisord of this site: it runs, but its
    socket does not answer (deleted, say). One supervisord per site, ever: never a second beside it."""
    return (f"pid=$(cat {shlex.quote(pid_file(config))} 2>/dev/null); [ -n \"$pid\" ] && "
            f"tr '\\0' ' ' < /proc/\"$pid\"/cmdline 2>/dev/null | grep -F supervisord | "
            f"grep -qF -- {shlex.quote(config.root.rstrip('/') + '/')}")


def _refuse_second(config: HostConfig) -> str:
    message = (f"runs for {config.root} but does not answer on {socket_path(config)}: not starting a second "
               f"one (fab deploy or fab restart stops it first)")
    return f"echo \"supervisord (pid $pid)\" {shlex.quote(message)} >&2; false"


def _wait(condition: str, tenths: int = 600) -> str:
    """Wait for ``condition``, at most ``tenths`` tenths of a second; fails if it never holds."""
    return f"{{ i=0; until {condition} || [ $i -ge {tenths} ]; do sleep 0.1; i=$((i+1)); done; {condition}; }}"


def start(config: HostConfig, names: list[str]) -> str:
    """Start supervisord when it is not running, load the config ``current`` has, start ``names`` in order."""
    daemon = _as_app_user(config, config.path_on_host("venv", "bin", "supervisord"),
                          "-c", config.path_on_host("current", CONFIG_IN_RELEASE))
    steps = [
        f"{{ {_running(config)} || {{ if {_stray(config)}; then {_refuse_second(config)}; else {daemon}; fi; }}; }}",
        _wait(_running(config)),
        # the switch may have changed the programs: load them (none starts by itself)
        _ctl(config, "reread") + " >/dev/null", _ctl(config, "update"),
    ]
    if config.app_user == config.user:  # supervisord writes its log and socket there
        steps.insert(0, commands.make_directories(config.path_on_host("var", "run"), config.path_on_host("var", "log")))
    if names:
        steps.append(_ctl(config, "start", *names))
    return commands.and_then(*steps)


def stop(config: HostConfig, names: list[str], shutdown: bool = False) -> str:
    """Stop ``names`` in the order given, and supervisord too with ``shutdown``; nothing running is fine."""
    steps = [f"{{ {_ctl(config, 'stop', *names)} >/dev/null || true; }}"]
    if shutdown:
        steps += [_ctl(config, "shutdown") + " >/dev/null", _wait(f"! {_running(config)}")]
    return f"if {_running(config)}; then {commands.and_then(*steps)}; fi"


def restart(config: HostConfig, name: str) -> str:
    """Restart one program."""
    return _ctl(config, "restart", name)


def logs(config: HostConfig, name: str, lines: int) -> str:
    """The last ``lines`` lines of a program's log, read by supervisord (as ``app_user``, who may read var/)."""
    return f"{_ctl(config, 'tail', f'-{lines * 400}', name)} | {commands.join('tail', '-n', str(lines))}"


def follow(config: HostConfig, name: str) -> str:
    """A program's log as it grows (supervisorctl's ``tail -f``, read by supervisord as ``app_user``)."""
    return _ctl(config, "tail", "-f", name)


def status(config: HostConfig, names: list[str] | None = None) -> str:
    """What supervisord runs (non-zero exit when one of ``names``, or of all, is not running)."""
    return _ctl(config, "status", *(names or ()))


def live_processes(config: HostConfig, color: str) -> list[tuple[str, Program, str]]:
    """The programs that serve when the ``color`` set is live (all of them without blue/green)."""
    return [found for found in processes(config) if found[2] in ("current", color)]


def program_states(config: HostConfig) -> str:
    """``NAME STATE PID`` for each program supervisord knows (PID 0 unless RUNNING); nothing when it does
    not answer."""
    awk = '$2 ~ /^[A-Z]+$/ { pid = 0; if ($2 == "RUNNING") { pid = $4; sub(",", "", pid) } print $1, $2, pid }'
    return f"{{ {status(config)} 2>/dev/null || true; }} | {commands.join('awk', awk)}"


def pid_of(config: HostConfig, name: str) -> str:
    """The pid supervisord gives ``name`` (0 when it does not run)."""
    return _ctl(config, "pid", name)


def pid_file(config: HostConfig) -> str:
    return config.path_on_host("var", "run", "supervisord.pid")
