"""Backups and restores as jobs on the host: they finish, or undo what they wrote, without us.

``fab backup``, the deploy's backup before the switch, ``fab restore`` and ``rollback
--with-data`` ship the backup job's code once per version (``<root>/.jobs/code-<digest>/``,
the same runner and engine cron runs), write a private plan and start the job
detached (``jobs.run``), then print its log until its verdict. Ctrl-C, SIGKILL or a
dropped connection leave the job to finish on the host: a backup completes (or
removes what it wrote), a restore swaps and starts the site (or leaves the live data
as it was); the next command finds the backup lock free, or held by a live job.
"""
from __future__ import annotations

import shlex
import tempfile
from pathlib import Path

from invoke import Exit

from .. import commands
from ..front import haproxy as front
from ..remote import jobs
from . import schedule
from ..switch import services
from ..programs import supervisor, systemd
from ..config.hostconfig import secret_pattern
from ..remote.site import Site

KEEP_JOBS = 20


def state_dir(site: Site) -> str:
    return site.path(".jobs")


def ship_code(site: Site) -> str:
    """The job's code on the host (uploaded only when this version is not there); its directory."""
    data, digest = schedule.archive(schedule.code_files())
    directory = f"{state_dir(site)}/code-{digest[:16]}"
    if not site.run(commands.join("test", "-f", f"{directory}/run.py"), changes=False, warn=True).exited:
        return directory
    with tempfile.TemporaryDirectory() as here:
        local = Path(here) / "job.tar.gz"
        local.write_bytes(data)
        site.put(local, f"{directory}.tar.gz")
    site.run(commands.and_then(
        commands.remove(f"{directory}.new"), commands.make_directories(f"{directory}.new"),
        commands.join("tar", "-xzf", f"{directory}.tar.gz", "-C", f"{directory}.new"),
        commands.remove(f"{directory}.tar.gz"), commands.join("mv", "-T", f"{directory}.new", directory)))
    return directory


def prune(site: Site) -> str:
    """Keep the newest jobs' plans, logs and verdicts, and the newest versions of the code (a job
    still running from an older one keeps it)."""
    directory = state_dir(site)
    return (f"cd {shlex.quote(directory)} && "
            f"ls -1t -- *.log 2>/dev/null | tail -n +{KEEP_JOBS + 1} | while read -r log; do "
            f"rm -f -- \"$log\" \"${{log%.log}}.json\" \"${{log%.log}}.result.json\"; done; "
            f"ls -1td -- code-* 2>/dev/null | tail -n +4 | xargs -r rm -rf --; true")


def data_owner(site: Site) -> str | None:
    """Who the data's commands run as: a separate ``app_user`` (the deploy user cannot read its data), or None."""
    return site.config.app_user if site.config.app_user and site.config.app_user != site.config.user else None


class DataShell:
    """``site.connection`` for the backup engine's reads on this side (``inventory``): as the data's owner."""

    def __init__(self, site: Site):
        self.site, self.owner = site, data_owner(site)

    def run(self, command: str, **options):
        return self.site.connection.run(commands.as_user(self.owner, command), **options)


def _manager(site: Site):
    return {"supervisor": supervisor, "systemd": systemd}[site.config.manager]


def site_commands(site: Site, maintenance: bool) -> dict:
    """How a restore job stops and starts the site, and checks it: commands built here."""
    config, manager = site.config, _manager(site)
    serving = services.live(site)  # blue/green: the live set
    names = [name for name, _, _ in supervisor.processes(config)] if config.manager == "supervisor" \
        else [p.name for p in config.programs]
    on = [front.maintenance_command(config, True)] if maintenance and config.front else []
    return {"stop": [*on, manager.stop(config, list(reversed(names)))],
            "start": [manager.start(config, [name for name, _ in serving])],
            "finally": [front.maintenance_command(config, False)] if maintenance and config.front else [],
            "health": {"urls": [url for _, url in serving if url], "timeout": config.health_timeout,
                       "status": services.status_command(site)}}


def run(site: Site, action: str, **plan) -> dict:
    """Run a backup or restore job on the host and follow it; its verdict (``record`` when ok)."""
    directory = state_dir(site)
    site.run(commands.and_then("umask 077", commands.make_directories(directory, mode="0700"), prune(site)))
    code = ship_code(site)
    job = jobs.new_job_id()
    plan = {"action": action, "job": job, "python": site.config.python, "result": f"{directory}/{job}.result.json",
            "settings": schedule.job_settings(site.config), "as_user": data_owner(site),
            "secret_pattern": secret_pattern(site.config.secrets).pattern if site.config.secrets else None, **plan}
    try:
        return jobs.run(site, directory, job, plan, f"{code}/run.py", what=f"{action} job")
    except jobs.Interrupted:
        raise Exit(f"interrupted: the {action} goes on on the host and finishes by itself "
                   f"(its log: {directory}/{job}.log)", 130) from None
