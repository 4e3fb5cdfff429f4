"""Supervisor as the site's process manager: its config, and the commands that drive it.

supervisord runs from ``<root>/venv`` as the deploy login, with its socket, pid and
logs under ``<root>/var``. Its config is part of each release
(``etc/supervisord.conf``), so a rollback brings back the programs it had.
"""
from __future__ import annotations

import shlex

from . import commands
from .hostconfig import HostConfig, Program

CONFIG_IN_RELEASE = "etc/supervisord.conf"
MAX_SOCKET_PATH = 100  # AF_UNIX paths are limited to 108 bytes


def socket_path(config: HostConfig) -> str:
    return config.path_on_host("var", "run", "supervisor.sock")


def program_command(config: HostConfig, program: Program) -> str:
    """The program's command line, its relative executable under ``<root>/current``."""
    tokens = shlex.split(program.command)
    if not tokens[0].startswith("/"):
        tokens[0] = config.path_on_host("current", tokens[0])
    return shlex.join(tokens)


def render_config(config: HostConfig) -> str:
    """supervisord.conf for the site: every program, none started by supervisord itself."""
    if len(socket_path(config).encode()) > MAX_SOCKET_PATH:
        raise ValueError(f"{config.path}: [host] root is too long for supervisor's socket {socket_path(config)}")
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
    for order, program in enumerate(config.programs, start=1):
        lines += [
            f"[program:{program.name}]",
            f"command = {escape(program_command(config, program))}",
            f"directory = {escape(config.path_on_host('current'))}",
            f"priority = {order * 10}",
            "autostart = false", "autorestart = true", "startsecs = 0", "stopwaitsecs = 30",
            "stopasgroup = true", "killasgroup = true", "redirect_stderr = true",
            f"stdout_logfile = {var('log', program.name + '.log')}",
            "stdout_logfile_maxbytes = 10MB", "stdout_logfile_backups = 5", "",
        ]
    return "\n".join(lines)


def _ctl(config: HostConfig, *args: str) -> str:
    return commands.join(config.path_on_host("venv", "bin", "supervisorctl"),
                         "-c", config.path_on_host("current", CONFIG_IN_RELEASE), *args)


def start(config: HostConfig, names: list[str]) -> str:
    """Start supervisord when it is not running, load the config ``current`` has, start ``names`` in order."""
    daemon = commands.join(config.path_on_host("venv", "bin", "supervisord"),
                           "-c", config.path_on_host("current", CONFIG_IN_RELEASE))
    steps = [
        commands.make_directories(config.path_on_host("var", "run"), config.path_on_host("var", "log")),
        f"{{ {_running(config)} || {daemon}; }}",
        _wait_for_socket(config),
        # the switch may have changed the programs: load them (none starts by itself)
        _ctl(config, "reread") + " >/dev/null", _ctl(config, "update"),
    ]
    if names:
        steps.append(_ctl(config, "start", *names))
    return commands.and_then(*steps)


def stop(config: HostConfig, names: list[str], shutdown: bool = False) -> str:
    """Stop ``names`` in the order given, and supervisord too with ``shutdown``; nothing running is fine."""
    pid_file = config.path_on_host("var", "run", "supervisord.pid")
    script = (
        'pid_file=$1 shutdown=$2; shift 2; test -f "$pid_file" && pid=$(cat "$pid_file") '
        '&& kill -0 "$pid" 2>/dev/null || exit 0; "$@" >/dev/null || exit 1; '
        '[ "$shutdown" = yes ] || exit 0; kill "$pid"; i=0; '
        'while kill -0 "$pid" 2>/dev/null && [ $i -lt 600 ]; do sleep 0.1; i=$((i+1)); done; '
        '! kill -0 "$pid" 2>/dev/null'
    )
    ctl = [config.path_on_host("venv", "bin", "supervisorctl"), "-s", f"unix://{socket_path(config)}", "stop", *names]
    return commands.join("sh", "-c", script, "sh", pid_file, "yes" if shutdown else "no", *ctl)


def restart(config: HostConfig, name: str) -> str:
    """Restart one program."""
    return _ctl(config, "restart", name)


def status(config: HostConfig) -> str:
    """What supervisord runs (non-zero exit when something is not running)."""
    return _ctl(config, "status")


def _running(config: HostConfig) -> str:
    pid_file = config.path_on_host("var", "run", "supervisord.pid")
    return commands.join("sh", "-c", 'test -f "$1" && kill -0 "$(cat "$1")" 2>/dev/null', "sh", pid_file)


def _wait_for_socket(config: HostConfig) -> str:
    return commands.join(
        "sh", "-c", 'i=0; while [ ! -S "$1" ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done; test -S "$1"',
        "sh", socket_path(config),
    )
