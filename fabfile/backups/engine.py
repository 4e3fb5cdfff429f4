"""The backup engine: repozo for filestorages, copies or archives of the blobs, verified, kept.

Everything here runs through ``c.run`` and needs nothing but the standard library and
its sibling modules ``repozo``, ``retention``, ``commands`` and ``onhost`` (themselves
stdlib only): the same code serves ``invoke backup`` (an ``invoke.Context``), ``fab
backup`` (a Fabric ``Connection``) and the scheduled job on a host, which has no Fabric
and gets these files shipped beside its runner (``schedule.py`` says why).

A backup counts only when it is complete and verified: repozo or the blob copy
failing undoes what this run wrote (the .dat files cut back, new files removed);
a backup that does not verify stays, marked unverified, the caller exits non-zero
and the next backup is a full one.
"""
from __future__ import annotations

import json
import shlex
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext
from datetime import datetime, timezone

from .. import commands, onhost
from . import retention
from .blobs import blob_directory, copy_blobs, copy_blobs_aside, is_archive, verify_blobs
from .inventory import Hooks, Inventory, inventory, posix_parent, run, tail
from .lock import digests, exclusive, pending_path, pending_state, undo
from .repozo import BackupError, Settings, backup_command, data_files, readable, recover_command, stamp_of


def problems_before_backup(settings: Settings, found: Inventory, full: bool, snapshot: bool) -> list[str]:
    """Why a backup cannot start, in words an operator can act on."""
    problems = []
    for storage in settings.storages:
        state = found.data["storages"][storage.name]
        if not state["live"]["exists"]:
            problems.append(f"no filestorage at {storage.live}")
        if not state["snapshots" if snapshot else "repository"]["writable"]:
            problems.append(f"cannot write to {settings.repository(storage, snapshot)}")
    if settings.blobstorage and not found.data["blobstorage"]["exists"]:
        problems.append(f"no blobstorage at {settings.blobstorage}")
    problems += [f"no blobstorage at {live}" for name, live, *_ in settings.blob_sets()[1:]
                 if not found.data["blobs"][name]["blobstorage"]["exists"]]
    if settings.only_blobs:
        problems = [p for p in problems if not p.startswith(("no filestorage", "cannot write to"))]
        if not settings.blobstorage:
            problems.append("only_blobs = true, but there is no blobstorage to back up")
    if not found.data[("blob_snapshots" if snapshot else "blob_backups")]["writable"]:
        problems.append(f"cannot write to {settings.blob_location(snapshot)}")
    if not found.data["repozo"]["exists"] and not settings.only_blobs:
        problems.append(f"no repozo at {settings.repozo}")
    needed = sum(found.data["storages"][s.name]["live"]["size"] for s in settings.storages)
    full = full or snapshot or not found.stamps(settings.main, snapshot)
    if full and needed > found.data["free"]:
        problems.append(f"disk full: {found.data['free']} bytes free beside the backups, a full backup may need {needed}")
    return problems


def zodb_check(c, settings: Settings, found: Inventory, path: str, blob_dir: str, recover_from: str = "",
               date: str | None = None):
    """Open ``path`` with repozo's ZODB and load every object (and find every blob in ``blob_dir``);
    with ``recover_from``, recover it from that repository first (to ``date``), in the same process:
    exit 3 when the recover fails."""
    interpreter = shlex.split(found.data["repozo"]["python"] or settings.python)
    recover = (recover_from, *((date,) if date else ())) if recover_from else ()
    return run(c, commands.join(*interpreter, "-c", onhost.source("zodbcheck"), settings.repozo, path,
                                *((blob_dir or "", *recover) if blob_dir or recover else ())), warn=True)


REPOZO_DATA = (".fs", ".fsz", ".deltafs", ".deltafsz")


def delta_check_command(settings: Settings, found: Inventory, storage, snapshot: bool, new: list[str]) -> str:
    """Check the data files a backup added (not the whole chain again) against repozo's ``.dat``."""
    repository = settings.repository(storage, snapshot)
    dat = max(name for name in found.files(storage, snapshot) if name.endswith(".dat"))
    return commands.python(settings.python, onhost.source("deltacheck"), f"{repository}/{dat}",
                           *(name for name in new if name.endswith(REPOZO_DATA)))


def verify(c, settings: Settings, found: Inventory, stamp: str, kind: str, snapshot: bool,
           new: dict[str, list[str]], blob_copies: dict[str, str], hooks: Hooks,
           followed: dict[str, tuple[str, object]] | None = None) -> tuple[list[str], list[str]]:
    """Check every repository written: the files an incremental added, as ``repozo -V`` would (not the
    whole chain again); for full backups (or always) a recover with -w, which runs the same checks on
    the fly, into a file then opened with ZODB. ``followed``: the full backups already recovered (and
    checked) while repozo wrote them, {storage: (file, result)}."""
    checks, problems = [], []
    opens = settings.verify == "always" or (settings.verify == "full" and kind in ("full", "snapshot"))
    if not opens:
        for storage in settings.storages:
            if new.get(storage.name):
                result = run(c, delta_check_command(settings, found, storage, snapshot, new[storage.name]), warn=True)
                (problems if result.exited else checks).append(
                    f"{storage.name}: " + (tail(result) if result.exited else
                                           f"{', '.join(json.loads(result.stdout)['checked'])} as repozo read them"))
        return checks, problems
    followed = followed or {}
    with hooks.step("verify: open with ZODB what was recovered while repozo wrote it" if followed else
                    "verify: recover with repozo -w, open with ZODB"):
        for storage in settings.storages:
            if storage.name in followed:
                recovered, result = followed[storage.name]
                how = "recovered while written"
            else:
                recovered, how = f"{settings.work}/{stamp}-{storage.name}.fs", "recovered (repozo -R -w)"
                result = run(c, recover_command(settings, settings.repository(storage, snapshot), recovered, None),
                             warn=True)
            if not result.exited:
                with blob_directory(c, settings, blob_copies.get(storage.name)) as blobs:
                    result = zodb_check(c, settings, found, recovered, blobs)
            run(c, commands.remove(recovered, f"{recovered}.index", f"{recovered}.part"))
            if result.exited:
                problems.append(f"{storage.name} recovered from the backup does not open: {tail(result)}")
            else:
                opened = json.loads(result.stdout)
                checks.append(f"{storage.name} {how} and opened: {opened['objects']} objects, "
                              f"{opened['blobs']} blobs")
    return checks, problems


def follow_full_backups(c, settings: Settings, before: Inventory, snapshot: bool, stop: str) -> dict:
    """Each storage's full backup recovered while repozo writes it (``onhost/tailrecover.py``), in the
    order repozo backs them up: {storage: (recovered file, result)}."""
    followed = {}
    for storage in settings.storages:
        recovered = f"{settings.work}/following-{storage.name}.fs"
        known = [name for name in before.files(storage, snapshot) if name.endswith(".dat")]
        followed[storage.name] = (recovered, run(c, commands.python(
            settings.python, onhost.source("tailrecover"), settings.repository(storage, snapshot), recovered, stop,
            "gzip" if settings.gzip else "plain", *known), warn=True))
        if followed[storage.name][1].exited and run(c, commands.join("test", "-e", stop), warn=True).exited == 0:
            break  # repozo failed: the storages after it are not backed up
    return followed


def apply_retention(c, settings: Settings, snapshot: bool, hooks: Hooks) -> None:
    """Remove what ``keep`` no longer keeps in this chain, with the records of what went."""
    found = inventory(c, settings)
    repositories = {settings.repository(s, snapshot): list(found.files(s, snapshot)) for s in settings.storages}
    main = settings.repository(settings.main, snapshot)
    if settings.only_blobs:  # no repozo chain: a snapshot's blobs count as full backups, kept by number
        repositories = {main: [f"{stamp}.fs" for stamp in found.copies(snapshot)] if snapshot else []}
    now = datetime.now(timezone.utc)
    doomed = retention.plan(repositories, main, found.copies(snapshot), settings.keep,
                            0 if snapshot else settings.keep_blob_days, now)
    extra = {name: retention.blob_copies_to_remove(found.copies(snapshot, name), repositories.get(main, []),
                                                   settings.keep, 0 if snapshot else settings.keep_blob_days, now)
             for name, *_ in settings.blob_sets()[1:]}
    if not doomed and not any(extra.values()):
        return
    paths = [f"{repo}/{name}" for repo, names in doomed.files.items() if not settings.only_blobs for name in names]
    paths += [found.copy_path(settings, stamp, snapshot) for stamp in doomed.blob_copies]
    paths += [found.copy_path(settings, stamp, snapshot, name) for name, stamps in extra.items() for stamp in stamps]
    paths += [f"{posix_parent(path)}/{stamp_of(path.rsplit('/', 1)[-1])}.snar" for path in list(paths)
              if is_archive(path)]  # incremental_blobs: the record of what each archive holds
    gone = {stamp_of(n) for n in doomed.files.get(main, [])} | set(doomed.blob_copies)
    kept = set(data_files(set(repositories[main]) - set(doomed.files.get(main, []))))
    kept |= set(found.copies(snapshot)) - set(doomed.blob_copies)
    paths += [f"{settings.records}/{stamp}.json" for stamp, record in found.records.items()
              if stamp in gone and stamp not in kept and (record.get("kind") == "snapshot") == snapshot]
    run(c, commands.remove(*paths))
    hooks.say(f"retention (keep {settings.keep}): removed {len(paths)} files and copies older than "
              f"the oldest kept full backup")


def make_backup(c, settings: Settings, hooks: Hooks, *, full: bool = False, snapshot: bool = False,
                force_unlock: bool = False) -> dict | None:
    """Back up every filestorage (the main one last), then the blobs; verify; apply retention.

    The record of the backup, or None when nothing changed since the last one."""
    before = inventory(c, settings)
    problems = problems_before_backup(settings, before, full, snapshot)
    if problems:
        raise BackupError("cannot back up: " + "; ".join(problems))
    latest = {stamp: r for stamp, r in before.records.items() if (r.get("kind") == "snapshot") == snapshot}
    unverified = bool(latest) and not latest[max(latest)].get("verified")
    if unverified and not full:
        hooks.say("the last backup did not verify: this one is a full backup")
    if settings.dry:
        hooks.say(f"[dry] would back up {', '.join(s.live for s in settings.storages)} and {settings.blobstorage}")
        return None
    with exclusive(c, settings, "snapshot" if snapshot else "backup", hooks.show, force_unlock):
        return _locked_backup(c, settings, hooks, full or unverified, snapshot)


def _locked_backup(c, settings: Settings, hooks: Hooks, full: bool, snapshot: bool) -> dict | None:
    before = inventory(c, settings)  # again, now that no other backup can write
    if settings.pre_command:
        result = c.run(settings.pre_command, hide=True, warn=True, in_stream=False, dry=False)
        if result.exited:
            raise BackupError(f"pre_command failed (exit {result.exited}), no backup made: {tail(result)}")
    if before.latest_stamp() >= before.data["now"]:
        time.sleep(1.1)  # repozo names files by the second: never two backups in one
    started = time.monotonic()
    run(c, commands.make_directories(posix_parent(settings.records), mode="0700")
        + " && " + commands.make_directories(
            settings.records, settings.work, settings.blob_location(snapshot),
            *(settings.repository(s, snapshot) for s in settings.storages if not settings.only_blobs),
            *((snapshots if snapshot else backups) for _, _, backups, snapshots in settings.blob_sets()), mode="0700"))
    run(c, commands.write_file(pending_path(settings), json.dumps(pending_state(settings, before, snapshot))))
    try:
        record = _back_up(c, settings, hooks, before, full, snapshot)
    except BaseException:
        undo(c, settings, before, snapshot)
        run(c, commands.remove(pending_path(settings)))
        raise
    if record is None:
        run(c, commands.remove(pending_path(settings)))
    if record is None:
        return None
    record["seconds"] = round(time.monotonic() - started, 1)
    run(c, commands.and_then(
        commands.write_file(f"{settings.records}/{record['stamp']}.json", json.dumps(record, sort_keys=True)),
        commands.remove(pending_path(settings))))  # complete: it counts from now on
    hooks.log("backup", {key: record[key] for key in ("stamp", "kind", "release", "verified", "seconds")})
    if not record["verified"]:
        raise BackupError(f"backup {record['stamp']} did not verify: {'; '.join(record['problems'])}. "
                          f"It is marked unverified; the next backup will be a full one")
    apply_retention(c, settings, snapshot, hooks)
    if settings.post_command:
        result = c.run(settings.post_command, hide=True, warn=True, in_stream=False, dry=False)
        if result.exited:
            raise BackupError(f"backup {record['stamp']} is good, but post_command failed "
                              f"(exit {result.exited}): {tail(result)}")
    return record


def repozo_beside_blobs(c, settings: Settings, hooks: Hooks, before: Inventory, full: bool,
                        snapshot: bool) -> tuple[dict[str, str], dict]:
    """repozo on every filestorage, with beside it the blob copies (``.partial`` until named) and, for a
    full backup, its read-back: ({blob set: partial copy}, {storage: (recovered file, result)})."""
    # Blob copies (not archives: an incremental_blobs archive depends on the backup's kind) are made
    # while repozo runs, under a name of their own until repozo's files name the backup.
    early = not settings.only_blobs and not settings.blob_archive and bool(settings.blob_sets()) and (
        full or snapshot or any(state["live"]["size"] != state["repository"]["backed_up"]  # else repozo will
                                for state in before.data["storages"].values()))        # find nothing new
    kind_asked = "snapshot" if snapshot else "full" if full else "backup"
    label = f"repozo {kind_asked}" + (", and the blobs (unchanged ones linked to the last copy)" if early else "")
    # A full backup is read back (gunzipped, its md5 compared with repozo's) while repozo writes it.
    follow = (full or snapshot) and not settings.only_blobs and settings.verify in ("full", "always")
    stop, done = f"{settings.work}/.repozo-stopped", f"{settings.work}/.repozo-done"
    if follow or early:  # repozo's temporary file left by a run cut short would be taken for this one's
        run(c, commands.remove(stop, done, *(f"{settings.repository(s, snapshot)}/tmp.tmp" for s in settings.storages)))
    with hooks.step(label) if not settings.only_blobs else nullcontext(), ThreadPoolExecutor(max_workers=2) as pool:
        copying = pool.submit(copy_blobs_aside, c, settings, before, snapshot, done) if early else None
        following = pool.submit(follow_full_backups, c, settings, before, snapshot, stop) if follow else None
        try:
            for storage in (() if settings.only_blobs else settings.storages):
                result = run(c, backup_command(settings, storage, full=full, snapshot=snapshot), warn=True)
                if result.exited:
                    raise BackupError(f"repozo failed backing up {storage.live} (exit {result.exited}): "
                                      f"{tail(result)}; nothing of this backup is kept")
        except BaseException:
            if following:  # the followers stop waiting; what they recovered goes
                run(c, commands.join("touch", stop), warn=True)
                following.exception()
                run(c, commands.remove(*(f"{settings.work}/following-{s.name}.fs{end}" for s in settings.storages
                                         for end in ("", ".index"))), warn=True)
            raise
        finally:  # the blob copies waiting for a repozo that did nothing stop; each waits: nothing writes after
            if copying:
                run(c, commands.join("touch", done), warn=True)
            failed = [f.exception() for f in (copying, following) if f]
            if copying or following:
                run(c, commands.remove(stop, done), warn=True)
        if any(failed):
            raise next(f for f in failed if f)
    return (copying.result() if copying else {}), (following.result() if following else {})


def _back_up(c, settings: Settings, hooks: Hooks, before: Inventory, full: bool, snapshot: bool) -> dict | None:
    aside, followed = repozo_beside_blobs(c, settings, hooks, before, full, snapshot)
    written = inventory(c, settings)
    new = {s.name: sorted(set(written.files(s, snapshot)) - set(before.files(s, snapshot)))
           for s in settings.storages}
    stamps = {stamp: kind for s in settings.storages for stamp, kind in data_files(new[s.name]).items()}
    if settings.only_blobs:  # no repozo file names the moment: the blob copies take the time of now
        stamps = {written.data["now"]: "snapshot" if snapshot else "blobs"}
    if not stamps:
        if aside:
            run(c, commands.remove(*aside.values()))
        previous = max(before.stamps(settings.main, snapshot), default="never")
        hooks.say(f"no changes since the backup of {readable(previous) if previous != 'never' else previous}: "
                  f"nothing to back up")
        return None
    main_new = data_files(new[settings.main.name])
    stamp = max(main_new or stamps)
    kind = "snapshot" if snapshot else (main_new or stamps)[stamp]
    blob_copies = {name: posix_parent(partial) + "/" + stamp for name, partial in aside.items()}
    if aside:
        run(c, commands.and_then(*(commands.join("mv", "-T", aside[name], blob_copies[name]) for name in aside)))
    blob_copies |= {name: copy_blobs(c, settings, written, name, live, snapshots if snapshot else backups, stamp,
                                     snapshot, kind, hooks)
                    for name, live, backups, snapshots in settings.blob_sets() if name not in aside}
    archives = [copy[-1] if isinstance(copy, list) else copy for copy in blob_copies.values() if is_archive(copy)]
    with ThreadPoolExecutor(max_workers=1) as pool:  # the checksums are read while the backup is verified
        summed = pool.submit(digests, c, settings, new, archives, snapshot)
        if settings.only_blobs:
            checks, problems = verify_blobs(c, blob_copies)
        else:
            checks, problems = verify(c, settings, written, stamp, kind, snapshot, new, blob_copies, hooks, followed)
        sha256 = summed.result()
    hooks.say(f"{kind} backup {stamp}" + ("" if problems else " verified: " + "; ".join(checks)))
    return {"stamp": stamp, "kind": kind, "release": settings.release, "verified": not problems,
            "checks": checks, "problems": problems, "files": new, "blob_copy": bool(blob_copies),
            "blob_archives": archives, "sha256": sha256,
            "when": datetime.now(timezone.utc).isoformat(timespec="seconds")}
