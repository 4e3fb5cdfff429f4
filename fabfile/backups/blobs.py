"""Blob backups beside repozo: copies with hard links to the previous one, or archives, made once repozo
has fixed where its backup ends, and checked. Standard library only (shipped to the host)."""
from __future__ import annotations

import shlex
from contextlib import contextmanager

from .. import commands
from .inventory import Hooks, Inventory, run, tail
from .repozo import (BackupError, Settings, blob_archive_command, blob_copy_command, blob_copy_into,
                     unpack_archive_command)


ARCHIVES = {"tar": ".tar", "tar.gz": ".tar.gz"}  # [backup] blob_archive: the suffix of each backup's archive


def is_archive(path: str | list[str] | None) -> bool:
    """A blob archive (or a chain of them: a full one and its deltas), not a copied directory."""
    return isinstance(path, list) or (bool(path) and path.endswith(tuple(ARCHIVES.values())))


@contextmanager
def blob_directory(c, settings: Settings, copy: str | list[str] | None):
    """A directory holding the blobs of ``copy``: the copy itself, or an archive unpacked into the
    scratch space for as long as the caller needs it ("" without blobs)."""
    if not is_archive(copy):
        yield copy or ""
        return
    newest = copy[-1] if isinstance(copy, list) else copy
    unpacked = f"{settings.work}/{newest.rsplit('/', 1)[-1]}.unpacked"
    run(c, unpack_archive_command(copy, unpacked))
    try:
        yield unpacked
    finally:
        run(c, commands.remove(unpacked))


NOT_BACKED_UP = 75  # exit of a blob copy whose filestorage repozo did not back up: none was made


def once_repozo_fixed_its_end(repository: str, indexes: int, done: str) -> str:
    """A shell test that waits until repozo has fixed where its backup of the filestorage ends (it then
    writes its ``.index``, one more than ``indexes``), or until ``done``; exits NOT_BACKED_UP when repozo
    wrote no backup. Every blob of a transaction before that end is in the blobstorage by then (ZODB
    puts a blob in place before the transaction commits): a copy started after it holds them all."""
    count = f'"$(ls -- {shlex.quote(repository)} 2>/dev/null | grep -c "\\.index$")"'
    return (f"i=0; until [ -e {shlex.quote(done)} ] || [ {count} -gt {indexes} ] || [ $i -ge 4320000 ]; "
            f"do sleep 0.02; i=$((i + 1)); done; [ {count} -gt {indexes} ] || exit {NOT_BACKED_UP}")


def copy_blobs_aside(c, settings: Settings, before: Inventory, snapshot: bool, done: str) -> dict[str, str]:
    """Every blobstorage copied (hard links to its last copy) into ``<location>/<now>.partial`` as soon
    as repozo has fixed the end of its filestorage's backup: {blob set: that path}, without the sets
    whose filestorage repozo did not back up. A copy cut short is a ``.partial``, never a backup."""
    aside = {}
    storages = {("main" if storage is settings.main else storage.name): storage for storage in settings.storages}
    for name, live, backups, snapshots in settings.blob_sets():
        location = snapshots if snapshot else backups
        previous = max((s for s, info in before.copies(snapshot, name).items() if not info.get("archive")),
                       default=None)
        partial = f"{location}/{before.data['now']}.partial"
        storage = storages[name]
        indexes = sum(1 for n in before.files(storage, snapshot) if n.endswith(".index"))
        result = run(c, commands.and_then(
            once_repozo_fixed_its_end(settings.repository(storage, snapshot), indexes, done),
            blob_copy_into(live, partial, f"{location}/{previous}" if previous else None,
                           before.data["rsync"] and settings.use_rsync, settings.rsync_options,
                           settings.link_first_copy)), warn=True)
        if result.exited == NOT_BACKED_UP:
            continue
        if result.exited:
            raise BackupError(f"copying the blobstorage {live} failed: {tail(result)}; nothing of this backup is kept")
        aside[name] = partial
    return aside


def copy_blobs(c, settings: Settings, written: Inventory, name: str, live: str, location: str, stamp: str,
               snapshot: bool, kind: str, hooks: Hooks) -> str | list[str]:
    """One blobstorage copied (hard links to the previous copy) or archived as the backup ``stamp``; for a
    delta archive (incremental_blobs, an incremental backup), the chain of archives it completes."""
    label = "blobs" if name == "main" else f"blobs of {name}"
    if settings.blob_archive:
        base = None
        if settings.incremental_blobs and kind == "incremental":
            previous = max(written.copies(snapshot, name), default=None)
            if previous and written.copies(snapshot, name)[previous].get("snar"):
                base = previous
        copy = f"{location}/{stamp}{'.delta' if base else ''}{ARCHIVES[settings.blob_archive]}"
        snar = f"{location}/{stamp}.snar" if settings.incremental_blobs else None
        with hooks.step(f"{label} ({settings.blob_archive} archive{', changes since ' + base if base else ''})"):
            result = run(c, blob_archive_command(live, copy, snar, f"{location}/{base}.snar" if base else None),
                         warn=True)
        if base and not result.exited:
            chain = written.blob_source(settings, base, snapshot, name)
            return [*([chain] if isinstance(chain, str) else chain), copy]
    else:
        copy = f"{location}/{stamp}"
        previous = max((s for s, info in written.copies(snapshot, name).items() if not info.get("archive")),
                       default=None)
        with hooks.step(label + (f" (unchanged ones linked to {previous})" if previous else "")):
            result = run(c, blob_copy_command(live, copy, f"{location}/{previous}" if previous else None,
                                              written.data["rsync"] and settings.use_rsync, settings.rsync_options,
                                              settings.link_first_copy), warn=True)
    if result.exited:
        raise BackupError(f"copying the blobstorage {live} failed: {tail(result)}; nothing of this backup is kept")
    return copy


def verify_blobs(c, blob_copies: dict[str, str]) -> tuple[list[str], list[str]]:
    """``only_blobs``: every copy holds as many files as its blobstorage did (an archive: its listing)."""
    checks, problems = [], []
    for name, copy in blob_copies.items():
        copy = copy[-1] if isinstance(copy, list) else copy
        listing = commands.join("tar", "-tf", copy) if is_archive(copy) else commands.join("find", copy, "-type", "f")
        result = run(c, listing, warn=True)
        (problems if result.exited else checks).append(
            f"blobs of {name}: " + (tail(result) if result.exited else f"{len(result.stdout.splitlines())} entries "
                                                                        f"readable"))
    return checks, problems
