"""The restore engine: a backup's filestorages and blobs put back in place, the live data kept aside.

The order keeps the site serving as long as it can and never loses the live data:
recover every filestorage into ``<Data.fs>.restoring`` and open it with ZODB, copy
the blobs into ``<blobstorage>.restoring`` (all while the site still runs), then
stop the services, move the live files aside to ``*.before-restore-<time>``, move
the restored ones in, start, health-check. A failed recover or check removes only
the ``.restoring`` copies: the live data and the services are untouched.

Standard library only, like ``backupengine``: the job on the host (``onhost/backupjob.py``)
runs it there, so a restore finishes whatever happens to the SSH session; ``invoke
restore`` runs it on this machine.
"""
from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone

from .. import commands
from .blobs import blob_directory
from .engine import zodb_check
from .inventory import Hooks, inventory, run, tail
from .lock import exclusive
from .repozo import BackupError, blob_restore_command, parse_date, pick, readable, Settings, swap_command

LATEST = "latest"  # `restore latest` is `restore` without a date (kept for scripts that name it)


def choose(settings: Settings, found, date: str | None, snapshot: bool) -> tuple[str, str | None]:
    """The main filestorage's backup and the blob copy that ``date`` (or now) picks (``only_blobs``:
    the blob copy alone)."""
    stamps = found.copies(snapshot) if settings.only_blobs else found.stamps(settings.main, snapshot)
    chosen = pick(stamps, date)
    where = settings.blob_location(snapshot) if settings.only_blobs else settings.repository(settings.main, snapshot)
    if chosen is None and not stamps:
        raise BackupError(f"no backups in {where}: nothing to restore")
    if chosen is None:
        raise BackupError(f"no backup at or before {date}: the oldest is from {readable(min(stamps))} (UTC); "
                          f"nothing changed")
    copy = None
    if settings.blobstorage:
        copies = found.copies(snapshot)
        copy = chosen if chosen in copies else pick(copies, date)
        if copy is None:
            raise BackupError(f"no blob copy at or before {readable(chosen)} in "
                              f"{settings.blob_location(snapshot)}: nothing changed")
    return chosen, copy


def question(settings: Settings, found, chosen: str, snapshot: bool) -> str:
    record = found.records.get(chosen, {})
    kind = "snapshot" if snapshot else record.get("kind", "backup")
    tag = f", release {record['release']}" if record.get("release") else ""
    places = ", ".join([s.live for s in (() if settings.only_blobs else settings.storages)]
                       + [live for _, live, *_ in settings.blob_sets()])
    return (f"Restore the {kind} of {readable(chosen)} UTC{tag} over {places}?\n"
            f"The live data is kept aside, not deleted. Type yes to go on: ")


def prepare(c, settings: Settings, found, date: str | None, copy: str | None, snapshot: bool, hooks: Hooks) -> None:
    """Recover and check every filestorage, copy the blobs: all into ``.restoring`` beside the live data.

    The blobs are copied while the filestorages are recovered and checked (the check reads the
    backup's blob copy, not the one being made): the slower of the two sets the time."""
    steps = [] if settings.only_blobs else ["recover with repozo and open with ZODB"]
    steps += [f"copy the blobs of {copy}"] if copy else []
    with hooks.step(", and ".join(steps)), ThreadPoolExecutor(max_workers=1) as pool:
        blobs = pool.submit(copy_blobs_back, c, settings, found, copy, snapshot) if copy else None
        try:
            recover_and_open(c, settings, found, date, copy, snapshot)
        finally:
            failed = blobs.exception() if blobs else None  # waits: nothing writes once this returns
        if failed:
            raise failed


def recover_and_open(c, settings: Settings, found, date: str | None, copy: str | None, snapshot: bool) -> None:
    """Every filestorage recovered into ``.restoring`` (repozo -R -w) and opened with ZODB."""
    for storage in (() if settings.only_blobs else settings.storages):
        restoring = f"{storage.live}.restoring"
        run(c, commands.make_directories(storage.live.rsplit("/", 1)[0], mode="0700"))
        blob_copy = blob_copy_of(settings, found, storage, copy, snapshot)
        with blob_directory(c, settings, blob_copy) as blobs:  # recovered and opened by one process
            result = zodb_check(c, settings, found, restoring, blobs, settings.repository(storage, snapshot), date)
        if result.exited == 3:
            raise BackupError(f"repozo could not recover {storage.name} ({tail(result)}); "
                              f"the live data is untouched")
        if result.exited:
            raise BackupError(f"the recovered {storage.name} does not open with ZODB ({tail(result)}); "
                              f"the live data is untouched")


def copy_blobs_back(c, settings: Settings, found, copy: str, snapshot: bool) -> None:
    """Every blobstorage's copy of ``copy`` into ``<blobstorage>.restoring``."""
    rsync = found.data["rsync"] and settings.use_rsync
    for name, live, *_ in settings.blob_sets():
        there = (found.data["blobstorage"] if name == "main" else found.data["blobs"][name]["blobstorage"])["exists"]
        result = run(c, blob_restore_command(found.blob_source(settings, copy, snapshot, name), f"{live}.restoring",
                                             rsync, settings.rsync_options, live if there else None), warn=True)
        if result.exited:
            raise BackupError(f"copying the blobs of {copy} back failed ({tail(result)}); the live data is untouched")


def blob_copy_of(settings: Settings, found, storage, copy: str | None, snapshot: bool) -> str | None:
    """The blob copy of ``storage`` that belongs to the backup ``copy``; None without blobs."""
    if not copy or not settings.blob_of(storage):
        return None
    return found.blob_source(settings, copy, snapshot, "main" if storage is settings.main else storage.name)


def discard(c, settings: Settings) -> None:
    """Remove the ``.restoring`` copies (never the live data)."""
    paths = [f"{s.live}.restoring{end}" for s in settings.storages for end in ("", ".index", ".part")]
    run(c, commands.remove(*paths, *(f"{live}.restoring" for _, live, *_ in settings.blob_sets())))


def restore_backup(c, settings: Settings, hooks: Hooks, *, date: str | None = None,
                   snapshot: bool = False, force_unlock: bool = False) -> dict:
    """Restore the backup ``date`` picks (the newest for None or ``latest``); what was restored."""
    date = None if date in (None, "", LATEST) else parse_date(date)
    found = inventory(c, settings)
    if not found.data["repozo"]["exists"] and not settings.only_blobs:
        raise BackupError(f"no repozo at {settings.repozo}")
    chosen, copy = choose(settings, found, date, snapshot)
    if not hooks.confirm(question(settings, found, chosen, snapshot)):
        raise BackupError("restore cancelled: nothing changed")
    if settings.dry:
        hooks.say(f"[dry] would restore {chosen}")
        return {"stamp": chosen}
    with exclusive(c, settings, "restore", hooks.show, force_unlock):
        found = inventory(c, settings)  # again: the lock may have undone a backup cut short
        confirmed, (chosen, copy) = chosen, choose(settings, found, date, snapshot)
        if chosen != confirmed:
            hooks.say(f"the backup of {readable(confirmed)} was incomplete and is gone: restoring {readable(chosen)}")
        return _locked_restore(c, settings, hooks, found, date, chosen, copy, snapshot)


def _locked_restore(c, settings: Settings, hooks: Hooks, found, date, chosen: str, copy: str | None,
                    snapshot: bool) -> dict:
    started = time.monotonic()
    try:
        prepare(c, settings, found, date or chosen, copy, snapshot, hooks)
    except BaseException:
        discard(c, settings)
        raise
    suffix = ".before-restore-" + datetime.now(timezone.utc).strftime("%Y-%m-%d-%H-%M-%S.%f")
    pairs = [pair for s in (() if settings.only_blobs else settings.storages) for pair in (
        (f"{s.live}.restoring", s.live), (f"{s.live}.restoring.index", f"{s.live}.index"),
        (f"{s.live}.restoring.tmp", f"{s.live}.tmp"))]
    pairs += [(f"{live}.restoring", live) for _, live, *_ in settings.blob_sets()]
    with hooks.step("stop, swap the data, start"):
        try:  # until the swap is done, a failure leaves the live data as it was and no .restoring copy
            hooks.stop()
            busy = [s.live for s in settings.storages
                    if inventory(c, settings).data["storages"][s.name]["live"]["locked"]]
            if busy:
                hooks.start()
                raise BackupError(f"{', '.join(busy)} is in use by a running process: stop the site first; "
                                  f"nothing changed")
            run(c, swap_command(pairs, suffix))
        except BaseException:
            discard(c, settings)
            raise
        failed = hooks.start()
    record = {"stamp": chosen, "blob_copy": copy, "snapshot": snapshot, "kept_aside": f"*{suffix}",
              "release": found.records.get(chosen, {}).get("release"), "seconds": round(time.monotonic() - started, 1)}
    hooks.log("restore", record)
    if failed:
        raise BackupError(f"restored {chosen}, but the site is not healthy: {failed}. "
                          f"The data from before is kept as *{suffix} beside the live data")
    hooks.say(f"restored {readable(chosen)} UTC; the data from before is kept as *{suffix} beside it")
    return record
