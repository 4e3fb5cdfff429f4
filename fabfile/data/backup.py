"""Backups of a site's data: the ``backup`` and ``backups`` tasks, on a host and on this machine.

The engine (``backups/``) runs through ``c``, an ``invoke.Context`` (``invoke
backup`` on the machine holding the data) or a Fabric ``Connection`` (``fab -H HOST
backup``), with a ``repozo.Settings``; this module adds what only an operator or a
deploy needs: the settings of a site or a buildout directory, rich output, the table
of backups, the deploy's backup before the switch.
"""
from __future__ import annotations

import dataclasses
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from invoke import Exit
from rich.markup import escape

from .. import commands, output
from . import job as datajob, schedule
from ..config import hostconfig
# the engine's names that restore.py, releases.py, tasks.py and the tests use through this module
from ..backups.engine import make_backup, zodb_check  # noqa: F401  (tasks.py and the tests take them from here)
from ..backups.inventory import Hooks as EngineHooks
from ..backups.inventory import Inventory, inventory, run, tail  # noqa: F401
from ..backups.lock import exclusive  # noqa: F401
from ..remote.events import log_event
from ..config.hostconfig import HostConfig
from ..backups.repozo import BackupError, job_layout, layout, readable, Settings, stamp_of, variant
from ..remote.site import Site, who


@dataclass
class Hooks(EngineHooks):
    """The engine's hooks, printing with rich: each step with how long it took."""

    show: Callable[[str], None] = lambda message: output.say(escape(message))  # paths are text, not markup
    timed: Callable[[str], object] = output.step


# -- the table -------------------------------------------------------------

def size(count: int) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if count < 1024 or unit == "GB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1024


def rows(settings: Settings, found: Inventory) -> list[list[str]]:
    """One row per backup, oldest first: time, kind, size on disk, release, verified (CORRUPTED or
    MISSING when a file differs from the sha256 its record holds, or is gone)."""
    listed = []
    checked = found.data.get("checksums") or {}
    for snapshot in (False, True):
        copies = found.copies(snapshot)
        for stamp, kind in found.stamps(settings.main, snapshot).items():
            record = found.records.get(stamp, {})
            files = record.get("files") or {settings.main.name: [n for n in found.files(settings.main, snapshot)
                                                                 if stamp_of(n) == stamp]}
            used = sum(found.files(s, snapshot).get(n, 0) for s in settings.storages for n in files.get(s.name, []))
            used += copies.get(stamp, {}).get("new_bytes", 0)
            verified = {True: "yes", False: "NO"}.get(record.get("verified"), "?")
            check = checked.get(stamp, {})
            if check.get("corrupted"):
                verified = "CORRUPTED"
            elif check.get("missing"):
                verified = "MISSING"
            listed.append([readable(stamp), "snapshot" if snapshot else kind, size(used),
                           record.get("release") or "", verified, "yes" if stamp in copies else "no"])
    return sorted(listed)


# -- on a host -------------------------------------------------------------

def config_settings(config: HostConfig, release: str | None, dry: bool = False) -> Settings:
    """Settings for a site as its hostconfig says: data in ``<root>/var``, backups in ``<root>/backups``
    (or the ``[backup]`` locations); the same as the job's ``settings.json`` makes."""
    return job_layout(schedule.job_settings(config), release, dry=dry)


def site_settings(site: Site, release: str | None, zip: bool = False, source=None) -> Settings:
    """Settings for the site on the host (``zip``: those of ``--zip``; ``source``: restore from there)."""
    config = site.config
    try:
        return variant(config_settings(config, release, site.dry), zip=zip, source=source)
    except BackupError as error:
        raise Exit(f"{config.path}: [backup] {error}", 2)


def offsite_failure(verdict: dict) -> str | None:
    """What went wrong with the offsite copy after a backup that counts here, in words; None when nothing did."""
    copied = verdict.get("offsite") or {}
    if copied.get("result") != "failed":
        return None
    return (f"the backup here is verified and counts, but {copied['error']}; the next backup copies what the "
            f"offsite host lacks")


def site_hooks(site: Site, quiet: bool = False) -> Hooks:
    return Hooks(quiet=quiet, log=lambda event, record: log_event(site, event, **record))


def backup_before_switch(site: Site, leaving_release_id: str | None) -> dict | None:
    """The deploy's step 4: a backup tagged with the release that leaves, or None when there is
    nothing to back up (no release yet, no data yet, or ``before_deploy = false``)."""
    if not site.config.backup_before_deploy or not leaving_release_id:
        return None
    settings = site_settings(site, leaving_release_id)
    if not inventory(datajob.DataShell(site), settings).data["storages"][settings.main.name]["live"]["exists"]:
        return None
    with output.step(f"backup (tagged {leaving_release_id})"):
        verdict = datajob.run(site, "backup", release=leaving_release_id)
    if verdict["result"] != "ok":
        raise Exit(f"the backup before the switch failed, nothing was switched: {verdict.get('error')}", 1)
    if offsite_failure(verdict):  # the backup here holds the data: the deploy goes on
        output.say(f"[yellow]warning:[/] {escape(offsite_failure(verdict))}")
    record = verdict.get("record")
    if record is None:  # nothing changed since the last backup: that one holds this data
        found = inventory(datajob.DataShell(site), settings)
        stamp = max(found.stamps(settings.main, False), default=None)
        record = found.records.get(stamp) if stamp else None
    return record




def backup_site(site: Site, full: bool, snapshot: bool, zip: bool, quiet: bool, force_unlock: bool) -> None:
    """``backup``: the job on the host backs up, verifies and tags with the serving release."""
    if zip and not site.config.backup_enable_zipbackup:
        raise Exit(f"backup --zip is turned off: {site.config.path}: [backup] enable_zipbackup = false", 2)
    facts = site.facts()
    settings = site_settings(site, facts.current, zip=zip)
    if site.dry:
        output.say(f"\\[dry] would back up {', '.join(s.live for s in settings.storages)} and {settings.blobstorage}")
        return
    verdict = datajob.run(site, "backup", release=facts.current, full=full, snapshot=snapshot, zip=zip, quiet=quiet,
                          force_unlock=force_unlock)
    if verdict["result"] != "ok":
        raise Exit(verdict.get("error", "the backup failed"), 1)
    if offsite_failure(verdict):
        raise Exit(offsite_failure(verdict), 3)


def show_backups(site: Site) -> None:
    """``backups``: the table of the host's backups, each file's sha256 checked again; exit 1 on a mismatch."""
    settings = site_settings(site, None)
    found = inventory(datajob.DataShell(site), settings, sizes=True)
    output.table(f"backups on {site.config.name}", ["time (UTC)", "kind", "size", "release", "verified", "blobs"],
                 rows(settings, found))
    failed = 0
    for stamp, check in sorted((found.data.get("checksums") or {}).items()):
        failed += bool(check["corrupted"] or check["missing"])
        lines = [*(f"CORRUPTED (backup {readable(stamp)}, not the sha256 recorded): {p}" for p in check["corrupted"]),
                 *(f"MISSING (backup {readable(stamp)}, recorded but gone): {p}" for p in check["missing"])]
        for line in lines:  # a path is never folded: it can be copied from the terminal
            output.console.print(escape(line), soft_wrap=True)
    if failed:
        raise Exit(f"{failed} backup(s) on {site.config.name} failed their sha256 check: "
                   f"do not restore them; take a full backup (fab -H {site.config.name} backup --full)", 1)


# -- on this machine -------------------------------------------------------

def local_settings(directory: Path, dry: bool = False, **options) -> Settings:
    """Settings for data on this machine: a site's root on its host (``current/``, ``var/``,
    backups in ``backups/``) or a buildout directory (backups in ``var/backups/``)."""
    directory = directory.resolve()
    if not directory.is_dir():
        raise BackupError(f"{directory} is not a directory")
    if (directory / "current").is_dir() and (directory / "var").is_dir():
        repozo, backups_dir = directory / "current" / "bin" / "repozo", directory / "backups"
        options.setdefault("release", (directory / "current").resolve().name)
        options.setdefault("log", str(directory / "deploy.log"))
    else:
        built = directory / "bin" / "repozo"
        repozo = built if built.exists() else Path(sys.executable).parent / "repozo"
        backups_dir = directory / "var" / "backups"
    return layout(str(directory / "var"), str(backups_dir), str(repozo), sys.executable, dry=dry, **options)


def here_settings(directory: str | None, host: str | None, dry: bool = False, **options) -> Settings:
    """What ``invoke backup``/``restore`` use on this machine, so that they write the chain ``fab backup``
    writes, under its lock: with ``--host``, the site that hostconfig names (its root must be here); on a
    site's root (``--directory``, or the root of the default ``sandbox`` host), the settings the deploy left
    there (``current/.deploy/backup-job/settings.json``), else its hostconfig's; on a buildout directory,
    its ``var/`` with backups in ``var/backups``."""
    if directory and not host:
        path = Path(directory).resolve()
        left = path / "current" / schedule.JOB_DIR / "settings.json"
        if left.is_file():
            return job_layout(json.loads(left.read_text()), (path / "current").resolve().name, dry=dry, **options)
        return local_settings(path, dry, **options)
    try:
        config = hostconfig.resolve(host or "sandbox")
    except hostconfig.ConfigError as error:
        raise BackupError(str(error)) from None
    root = Path(config.root)
    if directory and Path(directory).resolve() != root:
        raise BackupError(f"--directory {directory} is not the root of host {config.name} ({config.root}): give one")
    if not (root / "current").is_dir():
        raise BackupError(f"the site of {config.name} is {config.root} on {config.address}, not deployed on this "
                          f"machine: run invoke backup there (--directory {config.root}), or fab -H {config.name} "
                          f"backup from here; for a buildout here, --directory DIR")
    left = root / "current" / schedule.JOB_DIR / "settings.json"
    if not host and left.is_file():
        return job_layout(json.loads(left.read_text()), (root / "current").resolve().name, dry=dry, **options)
    return dataclasses.replace(config_settings(config, (root / "current").resolve().name, dry), **options)


def local_hooks(c, settings: Settings, quiet: bool = False) -> Hooks:
    """Hooks for ``invoke backup``/``restore``: a site's deploy.log when there is one."""
    def log(event: str, record: dict) -> None:
        if settings.log:
            line = {"time": datetime.now(timezone.utc).isoformat(timespec="seconds"), "event": event,
                    "who": who(), **record}
            run(c, commands.append_line(settings.log, json.dumps(line, sort_keys=True)))
    return Hooks(quiet=quiet, log=log)
