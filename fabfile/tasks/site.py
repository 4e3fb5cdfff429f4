"""``run``, ``instance-run``, ``pack``: commands in the site, on the host.

Each runs in ``<root>/current`` with the site's environment and exits with the command's exit code
(``data/sitecommands.py`` says how each is built and quoted).
"""
from __future__ import annotations

import sys
from pathlib import Path

from fabric import task
from invoke import Exit



# Each task ends with Exit(code): besides passing the code on, it keeps Fabric from running the
# remainder after ``--`` once more on the host as a shell command of its own (``fab -H x -- CMD``).

@task(name="run")
def run_command(c):
    """Run a command in the site: fab -H NAME run -- CMD [ARGS] (quoted; exits with its code)."""
    from ..data.sitecommands import remainder_tokens, run_in_site, say_as_whom, stream
    from ..remote.site import open_site
    tokens = remainder_tokens(sys.argv)
    if not tokens:
        raise Exit("give the command after --: fab -H NAME run -- CMD [ARGS...]", 2)
    site = open_site(c)
    say_as_whom(site)
    raise Exit(code=stream(site, run_in_site(site.config, tokens)))


@task(name="instance-run", help={"script": "a local Python script, uploaded and run in the site",
                                 "program": "the instance program (default: the first named instance*)"})
def instance_run(c, script, program=None):
    """Run a local Python script in the site with bin/instance run (Zope), or the instance's Python."""
    from .. import commands
    from ..data.sitecommands import (inspect_script, instance_program, instance_run_command, program_script,
                                     remainder_tokens, say_as_whom, stream)
    from ..remote.site import open_site
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
    say_as_whom(site)
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
    from .. import output
    from ..data.sitecommands import pack_command, pack_days, stream
    from ..remote.events import log_event
    from ..remote.site import open_site
    site = open_site(c)
    keep = pack_days(days, site.config)
    code = stream(site, pack_command(site.config, keep))
    if not site.dry:
        log_event(site, "pack", days=keep, exit=code)
    if code:
        raise Exit(f"pack failed (exit {code})", code)
    output.say(f"packed the storage of {site.config.name}, keeping {keep} days of history")
