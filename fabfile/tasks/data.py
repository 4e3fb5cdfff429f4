"""``backup``, ``backups``, ``restore``, ``copy-data``, ``schedule``: the site's data, where its backups are.

Like every module of ``tasks/``, it imports its engines inside the tasks: ``fab --list`` reads only
the names, the help and the arguments, and a task loads only what it runs.
"""
from __future__ import annotations

from fabric import task

from ..arguments import optional_positional
from ..data.helptexts import BACKUP_HELP, RESTORE_HELP
from ..paths import EXAMPLE


@task(help={**BACKUP_HELP, "force_unlock": "remove the backup lock first, whatever holds it"})
def backup(c, full=False, snapshot=False, zip=False, quiet=False, force_unlock=False):
    """Back up the site's filestorages and blobs on the host, verified, tagged with the release."""
    from ..data.backup import backup_site
    from ..remote.site import open_site
    backup_site(open_site(c, role="backup"), full, snapshot, zip, quiet, force_unlock)


@task(name="backups")
def list_backups(c):
    """Show the backups on the host: time, kind, size, release, verified (each file's sha256 re-checked)."""
    from ..data.backup import show_backups
    from ..remote.site import open_site
    show_backups(open_site(c, role="backup"))


@task(positional=["date"],
      help={**RESTORE_HELP, "force_unlock": "remove the backup lock first, whatever holds it"})
def restore(c, date=None, snapshot=False, zip=False, from_=None, alternative=False, no_prompt=False,
            force_unlock=False):
    """Restore a backup on the host (the newest without a date), stopping and starting the services."""
    from ..data.restore import restore_site
    from ..remote.site import open_site
    restore_site(c, open_site(c, role="backup"), date, snapshot, zip, from_, alternative, no_prompt, force_unlock)


optional_positional(restore, "date")


@task(name="copy-data",
      help={"to": "the hostconfig of the site that gets the data, or local (a buildout on this machine)",
            "directory": "with --to local: the buildout directory (default: example/)",
            "no_prompt": "do not ask for yes first"})
def copy_data(c, to=None, directory=str(EXAMPLE), no_prompt=False):
    """Copy a fresh snapshot of this site's data to another site (--to staging, --to local)."""
    from ..data.copydata import copy_data
    copy_data(c, to, directory, no_prompt)


@task(help={"remove": "take this site's lines out of the crontab"})
def schedule(c, remove=False):
    """Install the [backup] schedule on the host: the backup job and its crontab lines."""
    from .. import output
    from ..data.schedule import schedule_site
    from ..remote.site import open_site
    output.say(schedule_site(open_site(c, role="backup"), remove))
