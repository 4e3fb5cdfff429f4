"""``copy-data``: a fresh snapshot of one site's data, restored on another site or in a local buildout.

How it goes, so that staging can be refreshed from production without touching
production's data:

1. a snapshot on the source: the same ``make_backup`` as ``fab backup --snapshot``,
   verified, tagged with the source's release, kept in its snapshot chain;
2. its files (each filestorage's snapshot with its ``.dat``, the blob copy or archive)
   hard-linked into a staging directory in the source's scratch space and packed
   into one tar there;
3. the tar fetched into a temporary directory on this machine over SFTP, and put on
   the target the same way: the two hosts never need to reach each other, and
   Fabric has no rsync over SSH. The snapshot's filestorages are repozo's gzipped
   files already, so the tar is not compressed again;
4. unpacked into ``<target backups>/copy-data/``, which the restore engine then reads
   as a snapshot chain: every filestorage recovered and opened with ZODB while the
   target still serves, the target's services stopped, its live data moved aside
   (``*.before-restore-<time>``, never deleted), the copy swapped in, started,
   health-checked.

The unpacked copy and both tars are removed afterwards, whatever happened; the
snapshot stays on the source, under its retention rules.
"""
from __future__ import annotations

import dataclasses
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import invoke

from . import backup as backups
from .. import commands, output
from . import job as datajob, restore as restores
from ..config import hostconfig
from ..config.hostconfig import ConfigError
from ..backups.inventory import Inventory, posix_parent
from ..remote.events import log_event
from ..backups.repozo import BackupError, Settings, readable, stamp_of
from ..remote.site import Site, open_site

LOCAL = "local"
INCOMING = "copy-data"   # beside the target's backups: the snapshot the restore engine reads


@dataclass
class Receiver:
    """The site that gets the data: a site on a host, or a buildout directory on this machine."""

    name: str
    c: object                                  # a Fabric Connection or an invoke Context
    settings: Settings
    hooks: backups.Hooks
    upload: Callable[[Path, str], None]
    log: Callable[..., None]


# -- pure parts ------------------------------------------------------------

def snapshot_files(settings: Settings, found: Inventory, stamp: str) -> list[tuple[str, str]]:
    """What a snapshot is made of: (path on the source, path in the transfer) for every file of each
    filestorage's snapshot ``stamp`` (data, .dat, .index) and for its blob copy or archive."""
    pairs = []
    for storage in settings.storages:
        names = sorted(n for n in found.files(storage, True) if stamp_of(n) == stamp)
        if not names:
            raise BackupError(f"snapshot {stamp} of {storage.name} is missing from {storage.snapshots}")
        pairs += [(f"{storage.snapshots}/{name}", f"filestorage-{storage.name}/{name}") for name in names]
    if settings.blobstorage:
        if stamp not in found.copies(True):
            raise BackupError(f"the blob copy of snapshot {stamp} is missing from {settings.blob_snapshots}")
        copy = found.copy_path(settings, stamp, True)
        pairs.append((copy, f"blobstorage/{copy.rsplit('/', 1)[-1]}"))
    return pairs


def pack_command(pairs: list[tuple[str, str]], staging: str, archive: str) -> str:
    """Hard-link (copy where links cannot go) ``pairs`` into ``staging``, tar it into ``archive``,
    remove the staging directory."""
    folders = sorted({f"{staging}/{target.rsplit('/', 1)[0]}" for _, target in pairs})
    steps = [commands.remove(staging, archive), commands.make_directories(*folders, mode="0700")]
    for source, target in pairs:
        into = f"{staging}/{target}"
        steps.append(f"{{ {commands.join('cp', '-al', source, into)} 2>/dev/null || "
                     f"{{ {commands.and_then(commands.remove(into), commands.join('cp', '-a', source, into))}; }}; }}")
    steps += [commands.join("tar", "-cf", archive, "-C", staging, "."), commands.remove(staging)]
    return commands.and_then(*steps)


def unpack_command(archive: str, incoming: str) -> str:
    """The transfer unpacked into a fresh ``incoming`` directory (0700), the tar removed."""
    return commands.and_then(commands.remove(incoming), commands.make_directories(incoming, mode="0700"),
                             commands.join("tar", "-xf", archive, "-C", incoming), commands.remove(archive))


def incoming_settings(settings: Settings, incoming: str) -> Settings:
    """The target's settings with its snapshot chain read from ``incoming``: what the restore engine
    restores from, into the target's own filestorages and blobstorage."""
    storages = tuple(dataclasses.replace(s, snapshots=f"{incoming}/filestorage-{s.name}") for s in settings.storages)
    return dataclasses.replace(settings, storages=storages, blob_snapshots=f"{incoming}/blobstorage")


def mismatch(source: Settings, target: Settings) -> str | None:
    """Why the source's data cannot go to the target: other filestorages, blobs on one side only."""
    names = lambda settings: sorted(s.name for s in settings.storages)
    if names(source) != names(target):
        return (f"the sites have different filestorages (source: {', '.join(names(source))}; "
                f"target: {', '.join(names(target))}): give both the same [backup] additional_filestorages")
    if bool(source.blobstorage) != bool(target.blobstorage):
        return "one site has a blobstorage and the other has none ([backup] blobstorage)"
    if source.blob_sets()[1:] or target.blob_sets()[1:] or source.only_blobs or target.only_blobs:
        return ("copy-data carries the main blobstorage only (not yet those of additional filestorages, nor "
                "only_blobs): use backup --zip there and restore --from here")
    return None


def question(source: str, receiver: Receiver) -> str:
    places = ", ".join([s.live for s in receiver.settings.storages]
                       + ([receiver.settings.blobstorage] if receiver.settings.blobstorage else []))
    return (f"Copy a fresh snapshot of {source}'s data over the data of {receiver.name} ({places})?\n"
            f"{receiver.name}'s programs are stopped and started; its live data is kept aside, not deleted. "
            f"Type yes to go on: ")


# -- the two sides ---------------------------------------------------------

def site_receiver(site: Site) -> Receiver:
    hooks = restores.site_restore_hooks(site, lambda text: True)
    return Receiver(site.config.name, site.connection, backups.site_settings(site, None), hooks,
                    lambda local, remote: site.connection.put(str(local), remote),
                    lambda **details: log_event(site, "copy-data", **details))


def local_receiver(directory: Path) -> Receiver:
    c = invoke.Context()
    settings = backups.local_settings(directory)
    hooks = backups.local_hooks(c, settings)
    return Receiver(f"the buildout in {directory}", c, settings, hooks,
                    lambda local, remote: shutil.copyfile(local, remote),
                    lambda **details: hooks.log("copy-data", details))


def take_snapshot(source: Site, settings: Settings) -> str:
    """A fresh, verified snapshot on the source; its stamp."""
    record = backups.make_backup(source.connection, settings, backups.site_hooks(source), snapshot=True)
    if record is not None:
        return record["stamp"]
    stamps = backups.inventory(datajob.DataShell(source), settings).stamps(settings.main, True)
    if not stamps:
        raise BackupError("the snapshot made nothing")
    return max(stamps)


def copy_data_between(source: Site, receiver: Receiver, confirm: Callable[[str], bool]) -> dict:
    """Snapshot ``source``, carry it to ``receiver`` through this machine, restore it there."""
    settings = backups.site_settings(source, source.facts().current)
    problem = mismatch(settings, receiver.settings)
    if problem:
        raise BackupError(f"cannot copy {source.config.name}'s data to {receiver.name}: {problem}")
    if not confirm(question(source.config.name, receiver)):
        raise BackupError("copy-data cancelled: nothing changed")
    with output.step(f"snapshot of {source.config.name}"):
        stamp = take_snapshot(source, settings)
    found = backups.inventory(datajob.DataShell(source), settings)
    archive = f"{settings.work}/copy-data-{stamp}.tar"
    incoming = f"{posix_parent(receiver.settings.records)}/{INCOMING}"
    arriving = f"{receiver.settings.work}/copy-data-{stamp}.tar"
    with tempfile.TemporaryDirectory(prefix="copy-data-") as here:
        local = Path(here) / "snapshot.tar"
        try:
            with output.step(f"carry snapshot {stamp} to {receiver.name}"):
                backups.run(source.connection, pack_command(snapshot_files(settings, found, stamp),
                                                            f"{settings.work}/copy-data-{stamp}", archive))
                source.connection.get(archive, str(local))
                backups.run(receiver.c, commands.and_then(
                    commands.make_directories(posix_parent(receiver.settings.records), mode="0700"),
                    commands.make_directories(receiver.settings.work, mode="0700")))
                receiver.upload(local, arriving)
                backups.run(receiver.c, unpack_command(arriving, incoming))
        finally:
            backups.run(source.connection, commands.remove(archive))
    try:
        restored = restores.restore_backup(receiver.c, incoming_settings(receiver.settings, incoming),
                                           receiver.hooks, snapshot=True)
    finally:
        backups.run(receiver.c, commands.remove(incoming, arriving))
    details = {"source": source.config.name, "stamp": stamp, "release": found.records.get(stamp, {}).get("release"),
               "kept_aside": restored["kept_aside"]}
    receiver.log(**details)
    return details


def copy_data(c, to: str | None, directory: str, no_prompt: bool) -> None:
    """``copy-data``: a fresh snapshot of the site ``c`` names, restored over ``to`` (a hostconfig or ``local``)."""
    if not to:
        raise invoke.Exit(f"name the site that gets the data: --to STAGE (a hostconfig: "
                          f"{', '.join(hostconfig.available())}) or --to {LOCAL}", 2)
    source = open_site(c)
    if to == LOCAL:
        describe = f"the buildout in {directory}"
    else:
        try:
            target_config = hostconfig.resolve(to)
        except ConfigError as error:
            raise invoke.Exit(str(error), 2)
        if (target_config.address, target_config.port, target_config.root) == (
                source.config.address, source.config.port, source.config.root):
            raise invoke.Exit(f"{to} is {source.config.name} itself: copy-data needs another site", 2)
        describe = target_config.name
    if source.dry:
        output.say(f"[dry] would snapshot {source.config.name}'s data and restore it over {describe}")
        return
    target = None
    confirm = (lambda text: True) if no_prompt else restores.ask
    try:
        if to == LOCAL:
            receiver = local_receiver(Path(directory).resolve())
        else:
            target = Site(c, target_config)
            receiver = site_receiver(target)
        if target:
            with restores.with_maintenance_page(target):
                details = copy_data_between(source, receiver, confirm)
        else:
            details = copy_data_between(source, receiver, confirm)
    except BackupError as error:
        raise invoke.Exit(str(error), 1)
    finally:
        if target:
            target.close()
    output.say(f"[bold green]copied the data of {source.config.name} (snapshot {readable(details['stamp'])} UTC) "
               f"to {receiver.name}[/]; its data from before is kept as {details['kept_aside']}")
