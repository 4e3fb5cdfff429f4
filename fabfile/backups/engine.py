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

import getpass
import json
import shlex
import socket
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from datetime import datetime, timezone

from .. import commands, onhost
from . import retention
from .repozo import (backup_command, BackupError, blob_archive_command, blob_copy_command, blob_copy_into,
                     data_files, readable, recover_command, Settings, stamp_of, truncate_command,
                     unpack_archive_command)


def who() -> str:
    """Who backs up: ``user@machine`` (a copy of ``site.who``, which needs Fabric)."""
    return f"{getpass.getuser()}@{socket.gethostname()}"


@dataclass
class Hooks:
    """What differs between an operator at a terminal, a cron job and a deploy."""

    quiet: bool = False
    log: Callable[[str, dict], None] = lambda event, record: None
    confirm: Callable[[str], bool] = lambda question: True
    stop: Callable[[], None] = lambda: None
    start: Callable[[], dict] = lambda: {}
    show: Callable[[str], None] = print                     # backup.Hooks: rich output
    timed: Callable[[str], object] = lambda name: nullcontext()

    def say(self, message: str) -> None:
        if not self.quiet:
            self.show(message)

    def step(self, name: str):
        return nullcontext() if self.quiet else self.timed(name)


@dataclass(frozen=True)
class Inventory:
    """The backups and the data as ``onhost/backups.py`` found them."""

    data: dict = field(repr=False)

    def files(self, storage, snapshot: bool) -> dict[str, int]:
        return self.data["storages"][storage.name]["snapshots" if snapshot else "repository"]["files"]

    def stamps(self, storage, snapshot: bool) -> dict[str, str]:
        """{stamp: full or incremental} of a storage's data files."""
        return data_files(self.files(storage, snapshot))

    def blob_data(self, snapshot: bool, name: str = "main") -> dict:
        """What was found in a blob backup location: the main blobstorage's, or an additional one's."""
        key = "blob_snapshots" if snapshot else "blob_backups"
        return self.data[key] if name == "main" else self.data["blobs"][name][key]

    def copies(self, snapshot: bool, name: str = "main") -> dict[str, dict]:
        """{stamp: info} of the complete blob copies (directories) and archives (``info["name"]``)."""
        found = self.blob_data(snapshot, name)["copies"]
        return {stamp: info for stamp, info in found.items() if not stamp.endswith(".partial")}

    def copy_path(self, settings: Settings, stamp: str, snapshot: bool, name: str = "main") -> str:
        """Where the blob copy or archive of ``stamp`` is."""
        location = next((snapshots if snapshot else backups for n, _, backups, snapshots in settings.blob_sets()
                         if n == name), settings.blob_location(snapshot))
        return f"{location}/{self.blob_data(snapshot, name)['copies'].get(stamp, {}).get('name', stamp)}"

    def blob_source(self, settings: Settings, stamp: str, snapshot: bool, name: str = "main") -> str | list[str]:
        """The blob copy of ``stamp``; for a delta archive (incremental_blobs), the full archive it
        follows and every delta up to it, oldest first."""
        copies = self.copies(snapshot, name)
        if not copies.get(stamp, {}).get("delta"):
            return self.copy_path(settings, stamp, snapshot, name)
        chain = []
        for earlier in sorted((s for s in copies if s <= stamp), reverse=True):
            chain.append(self.copy_path(settings, earlier, snapshot, name))
            if not copies[earlier].get("delta"):
                return chain[::-1]
        raise BackupError(f"the blob archive {chain[0]} is a delta whose full archive is gone: it cannot be restored")

    @property
    def records(self) -> dict[str, dict]:
        return self.data["records"]

    def latest_stamp(self) -> str:
        names = [*self.records, *self.copies(False), *self.copies(True)]
        for storage in self.data["storages"].values():
            names += [*storage["repository"]["files"], *storage["snapshots"]["files"]]
        return max((stamp_of(n) for n in names if stamp_of(n)), default="")


def run(c, command: str, warn: bool = False):
    """Run a command through ``c``: hidden, no stdin; ``--dry`` is handled by the callers."""
    return c.run(command, hide=True, warn=warn, in_stream=False, dry=False)


def tail(result) -> str:
    """Why a command failed, in one line: the problems our scripts report, else the last line it wrote
    (a traceback's last line is the error)."""
    try:
        return explained("; ".join(json.loads(result.stdout)["problems"]))
    except (ValueError, KeyError, TypeError):
        lines = (result.stderr.strip() or result.stdout.strip()).splitlines()
        return explained(lines[-1].strip()) if lines else f"exit {result.exited}"


def inventory(c, settings: Settings, sizes: bool = False) -> Inventory:
    """What there is: one read-only command (with the disk each blob copy uses, when ``sizes``)."""
    described = json.dumps({"sizes": sizes,
        "storages": [vars(s) for s in settings.storages], "blobstorage": settings.blobstorage,
        "blob_backups": settings.blob_backups, "blob_snapshots": settings.blob_snapshots,
        "records": settings.records, "repozo": settings.repozo, "blob_sets": settings.blob_sets()[1:],
    })
    return Inventory(json.loads(run(c, commands.python(settings.python, onhost.source("backups"), described)).stdout))


DISK_FULL = ("No space left on device", "ENOSPC", "Disk quota exceeded")


def explained(text: str) -> str:
    """``text``, opening with "disk full" when that is what it says in the system's words."""
    return f"disk full: {text}" if any(words in text for words in DISK_FULL) else text


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


GONE, ALIVE, UNKNOWN = 0, 1, 2
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


def posix_parent(path: str) -> str:
    return path.rsplit("/", 1)[0] or "/"

