"""One deploy or rollback at a time: ``<root>/.lock``, taken by ``mkdir``, naming its holder."""
from __future__ import annotations

from contextlib import contextmanager
from datetime import datetime, timezone

from invoke import Exit, UnexpectedExit

from . import commands
from .site import Facts, Site, who


@contextmanager
def held(site: Site, facts: Facts, purpose: str, force_unlock: bool = False):
    """Hold the lock while the block runs; stop with the holder's details when it is taken."""
    lock_dir = site.path(".lock")
    if force_unlock and facts.lock:
        site.run(commands.release_lock(lock_dir))
    holder = f"{who()} since {datetime.now(timezone.utc).isoformat(timespec='seconds')} for {purpose}"
    try:
        site.run(commands.and_then(commands.make_directories(site.path()), commands.take_lock(lock_dir, holder)))
    except UnexpectedExit:
        current = site.run(commands.join("cat", f"{lock_dir}/holder"), changes=False, warn=True).stdout.strip()
        raise Exit(f"{site.config.name} is locked by {current or 'someone'} "
                   f"(remove a stale lock with --force-unlock)", 1) from None
    try:
        yield
    finally:
        site.run(commands.release_lock(lock_dir))
