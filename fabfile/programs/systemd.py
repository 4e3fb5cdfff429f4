"""systemd as the site's process manager: one unit per program, driven through sudo.

``bootstrap-host`` writes the units (``/etc/systemd/system/<site>-<program>.service``,
run as ``app_user`` from ``<root>/current``, ``Restart=on-failure``, logs to the
journal) and a sudoers rule that lets the deploy user start, stop and restart exactly
those units. The functions here have the interface of ``supervisor``: each returns
the command the deploy user runs.
"""
from __future__ import annotations

import re
import shlex

from .. import commands
from ..config.hostconfig import HostConfig, Program

SYSTEMCTL = "/usr/bin/systemctl"
UNIT_DIR = "/etc/systemd/system"
SUDOERS_DIR = "/etc/sudoers.d"


def site_slug(config: HostConfig) -> str:
    """A name for the site, from its root: ``/srv/example`` -> ``srv-example``."""
    return re.sub(r"[^A-Za-z0-9_-]", "_", config.root.strip("/").replace("/", "-")) or "root"


def unit_name(config: HostConfig, program: str) -> str:
    """The unit that runs ``program``: ``srv-example-instance1.service``."""
    return f"{site_slug(config)}-{program}.service"


def unit_names(config: HostConfig) -> list[str]:
    return [unit_name(config, p.name) for p in config.programs]


def _escape(value: str) -> str:
    """A value for a unit file: systemd expands ``$`` and ``%`` there."""
    return value.replace("%", "%%").replace("$", "$$")


def program_command(config: HostConfig, program: Program) -> str:
    """The program's command line, its relative executable under ``<root>/current``, each word as systemd
    reads it back (``_escape`` then doubles ``%`` and ``$``)."""
    tokens = shlex.split(program.command)
    if not tokens[0].startswith("/"):
        tokens[0] = config.path_on_host("current", tokens[0])
    return " ".join(map(_word, tokens))


_PLAIN_WORD = re.compile(r"[A-Za-z0-9_@%+=:,./$-]+")


def _word(token: str) -> str:
    """One word of a unit's command line: bare when plain, else in double quotes, where systemd reads C
    escapes (so ``\\`` and ``\"``; a shell's single quotes would not keep a backslash); a lone ``;``
    would end the command."""
    if _PLAIN_WORD.fullmatch(token):
        return token
    if token == ";":
        return "\\;"
    return '"' + token.replace("\\", "\\\\").replace('"', '\\"') + '"'



def render_unit(config: HostConfig, program: Program, after: str | None, group: str) -> str:
    """The unit for one program: started from ``current``, as ``app_user``, restarted on failure."""
    current = config.path_on_host("current")
    return "\n".join([
        "# Written by bootstrap-host; run it again rather than editing this file.",
        "[Unit]",
        f"Description={program.name} of the buildout site in {_escape(config.root)}",
        f"After=network.target{' ' + after if after else ''}",
        f"ConditionPathExists={_escape(current)}",
        "",
        "[Service]",
        "Type=simple",
        f"User={config.app_user}",
        f"Group={group}",
        f"WorkingDirectory={_escape(current)}",
        f"ExecStart={_escape(program_command(config, program))}",
        "Restart=on-failure",
        "RestartSec=2",
        "TimeoutStopSec=30",
        "UMask=0027",
        f"SyslogIdentifier={site_slug(config)}-{program.name}",
        "",
        "[Install]",
        "WantedBy=multi-user.target",
        "",
    ])


def render_units(config: HostConfig, group: str) -> dict[str, str]:
    """Every program's unit, each after the one before it: ``{unit name: text}``."""
    units, previous = {}, None
    for program in config.programs:
        name = unit_name(config, program.name)
        units[name] = render_unit(config, program, previous, group)
        previous = name
    return units


def sudoers_path(config: HostConfig) -> str:
    # sudo skips files in sudoers.d whose name has a dot
    return f"{SUDOERS_DIR}/{site_slug(config).replace('.', '_')}"


def render_sudoers(config: HostConfig, units: list[str]) -> str:
    """Let the deploy user start, stop and restart these units, and nothing else."""
    allowed = ", ".join(f"{SYSTEMCTL} {verb} {unit}" for unit in units for verb in ("start", "stop", "restart"))
    return (f"# Written by bootstrap-host: {config.user} may start, stop and restart the units of "
            f"{config.root}, nothing else.\n{config.user} ALL=(root) NOPASSWD: {allowed}\n")


def _systemctl(verb: str, config: HostConfig, names: list[str]) -> str:
    steps = [commands.join("sudo", "-n", SYSTEMCTL, verb, unit_name(config, name)) for name in names]
    return commands.and_then(*steps) if steps else "true"


def start(config: HostConfig, names: list[str]) -> str:
    """Start ``names`` in the order given (each unit waits for the one before it)."""
    return _systemctl("start", config, names)


def stop(config: HostConfig, names: list[str], shutdown: bool = False) -> str:
    """Stop ``names`` in the order given; ``shutdown`` changes nothing (systemd stays)."""
    return _systemctl("stop", config, names)


def restart(config: HostConfig, name: str) -> str:
    """Restart one program."""
    return _systemctl("restart", config, [name])


def logs(config: HostConfig, name: str, lines: int) -> str:
    """The last ``lines`` lines of a program's unit, from the journal (``user`` is in systemd-journal)."""
    return commands.join("journalctl", "--no-pager", "-n", str(lines), "-u", unit_name(config, name))


def status(config: HostConfig) -> str:
    """Each unit and its state; non-zero exit when one is not active."""
    script = ('for unit; do printf "%s %s\\n" "$unit" "$(systemctl is-active "$unit")"; done; '
              'systemctl is-active --quiet "$@"')
    return commands.join("sh", "-c", script, "sh", *unit_names(config))


def program_states(config: HostConfig) -> str:
    """``NAME STATE PID`` for each program's unit: its ActiveState and MainPID."""
    script = ('slug=$1; shift; for name; do s=$(systemctl show -p ActiveState -p MainPID "$slug-$name.service" '
              '2>/dev/null); state=$(printf "%s\\n" "$s" | sed -n "s/^ActiveState=//p"); '
              'pid=$(printf "%s\\n" "$s" | sed -n "s/^MainPID=//p"); '
              'printf "%s %s %s\\n" "$name" "${state:-unknown}" "${pid:-0}"; done')
    return commands.join("sh", "-c", script, "sh", site_slug(config), *(p.name for p in config.programs))


def pid_of(config: HostConfig, name: str) -> str:
    """The main pid systemd gives ``name``'s unit (0 when it does not run)."""
    return commands.join("systemctl", "show", "-p", "MainPID", "--value", unit_name(config, name))
