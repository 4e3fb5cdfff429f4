"""What ``fab status`` reads on one host, and the exit code it gives a monitor."""
from __future__ import annotations

import json

from invoke import Exit

from .. import commands, output
from ..remote.site import Site
from .services import health_command, live, status_command

# ``fab status`` exit codes, for a monitor (README: "fab status for a monitor"); 2 is a config error
NOTHING_DEPLOYED, PROGRAM_DOWN, HEALTH_FAILING, LAST_RUN_FAILED = 1, 3, 4, 5


def last_backup_command(config) -> str:
    """The newest backup line of ``deploy.log`` (a verified backup, or a scheduled one that failed)."""
    return (commands.join("grep", "-E", '"event": "backup(-failed)?"', config.path_on_host("deploy.log"))
            + " 2>/dev/null | " + commands.join("tail", "-n", "1"))


def trouble_code(deployed: bool, programs_down: bool, health_failed: bool, last_switch: dict | None,
                 last_backup: dict | None) -> int:
    """The exit code of ``fab status``: the worst trouble found, 0 when there is none."""
    if not deployed:
        return NOTHING_DEPLOYED
    if programs_down:
        return PROGRAM_DOWN
    if health_failed:
        return HEALTH_FAILING
    if (last_switch and last_switch.get("result") not in (None, "ok")) or \
            (last_backup and last_backup.get("event") == "backup-failed"):
        return LAST_RUN_FAILED
    return 0


def status_site(site: Site) -> None:
    """Show what runs on one host, and whether each health URL answers; exit by the worst trouble."""
    facts = site.facts()
    output.say(f"current release: {facts.current or 'none'}"
               + (f" (the {facts.color} set serves)" if site.config.switch == "bluegreen" else ""))
    if facts.current is None:
        raise Exit(f"nothing is deployed on {site.config.name}", NOTHING_DEPLOYED)
    if facts.last_switch:
        last = facts.last_switch
        output.say(site.config.redact(f"last switch: to {last.get('release')} at {last.get('finished')}: "
                                      f"{last.get('result')}" + (f" ({last['error']})" if last.get("error") else "")))
    found = site.run(last_backup_command(site.config), changes=False, warn=True)
    last_backup = json.loads(found.stdout) if found.stdout.strip() else None
    if last_backup:
        output.say(site.config.redact(
            f"last backup: {last_backup.get('time')}: "
            + (f"failed ({last_backup.get('error')})" if last_backup["event"] == "backup-failed"
               else f"{last_backup.get('kind')} {last_backup.get('stamp')}, verified")))
    result = site.run(status_command(site), changes=False, warn=True)
    output.say(result.stdout.rstrip() or "the process manager is not running")
    urls = [url for _, url in live(site) if url]
    health = site.run(health_command(site, urls, 3), changes=False, warn=True)
    data = json.loads(health.stdout or "{}")
    rows = [[site.config.redact(url), site.config.redact(
        "ok" if url in data.get("answered", {}) else data.get("failed", {}).get(url, "?"))] for url in urls]
    output.table("health", ["url", "answer"], rows)
    code = trouble_code(True, bool(result.exited), bool(data.get("failed")) or (bool(urls) and not data),
                        facts.last_switch, last_backup)
    if code:
        raise Exit({PROGRAM_DOWN: "a program is not running", HEALTH_FAILING: "a health URL does not answer",
                    LAST_RUN_FAILED: "the site runs, but the last switch or the last backup failed"}[code], code)
