"""What the backup engine knows of a site's backups and data (``onhost/backups.py``), and how it runs a
command through an Invoke context. Standard library only (shipped to the host)."""
from __future__ import annotations

import getpass
import json
import socket
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field

from .. import commands, onhost
from .repozo import BackupError, Settings, data_files, stamp_of


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


def posix_parent(path: str) -> str:
    return path.rsplit("/", 1)[0] or "/"
