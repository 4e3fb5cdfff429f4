"""Commands in the site: ``run -- CMD``, ``instance-run SCRIPT``, ``pack``.

Each runs in ``<root>/current`` with the site's environment (``<root>/current/bin`` and
``<root>/venv/bin`` first on ``PATH``), its output streamed as it comes, and ``fab``
exits with the command's exit code. The arguments after ``--`` are taken from the
command line as they were given (Invoke joins them with spaces, which loses their
quoting) and each is quoted once: no argument can start another command.

They run as the deploy login (``user``): the sudo rules bootstrap-host writes let it
run supervisor (and ``mkdir`` in ``var/``) as ``app_user`` and nothing else, on purpose. Where ``app_user``
differs, the task says so; ``pack`` needs no access to the data (the ZEO server packs).
"""
from __future__ import annotations

import re
import shlex
import sys

from invoke import Exit

from .. import commands, onhost
from ..config.hostconfig import HostConfig, Program
from ..remote.jobs import LineRedacted
from ..remote.site import Site
from . import schedule

ZOPE_MARKERS = ("plone.recipe.zope2instance", "Zope2.Startup", "Zope2")


def remainder_tokens(argv: list[str]) -> list[str]:
    """The arguments after the first ``--``, as the shell gave them to us."""
    return argv[argv.index("--") + 1:] if "--" in argv else []


def in_site(config: HostConfig, command: str) -> str:
    """``command`` (a rendered command) run in ``<root>/current`` with the site's bin directories first."""
    path = f"{config.path_on_host('current', 'bin')}:{config.path_on_host('venv', 'bin')}"
    return commands.and_then(commands.join("cd", config.path_on_host("current")),
                             f'export PATH={shlex.quote(path)}:"$PATH"', command)


def run_in_site(config: HostConfig, tokens: list[str]) -> str:
    """``tokens`` as one command in the site, each quoted."""
    return in_site(config, commands.join(*tokens))


def then_remove(command: str, path: str) -> str:
    """``command``, then ``path`` removed whatever it did; its exit code kept."""
    return f"( {command} ); rc=$?; {commands.join('rm', '-f', '--', path)}; exit $rc"


def instance_program(config: HostConfig, name: str | None) -> Program:
    """The program ``name``, or the first whose name starts with ``instance``."""
    if name:
        found = next((p for p in config.programs if p.name == name), None)
        if found is None:
            raise Exit(f"no program {name!r} in {config.path} ([services] programs: "
                       f"{' '.join(p.name for p in config.programs)})", 2)
        return found
    found = next((p for p in config.programs if p.name.startswith("instance")), None)
    if found is None:
        raise Exit(f"no program whose name starts with 'instance' in {config.path}: name one with --program", 2)
    return found


def program_script(program: Program) -> str:
    """The program's executable, relative to the release (``bin/instance1``)."""
    return shlex.split(program.command)[0]


def inspect_script(config: HostConfig, script: str) -> str:
    """Read-only: the script's first line, then ``zope`` when it is a Zope instance script."""
    markers = [token for marker in ZOPE_MARKERS for token in ("-e", marker)]
    return commands.and_then(
        commands.join("cd", config.path_on_host("current")), commands.join("head", "-n", "1", script),
        f"{{ {commands.join('grep', '-q', '-F', *markers, script)} && echo zope || echo python; }}")


def interpreter(first_line: str) -> list[str]:
    """The interpreter a script's ``#!`` line names, as tokens."""
    if not first_line.startswith("#!"):
        raise ValueError(f"not a script with a #! line: {first_line[:60]!r}")
    return shlex.split(first_line[2:].strip())


def instance_run_command(config: HostConfig, script: str, kind: str, first_line: str,
                         remote: str, args: list[str]) -> str:
    """Run the uploaded ``remote`` script: ``bin/instance run`` (Zope), or the script's own Python with
    its eggs (``onhost/siterun``); the uploaded file removed afterwards."""
    if kind == "zope":
        tokens = [script, "run", remote, *args]
    else:
        tokens = [*interpreter(first_line), "-c", onhost.source("siterun"), script, remote, *args]
    return then_remove(run_in_site(config, tokens), remote)


def pack_command(config: HostConfig, days: int) -> str:
    """``[backup] zeopack`` (as the scheduled backup runs it) with ``-d days``, in the site."""
    return run_in_site(config, [*schedule.job_settings(config)["zeopack"], "-d", str(days)])


def stream(site: Site, command: str) -> int:
    """Run ``command`` on the host, its output shown line by line as it comes, secrets redacted (as a hook's);
    its exit code."""
    if site.dry:
        print(f"[dry] {site.config.redact(command)}")
        return 0
    site.commands_run += 1
    out, err = LineRedacted(site.config), LineRedacted(site.config, errors=True)
    try:
        result = site.connection.run(command, hide=False, warn=True, in_stream=False, dry=False, out_stream=out,
                                     err_stream=err)
    finally:
        out.flush()
        err.flush()
    return result.exited


def say_as_whom(site: Site) -> None:
    config = site.config
    if config.app_user != config.user:
        print(f"runs as {config.user}, not {config.app_user}: bootstrap-host's sudo rule lets {config.user} "
              f"run supervisor as {config.app_user}, nothing else", file=sys.stderr)


def pack_days(value, config: HostConfig) -> int:
    if value is None:
        return config.backup_pack_days
    # int() takes 7_0 and other scripts' digits: ASCII digits only, and a bound
    if not re.fullmatch(r"[0-9]{1,5}", str(value)) or int(value) > 36500:
        raise Exit(f"pack --days {value}: give a whole number of days, 0 to 36500 (digits 0-9)", 2)
    return int(value)
