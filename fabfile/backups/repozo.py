"""What a backup needs to know, and the commands it runs: repozo, rsync, the swap of a restore.

Everything here is pure: ``Settings`` says where the data and the backups are (the
same object locally, for a buildout directory, and on a host, for ``<root>``), and
each function returns a command string built from quoted tokens, so a table of
tests can check it without a filestorage.

repozo names every file after the UTC second it was made
(``2026-11-22-03-15-00.fsz``); a blob copy and a backup record take the name of
the repozo backup they belong to, so that a date picks all three at once.
"""
from __future__ import annotations

import dataclasses
import posixpath
import re
from dataclasses import dataclass
from datetime import datetime

from .. import commands

# [0-9], not \d: \d and int() take other scripts' digits (a date in Arabic-Indic digits is another date)
STAMP = re.compile(r"[0-9]{4}(?:-[0-9]{2}){5}")
DATA_FILE = re.compile(r"([0-9]{4}(?:-[0-9]{2}){5})\.(deltafs|fs)(z?)")  # repozo's own is_data_file, fullmatched
DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}(?:-[0-9]{2}(?:-[0-9]{2}(?:-[0-9]{2})?)?)?")
VERIFY_SCHEDULES = ("full", "always", "repozo")
BLOB_ARCHIVES = ("tar", "tar.gz")


class BackupError(Exception):
    """An operator mistake or a backup that cannot be counted; the message says what to fix."""


@dataclass(frozen=True)
class Storage:
    """One filestorage: the live file and its two repozo repositories; an additional one may have a
    blobstorage of its own (collective.recipe.backup's ``name datafs blobdir``), backed up beside it."""

    name: str
    live: str
    repository: str
    snapshots: str
    zips: str = ""
    blobstorage: str | None = None
    blob_backups: str | None = None
    blob_snapshots: str | None = None
    blob_zips: str | None = None


@dataclass(frozen=True)
class Settings:
    """Where the data and the backups are, and how to back up; the same locally and on a host."""

    storages: tuple[Storage, ...]          # the additional filestorages first, the main one last
    blobstorage: str | None
    blob_backups: str
    blob_snapshots: str
    records: str                           # one JSON file per backup: kind, release, verification
    work: str                              # scratch space for recovered copies, beside the backups
    repozo: str
    python: str                            # runs the stdlib scripts in fabfile/onhost
    keep: int = 2
    keep_blob_days: int = 14
    quick: bool = True
    gzip: bool = True
    verify: str = "full"                   # full: recover and open full backups; always; repozo: -V only
    blob_archive: str | None = None        # tar or tar.gz: one archive per backup instead of linked copies
    pre_command: str | None = None
    post_command: str | None = None
    release: str | None = None             # the tag: the release whose data this is
    log: str | None = None                 # deploy.log, when the data belongs to a deployed site
    dry: bool = False
    only_blobs: bool = False               # the blobstorages only, no repozo (collective.recipe.backup's)
    verbose: bool = False                  # repozo --verbose ([backup] debug)
    use_rsync: bool = True                 # false: blobs copied with cp -a
    rsync_options: tuple[str, ...] = ()    # more options for rsync -a
    link_first_copy: bool = False          # the first blob copy hard-links the live blobs
    incremental_blobs: bool = False        # blob archives: tar --listed-incremental deltas between fulls
    blob_zips: str = ""                    # zipbackup: the blobs' archive, apart from everything else
    state: str | None = None               # where the lock and the pending note are (default: beside records)

    @property
    def main(self) -> Storage:
        return self.storages[-1]

    def repository(self, storage: Storage, snapshot: bool) -> str:
        return storage.snapshots if snapshot else storage.repository

    def blob_location(self, snapshot: bool) -> str:
        return self.blob_snapshots if snapshot else self.blob_backups

    def blob_sets(self) -> list[tuple[str, str, str, str]]:
        """(name, live blobstorage, backups, snapshots) of every blobstorage: the main one first."""
        sets = [("main", self.blobstorage, self.blob_backups, self.blob_snapshots)] if self.blobstorage else []
        return sets + [(s.name, s.blobstorage, s.blob_backups, s.blob_snapshots)
                       for s in self.storages if s.blobstorage]

    def blob_of(self, storage: Storage) -> str | None:
        """The live blobstorage that belongs to ``storage``."""
        return self.blobstorage if storage is self.main else storage.blobstorage


def layout(data_dir: str, backups_dir: str, repozo: str, python: str, *,
           filestorage: str = "filestorage/Data.fs", blobstorage: str | None = "blobstorage",
           additional: tuple[str, ...] = (), location: str | None = None, blob_location: str | None = None,
           snapshot_location: str | None = None, blob_snapshot_location: str | None = None,
           zip_location: str | None = None, blob_zip_location: str | None = None,
           **options) -> Settings:
    """Settings for data under ``data_dir`` and backups under ``backups_dir``.

    ``additional`` names more filestorages: ``catalog`` is ``filestorage/catalog.fs``,
    ``catalog:path/to/catalog.fs`` says where it is (relative to ``data_dir``), and
    ``catalog:path/to/catalog.fs:path/to/blobs`` gives it a blobstorage of its own. Each
    gets its own repositories, ``<location>-<name>`` (and ``<blob_location>-<name>``).
    Locations may be relative to ``backups_dir``."""
    under = lambda base, path: posixpath.normpath(posixpath.join(base, path))
    location = under(backups_dir, location or "filestorage")
    snapshot_location = under(backups_dir, snapshot_location or "snapshots/filestorage")
    zip_location = under(backups_dir, zip_location or "zips/filestorage")
    blob_backups = under(backups_dir, blob_location or "blobstorage")
    blob_snapshots = under(backups_dir, blob_snapshot_location or "snapshots/blobstorage")
    blob_zips = under(backups_dir, blob_zip_location or "zips/blobstorage")
    storages = []
    for entry in additional:
        name, _, rest = entry.partition(":")
        path, _, blobs = rest.partition(":")
        if not re.fullmatch(r"[\w.-]+", name):
            raise BackupError(f"additional_filestorages: {entry!r} is not NAME, NAME:PATH or NAME:PATH:BLOBDIR")
        blob_places = dict(blobstorage=under(data_dir, blobs), blob_backups=f"{blob_backups}-{name}",
                           blob_snapshots=f"{blob_snapshots}-{name}", blob_zips=f"{blob_zips}-{name}") if blobs else {}
        storages.append(Storage(name, under(data_dir, path or f"filestorage/{name}.fs"), f"{location}-{name}",
                                f"{snapshot_location}-{name}", f"{zip_location}-{name}", **blob_places))
    storages.append(Storage("main", under(data_dir, filestorage), location, snapshot_location, zip_location))
    settings = Settings(
        storages=tuple(storages),
        blobstorage=under(data_dir, blobstorage) if blobstorage else None,
        blob_backups=blob_backups, blob_snapshots=blob_snapshots, blob_zips=blob_zips,
        records=under(backups_dir, "records"), work=under(backups_dir, ".work"),
        repozo=repozo, python=python, **options)
    check(settings)
    return settings


def job_layout(job: dict, release: str | None = None, **options) -> Settings:
    """Settings from the job's ``settings.json`` (``schedule.job_settings``): what ``fab backup``, the
    scheduled job and ``invoke backup`` on a deployed site all use, so that they write one chain."""
    return layout(job["data"], job["backups"], job["repozo"], job["python"], release=release, log=job["log"],
                  **job["options"], **options)


def variant(settings: Settings, zip: bool = False, source: str | dict | None = None) -> Settings:
    """The settings of ``backup --zip``/``restore --zip`` or of a restore from elsewhere (``--from``)."""
    if zip:
        settings = zip_settings(settings)
    if source:
        settings = alternative_settings(settings, source)
    return settings


def zip_settings(settings: Settings) -> Settings:
    """collective.recipe.backup's zipbackup: one full backup, blobs as one tar archive, kept apart
    (``zip_location``, ``blob_zip_location``) as a chain of its own with ``keep = 1``. It runs as a
    snapshot of these settings; the lock is the site's."""
    storages = tuple(dataclasses.replace(s, snapshots=s.zips, blob_snapshots=s.blob_zips) for s in settings.storages)
    return dataclasses.replace(settings, storages=storages, blob_snapshots=settings.blob_zips, blob_archive="tar",
                               keep=1, records=f"{settings.records}-zip",
                               state=settings.state or posix_parent(settings.records))


def alternative_settings(settings: Settings, source: str | dict) -> Settings:
    """Restore from backups elsewhere (collective.recipe.backup's altrestore): ``source`` is a directory
    holding a copy of the chain restored from (each of its locations by its last name: ``filestorage/``,
    ``blobstorage/``, ``filestorage-catalog/``...) or {storage name or "blobstorage": path}. The data,
    the lock and the scratch space stay the site's."""
    def where(name: str, path: str | None) -> str | None:
        if path is None:
            return None
        if isinstance(source, str):
            return posixpath.join(source, posixpath.basename(path))
        if name not in source:
            raise BackupError(f"alternative_restore_source names no {name!r} (it has: {', '.join(source)})")
        return source[name]
    storages = tuple(dataclasses.replace(s, repository=where(s.name, s.repository),
                                         snapshots=where(s.name, s.snapshots),
                                         blob_backups=where(f"{s.name} blobs", s.blob_backups),
                                         blob_snapshots=where(f"{s.name} blobs", s.blob_snapshots))
                     for s in settings.storages)
    records = posixpath.join(source, "records") if isinstance(source, str) else f"{settings.records}-alternative"
    blobs = settings.blobstorage is not None
    return dataclasses.replace(settings, storages=storages, records=records,
                               blob_backups=where("blobstorage", settings.blob_backups) if blobs
                               else settings.blob_backups,
                               blob_snapshots=where("blobstorage", settings.blob_snapshots) if blobs
                               else settings.blob_snapshots,
                               state=settings.state or posix_parent(settings.records))


def posix_parent(path: str) -> str:
    return path.rsplit("/", 1)[0] or "/"


def check(settings: Settings) -> None:
    """Stop on settings that would lose data: two places that are one, backups inside the blobs."""
    if settings.verify not in VERIFY_SCHEDULES:
        raise BackupError(f"verify = {settings.verify!r}: use one of {', '.join(VERIFY_SCHEDULES)}")
    if settings.blob_archive not in (None, *BLOB_ARCHIVES):
        raise BackupError(f"blob_archive = {settings.blob_archive!r}: use {' or '.join(BLOB_ARCHIVES)}, "
                          f"or leave it out for hard-linked copies")
    if settings.keep < 0 or settings.keep_blob_days < 0:
        raise BackupError("keep and keep_blob_days are 0 (keep all) or more")
    places: dict[str, str] = {}
    named = [(f"{s.name} filestorage", s.live) for s in settings.storages]
    named += [(f"{s.name} backups", s.repository) for s in settings.storages]
    named += [(f"{s.name} snapshots", s.snapshots) for s in settings.storages]
    named += [(f"{s.name} zip backups", s.zips) for s in settings.storages if s.zips]
    for name, live, backups, snapshots in settings.blob_sets()[1:]:
        named += [(f"{name} blobstorage", live), (f"{name} blob backups", backups),
                  (f"{name} blob snapshots", snapshots)]
    named += [("blob backups", settings.blob_backups), ("blob snapshots", settings.blob_snapshots),
              ("backup records", settings.records)]
    if settings.blobstorage:
        named.append(("blobstorage", settings.blobstorage))
    for what, path in named:
        path = posixpath.normpath(path)
        if path in places:
            raise BackupError(f"{places[path]} and {what} are the same directory ({path}): "
                              f"give each its own location")
        places[path] = what
    if settings.blobstorage:
        blobs = posixpath.normpath(settings.blobstorage) + "/"
        for what, path in named[:-1]:
            if posixpath.normpath(path).startswith(blobs):
                raise BackupError(f"{what} ({path}) is inside the blobstorage {settings.blobstorage}")


# -- names and dates -------------------------------------------------------

def parse_date(text: str) -> str:
    """A restore date as repozo reads it, ``yyyy-mm-dd[-hh[-mm[-ss]]]`` in UTC, checked."""
    if not DATE.fullmatch(text or ""):
        raise BackupError(f"date {text!r} is not yyyy-mm-dd[-hh[-mm[-ss]]] (UTC), e.g. 2026-11-20-03-15")
    parts = [int(p) for p in text.split("-")]
    try:
        datetime(*parts, *[0] * (6 - len(parts)))
    except ValueError as error:
        raise BackupError(f"date {text!r} is not a real time: {error}") from None
    return text


def stamp_of(name: str) -> str | None:
    """The repozo time stamp a file or copy is named after, if it is."""
    match = STAMP.match(name)
    return match.group(0) if match else None


def data_files(names) -> dict[str, str]:
    """repozo's data files among ``names``: {stamp: "full" or "incremental"}."""
    found = {}
    for name in names:
        match = DATA_FILE.fullmatch(name)
        if match:
            found[match.group(1)] = "full" if match.group(2) == "fs" else "incremental"
    return found


def pick(stamps, date: str | None) -> str | None:
    """The newest stamp at or before ``date``, compared as repozo compares (as text)."""
    eligible = sorted(s for s in stamps if date is None or s <= date)
    return eligible[-1] if eligible else None


def readable(stamp: str) -> str:
    """``2026-11-22-03-15-00`` as ``2026-11-22 03:15:00``."""
    return f"{stamp[:10]} {stamp[11:].replace('-', ':')}"


# -- commands --------------------------------------------------------------

def backup_command(settings: Settings, storage: Storage, *, full: bool, snapshot: bool) -> str:
    """repozo -B for one filestorage: incremental when it can be, --quick and gzip by default."""
    flags = ["-F"] if full or snapshot else []
    flags += ["-Q"] if settings.quick else []
    flags += ["-z"] if settings.gzip else []
    flags += ["-v"] if settings.verbose else []
    return commands.join(settings.repozo, "-B", "-f", storage.live, "-r", settings.repository(storage, snapshot),
                         *flags)


def recover_command(settings: Settings, repository: str, output: str, date: str | None) -> str:
    """repozo -R with on-the-fly verification, into ``output`` (and its .index)."""
    return commands.join(settings.repozo, "-R", "-w", "-r", repository, "-o", output,
                         *(("-D", date) if date else ()))


def blob_copy_command(source: str, target: str, previous: str | None, rsync: bool, options: tuple[str, ...] = (),
                      link_first: bool = False) -> str:
    """Copy the blobstorage into ``target``: hard links to ``previous`` for unchanged blobs (to the live
    blobs themselves for a first copy with ``link_first``: ZODB never changes a blob file in place).

    The copy is made under ``target.partial`` and renamed when complete, so a copy cut
    short never looks like a backup."""
    partial = f"{target}.partial"
    return commands.and_then(blob_copy_into(source, partial, previous, rsync, options, link_first),
                             commands.join("mv", "-T", partial, target))


def blob_copy_into(source: str, partial: str, previous: str | None, rsync: bool, options: tuple[str, ...] = (),
                   link_first: bool = False) -> str:
    """``blob_copy_command`` without the rename: the copy into ``partial``, for a caller that names it later."""
    if rsync:
        link = [f"--link-dest={previous}"] if previous else [f"--link-dest={source}"] if link_first else []
        # tmp/: where ZODB writes a blob before it moves it into place (a file there may vanish mid-copy)
        return commands.join("rsync", "-a", *options, "--delete", "--exclude=/tmp/", *link, f"{source}/",
                             f"{partial}/")
    return commands.and_then(commands.remove(partial), commands.join("cp", "-a", source, partial))


def blob_archive_command(source: str, archive: str, snar: str | None = None, base: str | None = None) -> str:
    """The blobstorage as one tar (``.tar.gz``: gzipped) archive, written as ``.partial`` first.

    With ``snar`` (incremental_blobs) tar records what it archived there (``--listed-incremental``),
    starting from a copy of ``base``, the record of the previous archive: then only what changed since
    is archived (a delta). The previous record is never changed, so a delta cut short costs nothing."""
    partial = f"{archive}.partial"
    create = "-czf" if archive.endswith(".gz") else "-cf"
    if not snar:
        return commands.and_then(commands.join("tar", create, partial, "-C", source, "."),
                                 commands.join("mv", "-T", partial, archive))
    start = commands.join("cp", base, f"{snar}.partial") if base else commands.remove(f"{snar}.partial")
    return commands.and_then(start, commands.join("tar", create, partial, f"--listed-incremental={snar}.partial",
                                                  "-C", source, "."),
                             commands.join("mv", "-T", f"{snar}.partial", snar),
                             commands.join("mv", "-T", partial, archive))


def unpack_archive_command(archive: str | list[str], target: str) -> str:
    """A blob archive (or a full archive and its deltas, in order) unpacked into a fresh ``target``
    directory (0700, as the blobstorage); deltas with what they record as deleted taken out."""
    archives = [archive] if isinstance(archive, str) else archive
    incremental = ["--listed-incremental=/dev/null"] if len(archives) > 1 else []
    return commands.and_then(commands.remove(target), commands.make_directories(target, mode="0700"), *(
        commands.join("tar", "-xzf" if path.endswith(".gz") else "-xf", path, *incremental, "-C", target)
        for path in archives))


def blob_restore_command(copy: str | list[str], target: str, rsync: bool, options: tuple[str, ...] = (),
                         live: str | None = None) -> str:
    """A copy of a blob backup into ``target``, never linked to the backup (live blobs are the site's
    own); with rsync and the ``live`` blobstorage there, a blob the live one holds unchanged (its path
    names its object and transaction) is a hard link to that file, which ZODB never changes in place.
    An archive is unpacked there."""
    if not isinstance(copy, str) or copy.endswith((".tar", ".tar.gz")):
        return unpack_archive_command(copy, target)
    if rsync:
        link = [f"--link-dest={live}"] if live else []
        return commands.join("rsync", "-a", *options, "--delete", *link, f"{copy}/", f"{target}/")
    return commands.and_then(commands.remove(target), commands.join("cp", "-a", copy, target))


def swap_command(pairs: list[tuple[str, str]], suffix: str) -> str:
    """Move each live path aside to ``path + suffix`` (when it exists), then the new one in place.

    Nothing is deleted: the old data stays beside the new until someone removes it. A move that
    fails puts every pair moved so far back as it was (the new data at its own path again) and
    exits 1: all pairs swapped, or none."""
    script = ('suffix=$1; shift; for path in "$@"; do if [ -e "$path$suffix" ]; then '
              'echo "$path$suffix exists already: nothing moved" >&2; exit 1; fi; done; '
              'swap() { while [ $# -gt 0 ]; do new=$1 live=$2; shift 2; started=$((started + 1)); '
              'if [ -e "$live" ]; then mv -T "$live" "$live$suffix" || return 1; fi; '
              'if [ -e "$new" ]; then mv -T "$new" "$live" || return 1; fi; done; }; '
              'back() { while [ $# -gt 0 ] && [ "$started" -gt 0 ]; do new=$1 live=$2; shift 2; '
              'started=$((started - 1)); '
              'if [ ! -e "$new" ] && [ -e "$live" ]; then mv -T "$live" "$new"; fi; '
              'if [ -e "$live$suffix" ]; then mv -T "$live$suffix" "$live"; fi; done; }; '
              'started=0; swap "$@" && exit 0; '
              'echo "the swap failed: every path moved back, nothing changed" >&2; back "$@"; exit 1')
    return commands.join("sh", "-c", script, "sh", suffix, *(p for pair in pairs for p in pair))


def truncate_command(path: str, size: int) -> str:
    """Cut ``path`` back to ``size`` bytes (a repozo .dat file after a failed incremental)."""
    return commands.join("truncate", "-s", str(size), path)
