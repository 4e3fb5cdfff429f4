"""Backup benchmark: our backups against collective.recipe.backup 6.0 on the same data.

    python -m benchmarks.backup [--megabytes 200] [--blobs 5000] [--workdir DIR]

One Data.fs (``--megabytes``, written with ZODB in 10 MB transactions, half random
and half repetitive bytes, as real pickles compress) and one blobstorage (``--blobs``
blobs of 1-8 kB) are made, then copied so each tool works on identical data.
collective.recipe.backup comes from PyPI into a scratch buildout (``bin/backup``,
``bin/restore``, with ``bin/repozo`` from the same ZODB). Both run with their
defaults: gzip, --quick, rsync hard links for blobs. Ours verifies every backup
(repozo -V, and the full one recovered and opened with ZODB); theirs does not.

Measured: a full backup, an incremental after a 1% change, a backup with nothing
changed, a restore of the newest backup, and the disk used by five consecutive
backups (a full and four incrementals, each after a 1% change; ``du`` counts a
hard-linked blob once).
"""
from __future__ import annotations

import argparse
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import invoke
import ZODB
from BTrees.OOBTree import OOBTree
from persistent.mapping import PersistentMapping
from rich.console import Console
from rich.table import Table
from ZODB.blob import Blob
from ZODB.FileStorage import FileStorage

from fabfile.data import backup as backups
from fabfile.data import restore as restores

BUILDOUT = str(Path(sys.executable).parent / "buildout")
RECIPE = """[buildout]
parts = repozo backup
[repozo]
recipe = zc.recipe.egg
eggs = ZODB
scripts = repozo
[backup]
recipe = collective.recipe.backup
location = ${buildout:directory}/backups/filestorage
blobbackuplocation = ${buildout:directory}/backups/blobstorage
snapshotlocation = ${buildout:directory}/backups/snapshots
blobsnapshotlocation = ${buildout:directory}/backups/blobsnapshots
ziplocation = ${buildout:directory}/backups/zip
blobziplocation = ${buildout:directory}/backups/blobzip
datafs = ${buildout:directory}/var/filestorage/Data.fs
blob_storage = ${buildout:directory}/var/blobstorage
keep = 2
[versions]
collective.recipe.backup = 6.0.0
"""


def payload(size: int, rng: random.Random) -> bytes:
    half = size // 2
    return rng.randbytes(half) + (b"pickle-like " * (half // 12 + 1))[:size - half]


def commit(directory: Path, megabytes: float, blobs: int, rng: random.Random, prefix: str) -> None:
    """Add ``megabytes`` of object data (10 MB per transaction) and ``blobs`` new blobs."""
    (directory / "var/filestorage").mkdir(parents=True, exist_ok=True)
    db = ZODB.DB(FileStorage(str(directory / "var/filestorage/Data.fs"), blob_dir=str(directory / "var/blobstorage")))
    left = int(megabytes * 1024 * 1024)
    number = 0
    with db.transaction() as connection:
        connection.root().setdefault("items", OOBTree())
    while left > 0:
        with db.transaction() as connection:
            items = connection.root()["items"]
            for _ in range(max(1, min(left, 10 * 1024 * 1024) // (100 * 1024))):
                items[f"{prefix}-{number}"] = PersistentMapping(data=payload(min(100 * 1024, left), rng))
                left -= 100 * 1024
                number += 1
    for start in range(0, blobs, 1000):
        with db.transaction() as connection:
            items = connection.root()["items"]
            for index in range(start, min(blobs, start + 1000)):
                items[f"{prefix}-blob-{index}"] = Blob(rng.randbytes(rng.randint(1024, 8192)))
    db.close()


def disk_used(*paths: Path) -> int:
    """Bytes on disk under ``paths``, each hard-linked file counted once."""
    result = subprocess.run(["du", "-s", "-B1", "-c", *map(str, paths)], capture_output=True, text=True, check=True)
    return int(result.stdout.splitlines()[-1].split()[0])


def timed(action) -> float:
    started = time.monotonic()
    action()
    return time.monotonic() - started


class Ours:
    name = "ours"

    def __init__(self, directory: Path):
        self.directory, self.c = directory, invoke.Context()

    def backup(self, full: bool = False) -> None:
        settings = backups.local_settings(self.directory)
        backups.make_backup(self.c, settings, backups.Hooks(quiet=True), full=full)

    def restore(self) -> None:
        settings = backups.local_settings(self.directory)
        restores.restore_backup(self.c, settings, backups.Hooks(quiet=True))

    def backups(self) -> list[Path]:
        return [self.directory / "var/backups"]


class Theirs:
    name = "collective.recipe.backup 6.0"

    def __init__(self, directory: Path):
        self.directory = directory
        (directory / "buildout.cfg").write_text(RECIPE)
        subprocess.run([BUILDOUT, "-c", "buildout.cfg"], cwd=directory, check=True, capture_output=True)

    def backup(self, full: bool = False) -> None:
        # its first bin/backup is a full backup; a later full one is `bin/backup` after removing nothing,
        # so the benchmark only asks for a full one when there is none yet
        subprocess.run([str(self.directory / "bin/backup"), "-q"], cwd=self.directory, check=True,
                       capture_output=True)

    def restore(self) -> None:
        subprocess.run([str(self.directory / "bin/restore"), "--no-prompt", "-q"], cwd=self.directory, check=True,
                       capture_output=True)

    def backups(self) -> list[Path]:
        return [self.directory / "backups"]


def measure(tool, rng_seed: int, change_mb: float, change_blobs: int) -> dict[str, float]:
    rng = random.Random(rng_seed)
    numbers = {"full backup": timed(lambda: tool.backup(full=True))}
    time.sleep(1)
    commit(tool.directory, change_mb, change_blobs, rng, "change-1")
    numbers["incremental after a 1% change"] = timed(tool.backup)
    time.sleep(1)
    numbers["backup with nothing changed"] = timed(tool.backup)
    numbers["restore of the newest"] = timed(tool.restore)
    for round_ in range(2, 5):
        time.sleep(1)
        commit(tool.directory, change_mb, change_blobs, rng, f"change-{round_}")
        tool.backup()
    numbers["disk used by five backups (MB)"] = disk_used(*tool.backups()) / 1024 / 1024
    return numbers


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--megabytes", type=float, default=200)
    parser.add_argument("--blobs", type=int, default=5000)
    parser.add_argument("--workdir", type=Path)
    arguments = parser.parse_args()
    workdir = arguments.workdir or Path(tempfile.mkdtemp(prefix="backup-bench-"))
    console = Console(highlight=False)
    seed = Path(workdir, "data")
    started = time.monotonic()
    commit(seed, arguments.megabytes, arguments.blobs, random.Random(1), "initial")
    console.print(f"data: {os.path.getsize(seed / 'var/filestorage/Data.fs') / 1024 / 1024:.0f} MB Data.fs, "
                  f"{arguments.blobs} blobs, made in {time.monotonic() - started:.0f}s in {workdir}")
    results = {}
    for tool_class in (Theirs, Ours):
        directory = workdir / tool_class.__name__.lower()
        shutil.copytree(seed, directory, symlinks=True)
        tool = tool_class(directory)
        results[tool.name] = measure(tool, 2, arguments.megabytes / 100, max(1, arguments.blobs // 100))
    table = Table(title="backups: ours against collective.recipe.backup (seconds, or MB)")
    theirs, ours = results["collective.recipe.backup 6.0"], results["ours"]
    for column in ("measure", "collective.recipe.backup 6.0", "ours (verified)", "ours / theirs"):
        table.add_column(column)
    for key in theirs:
        table.add_row(key, f"{theirs[key]:.2f}", f"{ours[key]:.2f}", f"{ours[key] / theirs[key]:.2f}")
    console.print(table)
    if not arguments.workdir:
        shutil.rmtree(workdir)


if __name__ == "__main__":
    main()
