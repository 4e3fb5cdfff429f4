"""Offsite copies: each verified backup copied to a second host with rsync over SSH, checked there, brought back.

``[backup] offsite = ssh://user@host[:port]/path`` (``sftp://`` means the same: the
copy goes over SSH, made with rsync on both ends). After a backup verifies, the job on
the host copies every regular backup the offsite lacks: the repozo files, each blob
copy with ``--link-dest`` to the offsite's previous one (an unchanged blob costs no
disk there either), then checks the offsite files against what was written here
(sha256 and size of every repozo file and blob archive, the sha256 of each blob copy's
names and contents), and only then writes the backup's record there, with that
manifest: a record offsite means a complete, checked copy. Retention runs there
too, with the same ``keep``/``keep_blob_days``. Snapshots stay on the host.

``restore --from offsite`` fetches the offsite directory into ``<backups>/from-offsite``
under the backup lock, drops what no record covers (a copy cut short), checks the
chain it restores against the records' manifests (a changed byte: refused, the live
data untouched), and restores it with the restore engine.

The offsite host is reached as ``user`` with ``offsite_identity`` (a key on the host)
and its host key checked against ``offsite_known_hosts`` (or ssh's own files):
``StrictHostKeyChecking=yes``, never ``no``. Standard library only: the backup job
ships this module with the engine.
"""
from __future__ import annotations

import ipaddress
import json
import re
import shlex
from dataclasses import asdict, dataclass, replace
from urllib.parse import urlsplit

from .. import commands
from .blobs import ARCHIVES
from .engine import apply_retention
from .inventory import Hooks, inventory, posix_parent, run, tail
from .lock import exclusive
from .repozo import BackupError, DATA_FILE, data_files, Settings, Storage
from .restore import choose, restore_backup

SCHEMES = ("ssh", "sftp")
_PLAIN_PATH = re.compile(r"/[A-Za-z0-9_.+@/-]*")
_USER = re.compile(r"[a-z_][a-z0-9_.-]{0,31}")
_HOSTNAME = re.compile(r"(?=.{1,253}$)(?!-)[a-z0-9-]{1,63}(?<!-)(\.(?!-)[a-z0-9-]{1,63}(?<!-))*", re.I)
FETCHED = "from-offsite"  # under <backups>: the offsite copy brought back for a restore


@dataclass(frozen=True)
class Offsite:
    """Where the offsite copies go, and how we log in there."""

    user: str
    host: str
    port: int
    path: str
    identity: str | None = None      # a private key on the host
    known_hosts: str | None = None   # the offsite's host key, on the host

    def target(self, path: str) -> str:
        """``user@host:path`` as rsync takes it (an IPv6 address in brackets)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.user}@{host}:{path}"

    def __str__(self) -> str:
        return f"{self.user}@{self.host}:{self.port}{self.path}"


def parse_url(text: str) -> Offsite:
    """``ssh://user@host[:port]/absolute/path``, checked; ValueError says what is wrong."""
    try:
        parts = urlsplit(text)
        port = parts.port or 22
    except ValueError:
        raise ValueError(f"{text!r} is not ssh://user@host[:port]/path (a port 1-65535)") from None
    if parts.scheme not in SCHEMES or not parts.hostname:
        raise ValueError(f"{text!r} is not ssh://user@host[:port]/path (or sftp://...)")
    if parts.password is not None:
        raise ValueError("a password in the URL: use a key (offsite_identity), never a password")
    if not parts.username or not _USER.fullmatch(parts.username):
        raise ValueError(f"{text!r} needs a plain user name: ssh://user@host/path")
    host = parts.hostname
    try:
        ipaddress.ip_address(host)
    except ValueError:
        if not _HOSTNAME.fullmatch(host):
            raise ValueError(f"{host!r} is not a hostname or an IP address") from None
    path = parts.path.rstrip("/")
    if parts.query or parts.fragment or "?" in text or "#" in text:
        raise ValueError("has a query (?...) or a fragment (#...): an offsite place is ssh://user@host[:port]/path "
                         "and nothing after the path")
    if not _PLAIN_PATH.fullmatch(path or "-") \
            or ".." in path.split("/") or path.strip("/") == "":
        raise ValueError(f"{parts.path!r}: give an absolute directory of its own on the offsite host, "
                         f"plain (letters, digits, _ . + @ - /), without '..'")
    return Offsite(parts.username, host, port, path)


def host_path(text: str) -> str:
    """An absolute, plain path on the host (a key, a known_hosts file); ValueError when it is not."""
    if not _PLAIN_PATH.fullmatch(text) or ".." in text.split("/") or text.endswith("/"):
        raise ValueError(f"{text!r} is not an absolute path on the host, plain (letters, digits, _ . + @ - /), "
                         f"without '..'")
    return text


def from_settings(values: dict | None) -> Offsite | None:
    """The ``offsite`` of the job's settings (``schedule.job_settings``)."""
    return Offsite(**values) if values else None


def as_settings(offsite: Offsite | None) -> dict | None:
    return asdict(offsite) if offsite else None


# -- commands ----------------------------------------------------------------

def ssh_argv(offsite: Offsite) -> list[str]:
    """ssh to the offsite host: no prompt, the host key checked, our key only."""
    argv = ["ssh", "-p", str(offsite.port), "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes",
            "-o", "ConnectTimeout=20", "-o", "ServerAliveInterval=15", "-o", "ServerAliveCountMax=4"]
    if offsite.identity:
        argv += ["-i", offsite.identity, "-o", "IdentitiesOnly=yes"]
    if offsite.known_hosts:
        argv += ["-o", f"UserKnownHostsFile={offsite.known_hosts}"]
    return argv


def remote_command(offsite: Offsite, command: str) -> str:
    """``command`` (already quoted) run by the offsite host's shell."""
    return commands.join(*ssh_argv(offsite), f"{offsite.user}@{offsite.host}", "--", command)


def rsync_command(offsite: Offsite, source: str, target: str, *options: str) -> str:
    """rsync over our ssh (its ``-e`` is split on spaces: every token is plain, checked at load time)."""
    return commands.join("rsync", "-a", "-e", shlex.join(ssh_argv(offsite)), *options, source, target)


# One line per path: the hex sha256 and the size of a file, or, for a directory (a blob copy), the sha256
# of ``sha256sum`` over every file in it by name, and their total size; "missing -" when it is not there.
_MANIFEST = ('for p in "$@"; do '
             'if [ -d "$p" ]; then '
             'd=$(cd "$p" && find . -type f -print0 | LC_ALL=C sort -z | xargs -0r sha256sum | sha256sum) '
             '|| exit 1; s=$(find "$p" -type f -printf "%s\\n" | awk "{t+=\\$1} END {print t+0}"); '
             'elif [ -f "$p" ]; then d=$(sha256sum < "$p") || exit 1; s=$(stat -c %s -- "$p"); '
             'else d=missing; s=-; fi; '
             'printf "%s %s\\n" "${d%% *}" "$s"; done')


def manifest_command(paths: list[str]) -> str:
    return commands.join("sh", "-c", _MANIFEST, "sh", *paths)


def must(c, command: str, what: str):
    """Run ``command``; a failure is a BackupError saying ``what`` failed and why, in the command's own words."""
    result = run(c, command, warn=True)
    if result.exited:
        raise BackupError(f"{what} failed (exit {result.exited}): {tail(result)}")
    return result


def manifest(c, paths: list[str]) -> list[list[str]]:
    """[sha256, size] of each path, through ``c`` (here, or on the offsite host)."""
    if not paths:
        return []
    lines = must(c, manifest_command(paths), "reading sha256 and sizes").stdout.split("\n")
    return [line.split(" ", 1) for line in lines[:len(paths)]]


class Remote:
    """A context whose commands run on the offsite host, over ssh from the host (``c``)."""

    def __init__(self, c, offsite: Offsite):
        self.c, self.offsite = c, offsite

    def run(self, command, hide=True, warn=False, in_stream=False, dry=False):
        return self.c.run(remote_command(self.offsite, command), hide=hide, warn=warn, in_stream=in_stream, dry=dry)


# -- the layout there --------------------------------------------------------

def repository_name(settings: Settings, storage: Storage) -> str:
    """The directory of a filestorage's repozo files in the default layout."""
    return "filestorage" if storage is settings.main else f"filestorage-{storage.name}"


def laid_out(settings: Settings, base: str, python: str) -> Settings:
    """The regular chain of ``settings`` under ``base``, in the default layout: ``filestorage[-NAME]/``,
    ``blobstorage/``, ``records/`` (the same live data, the same retention)."""
    storages = tuple(Storage(s.name, s.live, f"{base}/{repository_name(settings, s)}",
                             f"{base}/snapshots/{s.name}") for s in settings.storages)
    return replace(settings, storages=storages, blob_backups=f"{base}/blobstorage",
                   blob_snapshots=f"{base}/snapshots/blobstorage", records=f"{base}/records", work=f"{base}/.work",
                   python=python, pre_command=None, post_command=None)


def entries(settings: Settings, record: dict) -> list[tuple[str, str]]:
    """(its name in the default layout, its path here) of each part of the backup of ``record``: its
    repozo files (the growing .dat apart) and its blob copy or archive."""
    pairs = [(f"{repository_name(settings, s)}/{name}", f"{s.repository}/{name}") for s in settings.storages
             for name in record.get("files", {}).get(s.name, []) if not name.endswith(".dat")]
    if record.get("blob_copy") and settings.blobstorage:
        name = record["stamp"] + (ARCHIVES[settings.blob_archive] if settings.blob_archive else "")
        pairs.append((f"blobstorage/{name}", f"{settings.blob_backups}/{name}"))
    return pairs


def _regular(records: dict) -> dict:
    return {stamp: r for stamp, r in records.items() if r.get("kind") != "snapshot"}


# -- the copy ----------------------------------------------------------------

def copy_backups(c, settings: Settings, offsite: Offsite, hooks: Hooks) -> str:
    """Copy every regular backup the offsite lacks, check it there, keep there what ``keep`` keeps; what
    was done, in words. BackupError (or the command's failure) when the copy cannot be made or checked."""
    with exclusive(c, settings, "offsite copy", hooks.show):  # no backup writes while we read
        return _locked_copy(c, settings, offsite, hooks)


def _locked_copy(c, settings: Settings, offsite: Offsite, hooks: Hooks) -> str:
    remote = Remote(c, offsite)
    there = laid_out(settings, offsite.path, "python3")
    must(remote, commands.make_directories(offsite.path, there.records, there.blob_backups,
                                           *(there.repository(s, False) for s in there.storages), mode="0700"),
         f"reaching {offsite.host}")
    found_here, found_there = inventory(c, settings), inventory(remote, there)
    missing = sorted(set(_regular(found_here.records)) - set(found_there.records))
    if not missing:
        return f"offsite {offsite}: up to date"
    with hooks.step(f"offsite copy to {offsite.host}"):
        for storage, theirs in zip(settings.storages, there.storages):
            must(c, rsync_command(offsite, f"{storage.repository}/", offsite.target(f"{theirs.repository}/")),
                 f"rsync of {storage.repository}")
        copies = {stamp: info for stamp, info in found_there.copies(False).items() if not info.get("archive")}
        for stamp in missing:
            if not found_here.records[stamp].get("blob_copy") or not settings.blobstorage:
                continue
            source = found_here.copy_path(settings, stamp, False)
            if settings.blob_archive:
                must(c, rsync_command(offsite, source, offsite.target(f"{there.blob_backups}/")), f"rsync of {source}")
                continue
            older = [s for s in copies if s < stamp] or list(copies)
            link = [f"--link-dest={there.blob_backups}/{max(older)}"] if older else []
            partial = f"{there.blob_backups}/{stamp}.partial"
            must(c, rsync_command(offsite, f"{source}/", offsite.target(f"{partial}/"), "--delete", *link),
                 f"rsync of {source}")
            must(remote, commands.and_then(commands.remove(f"{there.blob_backups}/{stamp}"),
                                           commands.join("mv", "-T", partial, f"{there.blob_backups}/{stamp}")),
                 f"naming the blob copy {stamp}")
            copies[stamp] = {"name": stamp}
    with hooks.step("offsite check: sha256 and size"):
        written = []
        for stamp in missing:
            record = found_here.records[stamp]
            pairs = entries(settings, record)
            ours = manifest(c, [path for _, path in pairs])
            theirs = manifest(remote, [f"{offsite.path}/{name}" for name, _ in pairs])
            recorded = record.get("sha256") or {}
            for (name, path), mine, copied in zip(pairs, ours, theirs):
                if mine[0] == "missing":
                    raise BackupError(f"{path} of backup {stamp} is gone here: it cannot be copied offsite")
                if recorded.get(path, mine[0]) != mine[0]:
                    raise BackupError(f"{path} no longer has the sha256 its record holds: not copied offsite; "
                                      f"check this backup (fab backups)")
                if copied != mine:
                    raise BackupError(f"the offsite copy of {name} differs from the backup here "
                                      f"({'missing' if copied[0] == 'missing' else 'sha256 or size'}); "
                                      f"it does not count there")
            offsite_record = {**record, "offsite": {name: mine for (name, _), mine in zip(pairs, ours)}}
            written.append(commands.write_file(f"{there.records}/{stamp}.json",
                                               json.dumps(offsite_record, sort_keys=True)))
        # complete and checked: from now on they count there
        must(remote, commands.and_then(*written), "writing the records")
    apply_retention(remote, there, False, Hooks(quiet=hooks.quiet, show=lambda m: hooks.show(f"offsite {m}")))
    return f"offsite {offsite}: {len(missing)} backup(s) copied and checked (sha256 and size)"


# -- the way back ------------------------------------------------------------

def restore_from_offsite(c, settings: Settings, offsite: Offsite, hooks: Hooks, *, date: str | None = None,
                         force_unlock: bool = False) -> dict:
    """Fetch the offsite copies, check the chain ``date`` picks against its records, restore it."""
    base = f"{posix_parent(settings.records)}/{FETCHED}"
    fetched = laid_out(settings, base, settings.python)
    with exclusive(c, settings, "restore from offsite", hooks.show, force_unlock):
        with hooks.step(f"fetch the offsite copies from {offsite.host}"):
            run(c, commands.make_directories(base, mode="0700"))
            must(c, rsync_command(offsite, offsite.target(f"{offsite.path}/"), f"{base}/", "-H", "--delete",
                                  "--exclude=/.lock", "--exclude=/.work", "--exclude=/.pending.json"),
                 f"fetching the offsite copies from {offsite} (nothing changed here)")
        found = inventory(c, fetched)
        uncounted = [f"{fetched.repository(s, False)}/{name}" for s in fetched.storages
                     for name in found.files(s, False)
                     if DATA_FILE.fullmatch(name) and not any(name in r.get("files", {}).get(s.name, [])
                                                              for r in found.records.values())]
        if uncounted:  # a copy cut short: its record never reached the offsite host
            run(c, commands.remove(*uncounted))
            hooks.say(f"left out {len(uncounted)} offsite file(s) no record covers (a copy cut short)")
            found = inventory(c, fetched)
        chosen, _ = choose(fetched, found, date, False)
        check_chain(c, fetched, found, base, chosen)
        return restore_backup(c, fetched, hooks, date=chosen)


def check_chain(c, fetched: Settings, found, base: str, chosen: str) -> None:
    """Every backup the restore of ``chosen`` reads (its full one, the incrementals up to it) as its record
    says: sha256 and size. BackupError naming the first file that is not."""
    records = _regular(found.records)
    fulls = [stamp for stamp, kind in data_files(found.files(fetched.main, False)).items()
             if kind == "full" and stamp <= chosen]
    start = max(fulls, default=chosen)
    chain = [stamp for stamp in sorted(records) if start <= stamp <= chosen] or [chosen]
    for stamp in chain:
        expected = records.get(stamp, {}).get("offsite")
        if not expected:
            raise BackupError(f"the offsite backup {stamp} has no checked record: nothing restored, "
                              f"the live data is untouched")
        names = sorted(expected)
        for name, actual in zip(names, manifest(c, [f"{base}/{name}" for name in names])):
            if actual != expected[name]:
                what = "is missing" if actual[0] == "missing" else "is CORRUPTED (not the sha256 and size recorded)"
                raise BackupError(f"the offsite copy {name} of backup {stamp} {what}: "
                                  f"nothing restored, the live data is untouched")

