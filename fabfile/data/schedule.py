"""Scheduled backups: ``[backup] schedule_incremental`` / ``schedule_full`` as a cron entry on the host.

**Cron, not a systemd timer.** The deploy logs in as a normal user. A ``systemctl
--user`` timer runs only while that user has a session, unless root has enabled
lingering (``loginctl enable-linger``); a system timer needs root. Cron runs any
user's crontab with no session and no root, on every Debian and Ubuntu host (the
``cron`` package). So the entry goes into the deploy login's crontab, between two
marker lines that name the site's root, and nothing else of that crontab is touched.
Where the host has no ``crontab`` command, or the data belongs to another
``app_user`` (whose crontab we cannot write without root), the lines are written to
``<release>/.deploy/backup-job/crontab`` and the deploy says how to install them.

**A shipped job, not our fabfile.** The host has no Fabric, and should not need it
for a backup at 3 a.m. The backup engine (``backupengine``) and the modules it uses
(``repozo``, ``retention``, ``commands``, ``onhost``) are standard library only, so
they are copied as they are into ``<release>/.deploy/backup-job/deploybackup/``
beside a small runner (``onhost/backupjob.py``, as ``run.py``) and ``settings.json``
(the hostconfig's ``[backup]``). The job is therefore the very code ``fab backup``
runs (same lock, verification, retention, records), and it belongs to the release:
the cron line runs ``<root>/current/.deploy/backup-job/run.py``, so a rollback brings
back the job of that release with its code. It logs to ``deploy.log`` and syslog.
"""
from __future__ import annotations

import hashlib
import io
import json
import re
import shlex
import tarfile
import tempfile
from pathlib import Path

from invoke import Exit

from .. import commands
from ..backups import offsite
from ..config import schema
from ..config.hostconfig import HostConfig, secret_pattern
from ..remote.site import Site

PACKAGE = Path(__file__).resolve().parent.parent  # fabfile/: the job ships its paths as they are here
JOB_DIR = ".deploy/backup-job"                # inside a release
JOB_MODULES = ("__init__.py", "commands.py", "backups/__init__.py", "backups/engine.py", "backups/inventory.py",
               "backups/lock.py", "backups/blobs.py", "backups/restore.py", "backups/repozo.py", "backups/retention.py",
               "backups/offsite.py",
               "onhost/__init__.py", "onhost/backups.py", "onhost/zodbcheck.py", "onhost/deltacheck.py",
               "onhost/tailrecover.py", "onhost/health.py")
NAMED = {  # minute, hour, day of month, month, day of week
    "hourly": ("15", "*", "*", "*", "*"),
    "daily": ("15", "3", "*", "*", "*"),
    "weekly": ("15", "3", "*", "*", "0"),
    "monthly": ("15", "3", "1", "*", "*"),
}
CRON_FIELD = schema.CRON_FIELD  # the config checks the same at load time


class ScheduleError(Exception):
    """A schedule that cron cannot take; the message names the key."""


def cron_fields(key: str, value: str) -> tuple[str, ...]:
    """``daily`` (and hourly, weekly, monthly) or five cron fields, checked."""
    if value in NAMED:
        return NAMED[value]
    fields = tuple(value.split())
    if len(fields) != 5 or not all(CRON_FIELD.fullmatch(f) for f in fields):
        raise ScheduleError(f"[backup] {key} = {value!r}: use {', '.join(NAMED)} or five cron fields "
                            f"('15 3 * * 1-6')")
    return fields


RANK = {"hourly": 0, "daily": 1, "weekly": 2, "monthly": 3}


def schedules(incremental: str | None, full: str | None) -> list[tuple[tuple[str, ...], bool]]:
    """(cron fields, full?) for each entry. Named schedules never start two backups at once: a full
    at least as frequent leaves no incremental; otherwise the incremental skips the full's slot
    (its day at 03:15, its hour for an hourly one)."""
    entries = []
    fields = cron_fields("schedule_incremental", incremental) if incremental else None
    full_fields = cron_fields("schedule_full", full) if full else None
    if fields and incremental in RANK and full in RANK:
        minute, hour, day, month, weekday = fields
        if RANK[full] <= RANK[incremental]:
            fields = None
        elif incremental == "hourly":
            fields = (minute, "0-2,4-23", day, month, weekday)
        elif incremental == "daily":
            fields = (minute, hour, "2-31", month, weekday) if full == "monthly" else (minute, hour, day, month, "1-6")
        else:  # weekly, with a monthly full: an hour earlier
            fields = (minute, "2", day, month, weekday)
    if fields:
        entries.append((fields, False))
    if full_fields:
        entries.append((full_fields, True))
    return entries


def job_command(root: str, python: str, full: bool) -> str:
    """What cron runs: the job of the current release, quiet unless something fails."""
    run = f"{root}/current/{JOB_DIR}/run.py"
    return commands.and_then(commands.join("cd", root),
                             commands.join(python, run, *(("--full",) if full else ()), "--quiet"))


def marker(root: str, end: bool = False) -> str:
    return f"# {'END' if end else 'BEGIN'} buildout-deploy backups of {root}"


def cron_block(config: HostConfig) -> str:
    """The crontab lines for a site, between its markers; "" when it has no schedule."""
    try:
        entries = schedules(config.backup_schedule_incremental, config.backup_schedule_full)
    except ScheduleError as error:
        raise Exit(f"{config.path}: {error}", 2)
    if not entries:
        return ""
    lines = [marker(config.root) + " (written by fab deploy from [backup]; change the hostconfig, not this)"]
    lines += [f"{' '.join(fields)} {job_command(config.root, config.python, full)}" for fields, full in entries]
    return "\n".join([*lines, marker(config.root, end=True)]) + "\n"


def merged_crontab(existing: str, root: str, block: str) -> str:
    """``existing`` with this site's block replaced by ``block`` (or removed when it is ""); every
    other line kept as it was."""
    kept, inside = [], False
    for line in existing.splitlines():
        if line.startswith(marker(root)):
            inside = True
        elif inside and line.startswith(marker(root, end=True)):
            inside = False
        elif not inside:
            kept.append(line)
    text = "\n".join(kept).rstrip("\n")
    text = f"{text}\n" if text else ""
    return text + (("\n" if text and block else "") + block)


def job_settings(config: HostConfig) -> dict:
    """``settings.json`` of the job: where the data and the backups are, the ``[backup]`` options, and the
    ``[notify]`` webhook a failed backup posts to, with the pattern that takes the secrets out of what it
    sends (the file is 0600: the URL's token never shows in a command line)."""
    zeopack = shlex.split(config.backup_zeopack)
    if zeopack and not zeopack[0].startswith("/"):
        zeopack[0] = config.path_on_host("current", zeopack[0])
    return {"root": config.root, "data": config.path_on_host("var"), "backups": config.backups_dir,
            "repozo": config.path_on_host("current", "bin", "repozo"), "python": config.python,
            "log": config.path_on_host("deploy.log"), "syslog": config.syslog,
            "zeopack_before_full": config.backup_zeopack_before_full, "pack_days": config.backup_pack_days,
            "zeopack": zeopack, "options": config.backup_options, "full": config.backup_full,
            "notify": {"webhook": config.webhook, "host": config.name, "address": config.address},
            "secret_pattern": secret_pattern(config.secrets).pattern if config.secrets else None,
            "offsite": offsite.as_settings(config.offsite)}


def code_files() -> dict[str, bytes]:
    """The job's code: its runner and the engine, as they are shipped."""
    files = {"run.py": (PACKAGE / "onhost" / "backupjob.py").read_bytes()}
    files.update({f"deploybackup/{name}": (PACKAGE / name).read_bytes() for name in JOB_MODULES})
    files["deploybackup/__init__.py"] = b'"""The backup engine of buildout-deploy, shipped for the backup job."""\n'
    return files


def archive(files: dict[str, bytes]) -> tuple[bytes, str]:
    """``files`` as a reproducible tar.gz (sorted, fixed times; settings readable by us only) and its digest."""
    digest = hashlib.sha256(b"".join(name.encode() + b"\0" + data for name, data in sorted(files.items())))
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz", format=tarfile.PAX_FORMAT) as tar:
        for name, data in sorted(files.items()):
            info = tarfile.TarInfo(name)
            info.size, info.mtime = len(data), 0
            info.mode = {"run.py": 0o755, "settings.json": 0o600}.get(name, 0o644)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue(), digest.hexdigest()


def job_archive(config: HostConfig, crontab: str) -> tuple[bytes, str]:
    """The scheduled job: its code, ``settings.json`` and the crontab lines."""
    return archive({**code_files(), "crontab": crontab.encode(),
                    "settings.json": json.dumps(job_settings(config), indent=1, sort_keys=True).encode()})


def install_schedule(site: Site, release_id: str | None = None) -> str:
    """Put the backup job into the release (``current`` by default) and the site's cron lines into the
    deploy login's crontab; a second run with nothing changed changes nothing. What it did, in words."""
    config = site.config
    release_id = release_id or site.facts().current
    if not release_id:
        return "no release yet: no backup schedule"
    block = cron_block(config)
    job_dir = site.path("releases", release_id, JOB_DIR)
    data, digest = job_archive(config, block)
    said = []
    present = site.run(commands.join("cat", f"{job_dir}/DIGEST"), changes=False, warn=True)
    if present is None or present.stdout.strip() != digest:  # also without a schedule: invoke backup reads it
        with tempfile.TemporaryDirectory() as here:
            local = Path(here) / "backup-job.tar.gz"
            local.write_bytes(data)
            incoming = site.path("releases", release_id, ".deploy", "backup-job.tar.gz")
            site.run(commands.make_directories(site.path("releases", release_id, ".deploy")))
            site.put(local, incoming)
        site.run(commands.and_then(commands.remove(f"{job_dir}.new"), commands.make_directories(f"{job_dir}.new"),
                                   commands.join("tar", "-xzf", incoming, "-C", f"{job_dir}.new"),
                                   commands.write_file(f"{job_dir}.new/DIGEST", digest + "\n"),
                                   commands.remove(job_dir, incoming), commands.join("mv", "-T", f"{job_dir}.new",
                                                                                     job_dir)))
        said.append(f"backup job written to {job_dir}")
    has_crontab = site.run("command -v crontab", changes=False, warn=True)
    if config.app_user != config.user or (has_crontab is not None and has_crontab.exited):
        if block:
            why = (f"the data belongs to {config.app_user}" if config.app_user != config.user
                   else "the host has no crontab command (apt-get install cron)")
            said.append(f"{why}: add the lines of {job_dir}/crontab to the crontab of {config.app_user}, "
                        f"e.g. sudo crontab -u {config.app_user} -e")
        return "; ".join(said) or "no backup schedule"
    existing = site.run("crontab -l 2>/dev/null", changes=False, warn=True)
    current_text = existing.stdout if existing is not None and not existing.exited else ""
    wanted = merged_crontab(current_text, config.root, block)
    if wanted == current_text or (not current_text and not wanted):
        said.append("crontab unchanged" if block else "no backup schedule")
    else:
        site.run(f"printf %s {shlex.quote(wanted)} | crontab -")
        said.append(("crontab: " + ", ".join(" ".join(f) + (" full" if full else " incremental") for f, full in
                                             schedules(config.backup_schedule_incremental,
                                                       config.backup_schedule_full)))
                    if block else "crontab: backup schedule removed")
    return "; ".join(said)


def schedule_site(site: Site, remove: bool) -> str:
    """``schedule``: install the site's backup job and cron lines, or (``remove``) take its lines out; in words."""
    if not remove:
        return install_schedule(site)
    existing = site.run("crontab -l 2>/dev/null", changes=False, warn=True)
    text = existing.stdout if existing is not None and not existing.exited else ""
    wanted = merged_crontab(text, site.config.root, "")
    if wanted == text:
        return "nothing to remove: no backup schedule in the crontab"
    site.run(f"printf %s {shlex.quote(wanted)} | crontab -")
    return "backup schedule removed from the crontab"
