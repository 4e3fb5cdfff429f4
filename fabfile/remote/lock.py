"""One deploy or rollback at a time: ``<root>/.lock``, taken by ``mkdir``, naming its holder.

While the lock is held, a keeper process runs on the host in the deploy's own SSH
session (``cat`` reading the session's input, its pid in ``.lock/pid``): when the
client dies (Ctrl-C twice, SIGKILL, a dropped connection) the session ends and so
does the keeper. A lock whose keeper is gone is stale: the next command says so and
takes it, after stopping a buildout the dead deploy left running. ``--force-unlock``
removes a lock whatever holds it.
"""
from __future__ import annotations

import shlex
from contextlib import contextmanager
from datetime import datetime, timezone

from invoke import Exit

from .. import commands, output
from .site import Facts, Site, who

KEEPER_WAIT = 20  # seconds for the keeper to take the lock

# Succeeds when the lock's keeper still runs (a zombie nobody reaps counts as gone).
_KEEPER_ALIVE = ("import sys\n"
                 "try:\n"
                 "    pid = open(sys.argv[1]).read().strip()\n"
                 "    state = open(f'/proc/{pid}/stat').read().rsplit(')', 1)[1].split()[0]\n"
                 "except (OSError, IndexError):\n"
                 "    sys.exit(1)\n"
                 "sys.exit(0 if state != 'Z' else 1)\n")


def keeper_alive(site: Site, lock_dir: str) -> str:
    return commands.python(site.config.python, _KEEPER_ALIVE, f"{lock_dir}/pid")


def stop_orphaned_builds(site: Site) -> str:
    """Stop every buildout a dead deploy left running (by their pid files), and forget them."""
    pattern = shlex.quote(site.path("releases")) + "/*/.deploy/buildout.pid"
    return (f"for f in {pattern}; do [ -f \"$f\" ] || continue; kill \"$(cat \"$f\")\" 2>/dev/null; "
            f"rm -f \"$f\"; done; true")


def _take(site: Site, lock_dir: str, holder: str):
    """Take the lock in a session of its own on our connection, whose process then keeps it:
    its pid is written before the holder, so a lock with a holder always names its keeper.
    The channel (to close when done), or None when someone holds the lock."""
    channel = site.connection.client.get_transport().open_session()
    channel.settimeout(KEEPER_WAIT)
    channel.exec_command(commands.and_then(
        commands.join("mkdir", lock_dir), f"echo $$ > {shlex.quote(lock_dir + '/pid')}",
        f"printf '%s\\n' {shlex.quote(holder)} > {shlex.quote(lock_dir + '/holder')}",
        "echo locked", "exec cat >/dev/null"))
    site.commands_run += 1
    try:
        answer = channel.makefile("r").readline().strip()
    except OSError:
        answer = ""
    if answer == "locked":
        return channel
    channel.close()
    return None


@contextmanager
def held(site: Site, facts: Facts, purpose: str, force_unlock: bool = False):
    """Hold the lock while the block runs; stop with the holder's details when a live one holds it."""
    lock_dir = site.path(".lock")
    if site.dry:
        yield
        return
    if facts.lock or force_unlock:
        alive = not site.run(keeper_alive(site, lock_dir), changes=False, warn=True).exited
        if force_unlock or (facts.lock and not alive):
            if facts.lock and not force_unlock:
                output.say(f"[yellow]the lock of {facts.lock.strip()} is stale (its deploy is gone): taking it[/]")
            site.run(commands.and_then(stop_orphaned_builds(site), commands.release_lock(lock_dir)))
    holder = f"{who()} since {datetime.now(timezone.utc).isoformat(timespec='seconds')} for {purpose}"
    if not facts.root_exists:
        site.run(commands.make_directories(site.path()))
    channel = _take(site, lock_dir, holder)
    if channel is None:
        current = site.run(commands.join("cat", f"{lock_dir}/holder"), changes=False, warn=True).stdout.strip()
        raise Exit(f"{site.config.label} is locked by {current or 'someone'} "
                   f"(remove a stale lock with --force-unlock)", 1) from None
    try:
        yield
    finally:
        site.run(commands.release_lock(lock_dir))
        channel.close()
