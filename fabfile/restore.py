"""Restores: a backup's filestorages and blobs put back in place, the live data kept aside.

The order keeps the site serving as long as it can and never loses the live data:
recover every filestorage into ``<Data.fs>.restoring`` and open it with ZODB, copy
the blobs into ``<blobstorage>.restoring`` (all while the site still runs), then
stop the services, move the live files aside to ``*.before-restore-<time>``, move
the restored ones in, start, health-check. A failed recover or check removes only
the ``.restoring`` copies: the live data and the services are untouched.
"""
from __future__ import annotations

import sys
import time
from contextlib import contextmanager
from datetime import datetime, timezone

from fabric import task
from invoke import Exit

from . import commands, front, output, services
from .backup import Hooks, exclusive, inventory, run, site_hooks, site_settings, tail, zodb_check
from .backupengine import blob_directory
from .repozo import (BackupError, Settings, blob_restore_command, parse_date, pick, readable, recover_command,
                     swap_command)
from .site import Site, open_site

LATEST = "latest"  # invoke has no optional positional arguments: `restore latest` is `restore` without a date


def choose(settings: Settings, found, date: str | None, snapshot: bool) -> tuple[str, str | None]:
    """The main filestorage's backup and the blob copy that ``date`` (or now) picks."""
    stamps = found.stamps(settings.main, snapshot)
    chosen = pick(stamps, date)
    where = settings.repository(settings.main, snapshot)
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
    places = ", ".join([s.live for s in settings.storages] + ([settings.blobstorage] if settings.blobstorage else []))
    return (f"Restore the {kind} of {readable(chosen)} UTC{tag} over {places}?\n"
            f"The live data is kept aside, not deleted. Type yes to go on: ")


def prepare(c, settings: Settings, found, date: str | None, copy: str | None, snapshot: bool, hooks: Hooks) -> None:
    """Recover and check every filestorage, copy the blobs: all into ``.restoring`` beside the live data."""
    with hooks.step("recover with repozo and open with ZODB"):
        for storage in settings.storages:
            restoring = f"{storage.live}.restoring"
            run(c, commands.make_directories(storage.live.rsplit("/", 1)[0], mode="0700"))
            result = run(c, recover_command(settings, settings.repository(storage, snapshot), restoring, date),
                         warn=True)
            if result.exited:
                raise BackupError(f"repozo could not recover {storage.name} ({tail(result)}); "
                                  f"the live data is untouched")
            blob_copy = found.copy_path(settings, copy, snapshot) if copy and storage is settings.main else None
            with blob_directory(c, settings, blob_copy) as blobs:
                result = zodb_check(c, settings, found, restoring, blobs)
            if result.exited:
                raise BackupError(f"the recovered {storage.name} does not open with ZODB ({tail(result)}); "
                                  f"the live data is untouched")
    if copy:
        with hooks.step(f"copy the blobs of {copy}"):
            run(c, blob_restore_command(found.copy_path(settings, copy, snapshot),
                                        f"{settings.blobstorage}.restoring", found.data["rsync"]))


def discard(c, settings: Settings) -> None:
    """Remove the ``.restoring`` copies (never the live data)."""
    paths = [f"{s.live}.restoring{end}" for s in settings.storages for end in ("", ".index", ".part")]
    run(c, commands.remove(*paths, *((f"{settings.blobstorage}.restoring",) if settings.blobstorage else ())))


def restore_backup(c, settings: Settings, hooks: Hooks, *, date: str | None = None,
                   snapshot: bool = False) -> dict:
    """Restore the backup ``date`` picks (the newest for None or ``latest``); what was restored."""
    date = None if date in (None, "", LATEST) else parse_date(date)
    found = inventory(c, settings)
    if not found.data["repozo"]["exists"]:
        raise BackupError(f"no repozo at {settings.repozo}")
    chosen, copy = choose(settings, found, date, snapshot)
    if not hooks.confirm(question(settings, found, chosen, snapshot)):
        raise BackupError("restore cancelled: nothing changed")
    if settings.dry:
        hooks.say(f"[dry] would restore {chosen}")
        return {"stamp": chosen}
    with exclusive(c, settings, "restore"):
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
    pairs = [pair for s in settings.storages for pair in (
        (f"{s.live}.restoring", s.live), (f"{s.live}.restoring.index", f"{s.live}.index"),
        (f"{s.live}.restoring.tmp", f"{s.live}.tmp"))]
    if settings.blobstorage:
        pairs.append((f"{settings.blobstorage}.restoring", settings.blobstorage))
    with hooks.step("stop, swap the data, start"):
        hooks.stop()
        busy = [s.live for s in settings.storages
                if inventory(c, settings).data["storages"][s.name]["live"]["locked"]]
        if busy:
            discard(c, settings)
            hooks.start()
            raise BackupError(f"{', '.join(busy)} is in use by a running process: stop the site first; "
                              f"nothing changed")
        run(c, swap_command(pairs, suffix))
        failed = hooks.start()
    record = {"stamp": chosen, "blob_copy": copy, "snapshot": snapshot, "kept_aside": f"*{suffix}",
              "release": found.records.get(chosen, {}).get("release"), "seconds": round(time.monotonic() - started, 1)}
    hooks.log("restore", record)
    if failed:
        raise BackupError(f"restored {chosen}, but the site is not healthy: {failed}. "
                          f"The data from before is kept as *{suffix} beside the live data")
    hooks.say(f"restored {readable(chosen)} UTC; the data from before is kept as *{suffix} beside it")
    return record


def ask(question_text: str) -> bool:
    """Ask on the terminal; anything but ``yes`` (or no terminal at all) is no."""
    try:
        return input(question_text).strip().lower() == "yes"
    except EOFError:
        sys.stdout.write("\n")
        return False


# -- on a host -------------------------------------------------------------

def site_restore_hooks(site: Site, confirm) -> Hooks:
    """Hooks that stop the site behind the maintenance page and start it again (the page goes off
    once it is healthy; ``with_maintenance_page`` takes it off whatever happens)."""
    hooks = site_hooks(site)
    hooks.confirm = confirm

    def stop() -> None:
        front.set_maintenance(site, True)
        services.stop_programs(site)

    def start() -> dict:
        services.start_programs(site)
        failed = services.check_health(site)
        if not failed:
            front.set_maintenance(site, False)
        return failed

    hooks.stop, hooks.start = stop, start
    return hooks


@contextmanager
def with_maintenance_page(site: Site):
    """Whatever a data swap does, the maintenance page is off after it."""
    try:
        yield
    finally:
        if site.config.front and not site.dry:
            front.set_maintenance(site, False)


def restore_for_rollback(site: Site, backup_record_or_release_id) -> dict:
    """``rollback --with-data``: put back the newest backup tagged with that release (or the record
    ``backup_before_switch`` returned), and leave the programs stopped for the switch that follows."""
    settings = site_settings(site, None)
    found = inventory(site.connection, settings)
    wanted = backup_record_or_release_id
    if isinstance(wanted, dict):
        stamp = wanted["stamp"]
    else:
        tagged = [s for s, r in found.records.items() if r.get("release") == wanted and r.get("verified")
                  and r.get("kind") != "snapshot"]
        if not tagged:
            raise Exit(f"no verified backup tagged with release {wanted} (see: fab -H {site.config.name} backups)", 1)
        stamp = max(tagged)
    hooks = site_restore_hooks(site, lambda text: True)
    stopped = []
    hooks.stop = lambda: (services.stop_programs(site), stopped.append(True))
    hooks.start = lambda: {}
    try:
        with output.step(f"restore the data of {stamp}"):
            return restore_backup(site.connection, settings, hooks, date=stamp)
    except BaseException as error:
        if stopped:  # the data is as it was: serve it again before giving up
            services.start_programs(site)
        if isinstance(error, BackupError):
            raise Exit(f"rollback --with-data: {error}", 1) from None
        raise


@task(positional=["date"],
      help={"date": "the UTC time to restore, yyyy-mm-dd[-hh[-mm[-ss]]], or latest",
            "snapshot": "restore from the snapshots", "no_prompt": "do not ask for yes first"})
def restore(c, date=None, snapshot=False, no_prompt=False):
    """Restore a backup on the host, stopping and starting the services."""
    site = open_site(c)
    settings = site_settings(site, None)
    hooks = site_restore_hooks(site, (lambda text: True) if no_prompt else ask)
    try:
        with with_maintenance_page(site):
            restore_backup(site.connection, settings, hooks, date=date, snapshot=snapshot)
    except BackupError as error:
        raise Exit(str(error), 1)
