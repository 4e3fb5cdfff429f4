"""Restores on a host (``restore``, ``rollback --with-data``), run by the job on the host.

The engine (``restoreengine``) recovers into ``.restoring`` copies while the site serves,
then stops it, swaps the data (the live data kept aside) and starts it. Here we choose
the backup and ask, and the job (``datajob``) does the rest on the host: a client that
dies half-way leaves a restore that finishes, with the site started again.
"""
from __future__ import annotations

import sys
from contextlib import contextmanager

from invoke import Exit

from . import fleetclients, job as datajob
from ..front import haproxy as front
from .. import output
from ..switch import services
from .backup import Hooks, inventory, site_hooks, site_settings
from ..backups.repozo import BackupError, parse_date
from ..backups.restore import choose, LATEST, question, restore_backup  # noqa: F401  (tasks.py, copydata.py)
from ..config import fleet as fleetconfig
from ..remote.site import Site


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
    found = inventory(datajob.DataShell(site), settings)
    wanted = backup_record_or_release_id
    if isinstance(wanted, dict):
        stamp = wanted["stamp"]
    else:
        tagged = [s for s, r in found.records.items() if r.get("release") == wanted and r.get("verified")
                  and r.get("kind") != "snapshot"]
        if not tagged:
            raise Exit(f"no verified backup tagged with release {wanted} (see: fab -H {site.config.name} backups)", 1)
        stamp = max(tagged)
    with output.step(f"restore the data of {stamp}"):
        verdict = datajob.run(site, "restore", date=stamp, leave_stopped=True,
                              **datajob.site_commands(site, maintenance=False))
    if verdict["result"] != "ok":
        raise Exit(f"rollback --with-data: {verdict.get('error')}", 1)
    return verdict["record"]


def restore_from_offsite(site: Site, wanted: str | None, no_prompt: bool, force_unlock: bool, source: str,
                         snapshot: bool) -> None:
    """``restore --from offsite``: the job fetches the offsite copies, checks the chain it restores, restores."""
    config = site.config
    if source != "offsite" or snapshot:
        raise Exit(f"restore: --from takes offsite (and no --snapshot: snapshots are not copied offsite), "
                   f"not {source!r}", 2)
    if not config.offsite:
        raise Exit(f"restore --from offsite: {config.path} has no [backup] offsite", 2)
    question_text = (f"Restore the offsite backup {'of ' + wanted if wanted else 'newest'} from {config.offsite} "
                     f"over the live data of {config.name}?\nThe live data is kept aside, not deleted. "
                     f"Type yes to go on: ")
    if not ((lambda text: True) if no_prompt else ask)(question_text):
        raise Exit("restore cancelled: nothing changed", 1)
    if site.dry:
        output.say(f"\\[dry] would fetch the backups from {config.offsite} and restore {wanted or 'the newest'}")
        return
    verdict = datajob.run(site, "restore", date=wanted, from_offsite=True, force_unlock=force_unlock,
                          **datajob.site_commands(site, maintenance=True))
    if verdict["result"] != "ok":
        raise Exit(verdict.get("error", "the restore from offsite failed"), 1)


def source_of(config, from_: str | None, alternative: bool) -> str | dict | None:
    """Where a restore takes its backups from: ``--from DIR`` (a copy of the backups), ``--alternative``
    (``[backup] alternative_restore_source``), else the site's own backups (None)."""
    if from_ and alternative:
        raise Exit("restore: give --from DIR or --alternative, not both", 2)
    if alternative and not config.backup_alternative_source:
        raise Exit(f"restore --alternative: {config.path} has no [backup] alternative_restore_source "
                   f"(Data FSBACKUPS [BLOBBACKUPS])", 2)
    if from_ and (not from_.startswith("/") or ".." in from_.split("/")):
        raise Exit(f"restore --from: {from_!r} is neither offsite nor an absolute path on the host without '..'", 2)
    return from_ or (dict(config.backup_alternative_source) if alternative else None)


def refused(config, snapshot: bool, zip: bool) -> None:
    """What ``[backup] enable_snapshotrestore``/``enable_zipbackup = false`` turn off."""
    if snapshot and not config.backup_enable_snapshotrestore:
        raise Exit(f"restore --snapshot is turned off: {config.path}: [backup] enable_snapshotrestore = false", 2)
    if zip and not config.backup_enable_zipbackup:
        raise Exit(f"--zip is turned off: {config.path}: [backup] enable_zipbackup = false", 2)


def restore_site(c, site: Site, date: str | None, snapshot: bool, zip: bool, from_: str | None, alternative: bool,
                 no_prompt: bool, force_unlock: bool) -> None:
    """``restore``: choose the backup, ask, and let the job on the host restore it (a fleet's clients stopped)."""
    refused(site.config, snapshot, zip)
    try:
        wanted = None if date in (None, "", LATEST) else parse_date(date)
    except BackupError as error:
        raise Exit(f"restore: {error}", 2)
    if from_ == "offsite":
        if zip or alternative:
            raise Exit("restore --from offsite: not with --zip or --alternative", 2)
        return restore_from_offsite(site, wanted, no_prompt, force_unlock, from_, snapshot)
    source = source_of(site.config, from_, alternative)
    settings = site_settings(site, None, zip=zip, source=source)
    found = inventory(datajob.DataShell(site), settings)
    try:
        chosen, _ = choose(settings, found, wanted, snapshot or zip)
    except BackupError as error:
        raise Exit(str(error), 1)
    if not ((lambda text: True) if no_prompt else ask)(question(settings, found, chosen, snapshot or zip)):
        raise Exit("restore cancelled: nothing changed", 1)
    if site.dry:
        output.say(f"\\[dry] would restore {chosen}")
        return
    options = dict(date=chosen if wanted else None, snapshot=snapshot, zip=zip, source=source,
                   force_unlock=force_unlock, **datajob.site_commands(site, maintenance=True))
    if site.config.member:  # a fleet: the clients on the app hosts stop too
        with fleetclients.clients_stopped(c, fleetconfig.for_host(c)):
            verdict = datajob.run(site, "restore", **options)
    else:
        verdict = datajob.run(site, "restore", **options)
    if verdict["result"] != "ok":
        raise Exit(verdict.get("error", "the restore failed"), 1)
