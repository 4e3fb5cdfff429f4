"""``backup``, ``backups``, ``restore``, ``copy-data``, ``schedule``: the site's data, where its backups are."""
from __future__ import annotations

import shlex
from pathlib import Path

from fabric import task
from invoke import Exit
from rich.markup import escape

from .. import output
from ..arguments import optional_positional
from ..backups.repozo import BackupError, parse_date, readable
from ..backups.restore import LATEST, choose, question
from ..config import fleet as fleetconfig
from ..config import hostconfig
from ..config.hostconfig import ConfigError
from ..data import backup as backups
from ..data import copydata as copies
from ..data import fleetclients
from ..data import job as datajob
from ..data import restore as restores
from ..data import schedule as schedules
from ..paths import EXAMPLE
from ..remote.site import Site, open_site


@task(help={**backups.BACKUP_HELP, "force_unlock": "remove the backup lock first, whatever holds it"})
def backup(c, full=False, snapshot=False, zip=False, quiet=False, force_unlock=False):
    """Back up the site's filestorages and blobs on the host, verified, tagged with the release."""
    site = open_site(c, role="backup")
    if zip and not site.config.backup_enable_zipbackup:
        raise Exit(f"backup --zip is turned off: {site.config.path}: [backup] enable_zipbackup = false", 2)
    facts = site.facts()
    settings = backups.site_settings(site, facts.current, zip=zip)
    if site.dry:
        output.say(f"\\[dry] would back up {', '.join(s.live for s in settings.storages)} and {settings.blobstorage}")
        return
    verdict = datajob.run(site, "backup", release=facts.current, full=full, snapshot=snapshot, zip=zip, quiet=quiet,
                          force_unlock=force_unlock)
    if verdict["result"] != "ok":
        raise Exit(verdict.get("error", "the backup failed"), 1)
    if backups.offsite_failure(verdict):
        raise Exit(backups.offsite_failure(verdict), 3)


@task(name="backups")
def list_backups(c):
    """Show the backups on the host: time, kind, size, release, verified (each file's sha256 re-checked)."""
    site = open_site(c, role="backup")
    settings = backups.site_settings(site, None)
    found = backups.inventory(datajob.DataShell(site), settings, sizes=True)
    output.table(f"backups on {site.config.name}", ["time (UTC)", "kind", "size", "release", "verified", "blobs"],
                 backups.rows(settings, found))
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


@task(positional=["date"],
      help={**restores.RESTORE_HELP, "force_unlock": "remove the backup lock first, whatever holds it"})
def restore(c, date=None, snapshot=False, zip=False, from_=None, alternative=False, no_prompt=False,
            force_unlock=False):
    """Restore a backup on the host (the newest without a date), stopping and starting the services."""
    site = open_site(c, role="backup")
    restores.refused(site.config, snapshot, zip)
    try:
        wanted = None if date in (None, "", LATEST) else parse_date(date)
    except BackupError as error:
        raise Exit(f"restore: {error}", 2)
    if from_ == "offsite":
        if zip or alternative:
            raise Exit("restore --from offsite: not with --zip or --alternative", 2)
        return restores.restore_from_offsite(site, wanted, no_prompt, force_unlock, from_, snapshot)
    source = restores.source_of(site.config, from_, alternative)
    settings = backups.site_settings(site, None, zip=zip, source=source)
    found = backups.inventory(datajob.DataShell(site), settings)
    try:
        chosen, _ = choose(settings, found, wanted, snapshot or zip)
    except BackupError as error:
        raise Exit(str(error), 1)
    if not ((lambda text: True) if no_prompt else restores.ask)(question(settings, found, chosen, snapshot or zip)):
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


optional_positional(restore, "date")


@task(name="copy-data",
      help={"to": f"the hostconfig of the site that gets the data, or {copies.LOCAL} (a buildout on this machine)",
            "directory": f"with --to {copies.LOCAL}: the buildout directory (default: example/)",
            "no_prompt": "do not ask for yes first"})
def copy_data(c, to=None, directory=str(EXAMPLE), no_prompt=False):
    """Copy a fresh snapshot of this site's data to another site (--to staging, --to local)."""
    if not to:
        raise Exit(f"name the site that gets the data: --to STAGE (a hostconfig: "
                   f"{', '.join(hostconfig.available())}) or --to {copies.LOCAL}", 2)
    source = open_site(c)
    if to == copies.LOCAL:
        describe = f"the buildout in {directory}"
    else:
        try:
            target_config = hostconfig.resolve(to)
        except ConfigError as error:
            raise Exit(str(error), 2)
        if (target_config.address, target_config.port, target_config.root) == (
                source.config.address, source.config.port, source.config.root):
            raise Exit(f"{to} is {source.config.name} itself: copy-data needs another site", 2)
        describe = target_config.name
    if source.dry:
        output.say(f"[dry] would snapshot {source.config.name}'s data and restore it over {describe}")
        return
    target = None
    confirm = (lambda text: True) if no_prompt else restores.ask
    try:
        if to == copies.LOCAL:
            receiver = copies.local_receiver(Path(directory).resolve())
        else:
            target = Site(c, target_config)
            receiver = copies.site_receiver(target)
        if target:
            with restores.with_maintenance_page(target):
                details = copies.copy_data_between(source, receiver, confirm)
        else:
            details = copies.copy_data_between(source, receiver, confirm)
    except BackupError as error:
        raise Exit(str(error), 1)
    finally:
        if target:
            target.close()
    output.say(f"[bold green]copied the data of {source.config.name} (snapshot {readable(details['stamp'])} UTC) "
               f"to {receiver.name}[/]; its data from before is kept as {details['kept_aside']}")


@task(help={"remove": "take this site's lines out of the crontab"})
def schedule(c, remove=False):
    """Install the [backup] schedule on the host: the backup job and its crontab lines."""
    site = open_site(c, role="backup")
    if remove:
        existing = site.run("crontab -l 2>/dev/null", changes=False, warn=True)
        text = existing.stdout if existing is not None and not existing.exited else ""
        wanted = schedules.merged_crontab(text, site.config.root, "")
        if wanted == text:
            output.say("nothing to remove: no backup schedule in the crontab")
            return
        site.run(f"printf %s {shlex.quote(wanted)} | crontab -")
        output.say("backup schedule removed from the crontab")
        return
    output.say(schedules.install_schedule(site))
