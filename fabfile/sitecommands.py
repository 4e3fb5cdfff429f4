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

import shlex
import sys
from pathlib import Path

from fabric import task
from invoke import Exit

from . import commands, onhost, output, schedule
from .events import log_event
from .hostconfig import HostConfig, Program
from .site import Site, open_site

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
    """Run ``command`` on the host, its output shown as it comes; its exit code."""
    if site.dry:
        print(f"[dry] {site.config.redact(command)}")
        return 0
    site.commands_run += 1
    result = site.connection.run(command, hide=False, warn=True, in_stream=False, dry=False)
    return result.exited


def _as_whom(site: Site) -> None:
    config = site.config
    if config.app_user != config.user:
        print(f"runs as {config.user}, not {config.app_user}: bootstrap-host's sudo rule lets {config.user} "
              f"run supervisor as {config.app_user}, nothing else", file=sys.stderr)


def _days(value, config: HostConfig) -> int:
    if value is None:
        return config.backup_pack_days
    try:
        days = int(value)
    except (TypeError, ValueError):
        days = -1
    if days < 0:
        raise Exit(f"pack --days {value}: give a whole number of days, 0 or more", 2)
    return days


# Each task ends with Exit(code): besides passing the code on, it keeps Fabric from running the
# remainder after ``--`` once more on the host as a shell command of its own (``fab -H x -- CMD``).

@task(name="run")
def run_command(c):
    """Run a command in the site: fab -H NAME run -- CMD [ARGS] (quoted; exits with its code)."""
    tokens = remainder_tokens(sys.argv)
    if not tokens:
        raise Exit("give the command after --: fab -H NAME run -- CMD [ARGS...]", 2)
    site = open_site(c)
    _as_whom(site)
    raise Exit(code=stream(site, run_in_site(site.config, tokens)))


@task(name="instance-run", help={"script": "a local Python script, uploaded and run in the site",
                                 "program": "the instance program (default: the first named instance*)"})
def instance_run(c, script, program=None):
    """Run a local Python script in the site with bin/instance run (Zope), or the instance's Python."""
    local = Path(script)
    if not local.is_file():
        raise Exit(f"instance-run: no such file {script}", 2)
    args = remainder_tokens(sys.argv)
    site = open_site(c)
    config = site.config
    bin_script = program_script(instance_program(config, program))
    found = site.run(inspect_script(config, bin_script), changes=False, warn=True)
    lines = found.stdout.splitlines() if found and not found.exited else []
    if len(lines) < 2:
        raise Exit(f"cannot read {config.path_on_host('current', bin_script)} on {config.name} "
                   f"(is a release deployed?)", 1)
    first_line, kind = lines[0], lines[-1]
    if kind != "zope":
        print(f"{bin_script} is not a Zope instance script (no `run` command): running {local.name} "
              f"with its Python and eggs", file=sys.stderr)
    _as_whom(site)
    if site.dry:
        print(f"[dry] upload {local} and run it with {bin_script}")
        raise Exit(code=0)
    remote = site.run(commands.join("mktemp", "-p", config.path_on_host(), "--suffix", ".py",
                                    ".instance-run-XXXXXXXX")).stdout.strip()
    try:
        site.put(local, remote)
    except BaseException:
        site.run(commands.remove(remote), warn=True)
        raise
    raise Exit(code=stream(site, instance_run_command(config, bin_script, kind, first_line, remote, args)))


@task(help={"days": "days of history to keep (default: [backup] pack_days)"})
def pack(c, days=None):
    """Pack the ZEO storage now with [backup] zeopack, keeping --days N of history."""
    site = open_site(c)
    keep = _days(days, site.config)
    code = stream(site, pack_command(site.config, keep))
    if not site.dry:
        log_event(site, "pack", days=keep, exit=code)
    if code:
        raise Exit(f"pack failed (exit {code})", code)
    output.say(f"packed the storage of {site.config.name}, keeping {keep} days of history")
