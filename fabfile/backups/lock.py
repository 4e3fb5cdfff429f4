"""The backup lock: one backup or restore at a time per site, a holder that died set aside, and what a
backup that did not end left undone. Standard library only (shipped to the host)."""
from __future__ import annotations

import json
import shlex
import time
from collections.abc import Callable
from contextlib import contextmanager
from datetime import datetime, timezone

from .. import commands
from .inventory import DISK_FULL, Inventory, explained, inventory, posix_parent, run, tail, who
from .repozo import BackupError, Settings, truncate_command


def state_dir(settings: Settings) -> str:
    """Where the lock and the pending note live: beside the records (the site's, for a zip or an
    alternative restore)."""
    return settings.state or posix_parent(settings.records)


def lock_path(settings: Settings) -> str:
    return f"{state_dir(settings)}/.lock"


def pending_path(settings: Settings) -> str:
    """What was there before the backup that runs, so that one killed half-way can be undone."""
    return f"{state_dir(settings)}/.pending.json"


def _take(c, lock_dir: str, holder: str, owner: int | None):
    """mkdir the lock and name its holder (and process); exit 3 when someone holds it, 4 when the
    holder could not be written (the lock is then removed again, never left empty)."""
    named = [f"printf '%s\\n' {shlex.quote(holder)} > {shlex.quote(lock_dir + '/holder')}"]
    named += [f"echo {int(owner)} > {shlex.quote(lock_dir + '/pid')}"] if owner else []
    return run(c, f"{commands.join('mkdir', lock_dir)} || exit 3; "
                  f"{{ {' && '.join(named)}; }} || {{ {commands.release_lock(lock_dir)}; exit 4; }}", warn=True)


@contextmanager
def exclusive(c, settings: Settings, purpose: str, say: Callable[[str], None] = print, force_unlock: bool = False):
    """One backup or restore of a site at a time (cron, a deploy's backup, an operator): ``<backups>/.lock``.

    A lock taken by a process on the machine that holds the data (``c.owner_pid``: the job on the
    host, ``invoke backup``) names that process; a lock whose process is gone is stale: said and taken.
    """
    lock_dir = lock_path(settings)
    owner = getattr(c, "owner_pid", None)
    holder = f"{who()} since {datetime.now(timezone.utc).isoformat(timespec='seconds')} for {purpose}"
    made = run(c, commands.make_directories(state_dir(settings), mode="0700"), warn=True)
    if made.exited:
        raise BackupError(explained(f"cannot make {state_dir(settings)}: {tail(made)}"))
    if force_unlock:
        run(c, commands.release_lock(lock_dir))
    taken = _take(c, lock_dir, holder, owner)
    deadline, said = time.monotonic() + LOCK_WAIT, False
    while taken.exited == 3 and holder_state(c, settings, lock_dir) == ALIVE and time.monotonic() < deadline:
        if not said:
            current = run(c, commands.join("cat", f"{lock_dir}/holder"), warn=True).stdout.strip()
            say(f"waiting for {current or 'another backup or restore'} to finish (at most {LOCK_WAIT // 60} min)")
            said = True
        time.sleep(1)
        taken = _take(c, lock_dir, holder, owner)
    if taken.exited == 4 or (taken.exited and any(words in taken.stderr for words in DISK_FULL)):
        df = run(c, commands.join("df", "-P", posix_parent(lock_dir)), warn=True).stdout.split()
        free = f"{df[-3]} kB free" if len(df) > 3 else "no room"
        raise BackupError(f"disk full? cannot write the lock {lock_dir} ({free}): {tail(taken)}")
    if taken.exited and holder_state(c, settings, lock_dir) == GONE:
        current = run(c, commands.join("cat", f"{lock_dir}/holder"), warn=True).stdout.strip()
        say(f"the lock of {current or 'a backup'} is stale (its process is gone): taking it")
        # the dead job led its own process group: stop what it left running (repozo, rsync) first
        run(c, f"kill -KILL -- -\"$(cat {shlex.quote(lock_dir + '/pid')})\" 2>/dev/null; "
               + commands.release_lock(lock_dir))
        taken = _take(c, lock_dir, holder, owner)
    if taken.exited:
        current = run(c, commands.join("cat", f"{lock_dir}/holder"), warn=True).stdout.strip()
        raise BackupError(f"another backup or restore runs: {current or 'unknown'} "
                          f"(if none does: --force-unlock)")
    try:
        undo_pending(c, settings, say)
        yield
    finally:
        run(c, commands.release_lock(lock_dir))


def pending_state(settings: Settings, before: Inventory, snapshot: bool) -> dict:
    """What ``undo`` needs of the inventory before a backup (file names and sizes, copies, records)."""
    chain, key = ("snapshots" if snapshot else "repository"), ("blob_snapshots" if snapshot else "blob_backups")
    return {"snapshot": snapshot, "before": {
        "storages": {s.name: {chain: {"files": before.files(s, snapshot)}} for s in settings.storages},
        key: {"copies": {name: {} for name in before.data[key]["copies"]}},
        "blobs": {name: {key: {"copies": {n: {} for n in before.blob_data(snapshot, name)["copies"]}}}
                  for name, *_ in settings.blob_sets()[1:]},
        "records": {name: {} for name in before.records}}}


def digests(c, settings: Settings, files: dict[str, list[str]], archives: list[str], snapshot: bool) -> dict[str, str]:
    """sha256 of every file the backup wrote (repozo's growing ``.dat`` files apart) and of its blob
    archive: ``backups`` checks them again later."""
    paths = [f"{settings.repository(s, snapshot)}/{name}" for s in settings.storages
             for name in files.get(s.name, []) if not name.endswith(".dat")]
    paths += archives
    if not paths:
        return {}
    listed = run(c, commands.join("sha256sum", "--", *paths)).stdout
    return {path: line.split(None, 1)[0] for path, line in zip(paths, listed.splitlines())}


LOCK_WAIT = 900  # seconds a backup or restore waits for one that runs


# Exit GONE when the lock's process is gone (or a zombie nobody reaps), ALIVE when it runs, UNKNOWN when
# the lock names no process (taken by a client over SSH: copy-data).
_HOLDER_STATE = ("import sys\n"
                 "try:\n"
                 "    pid = open(sys.argv[1] + '/pid').read().strip()\n"
                 "except OSError:\n"
                 "    sys.exit(2)\n"
                 "try:\n"
                 "    state = open(f'/proc/{pid}/stat').read().rsplit(')', 1)[1].split()[0]\n"
                 "except (OSError, IndexError):\n"
                 "    sys.exit(0)\n"
                 "sys.exit(0 if state == 'Z' else 1)\n")


def holder_state(c, settings: Settings, lock_dir: str) -> int:
    """GONE, ALIVE or UNKNOWN: the process that holds the lock, where the data is."""
    return run(c, commands.python(settings.python, _HOLDER_STATE, lock_dir), warn=True).exited


def undo_pending(c, settings: Settings, say: Callable[[str], None]) -> None:
    """A backup killed half-way (its job gone with the machine, SIGKILL) left ``.pending.json``:
    remove what it wrote, so that nothing of it is taken for a complete backup."""
    result = run(c, commands.join("cat", pending_path(settings)), warn=True)
    if result.exited or not result.stdout.strip():
        return
    pending = json.loads(result.stdout)
    undo(c, settings, Inventory(pending["before"]), pending["snapshot"])
    run(c, commands.remove(pending_path(settings)))
    say("a backup that was interrupted half-way left files: removed, the backups are as before it")


GONE, ALIVE, UNKNOWN = 0, 1, 2


def undo(c, settings: Settings, before: Inventory, snapshot: bool) -> None:
    """Remove what a failed run wrote and cut repozo's .dat files back, so the chain is as it was."""
    now = inventory(c, settings)
    doomed, cut = [], []
    for storage in settings.storages:
        repo = settings.repository(storage, snapshot)
        old, new = before.files(storage, snapshot), now.files(storage, snapshot)
        doomed += [f"{repo}/{name}" for name in new if name not in old]
        cut += [truncate_command(f"{repo}/{name}", size) for name, size in old.items()
                if name.endswith(".dat") and new.get(name, size) != size]
    for name, _, backups, snapshots in settings.blob_sets() or [("main", None, settings.blob_backups,
                                                                 settings.blob_snapshots)]:
        location, old = (snapshots if snapshot else backups), before.blob_data(snapshot, name)["copies"]
        doomed += [f"{location}/{info.get('name', n)}" for n, info in now.blob_data(snapshot, name)["copies"].items()
                   if n not in old]
    doomed += [f"{settings.records}/{n}.json" for n in now.records if n not in before.records]
    steps = cut + ([commands.remove(*doomed)] if doomed else [])
    if steps:
        run(c, commands.and_then(*steps))
