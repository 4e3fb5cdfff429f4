"""What ``fab status`` reads on each host, how it shows one host, and the exit code it gives a monitor.

One read of what runs (``observed.read_settled``: a second look only where a program is young),
the differences from what the hostconfig wants (``drift``), the health URLs, the last switch and
the last backup; the exit code is the worst kind of trouble found, 0 only when there is none.
"""
from __future__ import annotations

import json
from dataclasses import dataclass

from .. import output
from ..remote.events import last_backup_command
from ..remote.site import Facts, Site
from ..switch.services import health_command, live
from . import drift, observed
from .drift import (FRONT_WRONG, HEALTH_FAILING, LAST_RUN_FAILED, MAINTENANCE_ON, NOTHING_DEPLOYED, PORT_TAKEN,
                    PROGRAM_DOWN)

WORST_FIRST = (NOTHING_DEPLOYED, PROGRAM_DOWN, PORT_TAKEN, FRONT_WRONG, HEALTH_FAILING, MAINTENANCE_ON,
               LAST_RUN_FAILED)
SAID = {NOTHING_DEPLOYED: "nothing is deployed", PROGRAM_DOWN: "a program is not running as it should",
        PORT_TAKEN: "another process holds a port of the site", FRONT_WRONG: "the front is not as deployed",
        HEALTH_FAILING: "a health URL does not answer", MAINTENANCE_ON: "the maintenance page is on",
        LAST_RUN_FAILED: "the site runs, but the last switch or the last backup failed"}


def trouble_code(deployed: bool, programs_down: bool, health_failed: bool, last_switch: dict | None,
                 last_backup: dict | None, drifts: tuple[drift.Drift, ...] = ()) -> int:
    """The exit code of ``fab status``: the worst trouble found, 0 when there is none."""
    found = {d.code for d in drifts}
    found |= {NOTHING_DEPLOYED} if not deployed else set()
    found |= {PROGRAM_DOWN} if programs_down else set()
    found |= {HEALTH_FAILING} if health_failed else set()
    if (last_switch and last_switch.get("result") not in (None, "ok")) or \
            (last_backup and last_backup.get("event") == "backup-failed"):
        found.add(LAST_RUN_FAILED)
    return next((code for code in WORST_FIRST if code in found), 0)


def program_rows(site: Site, facts) -> list[list[str]]:
    """One row per program the manager knows: name, state, pid, release, up since (seconds)."""
    seen = ((facts.observed or {}).get("programs") or {}).get("programs") or {}
    now = (facts.observed or {}).get("now", 0)
    rows = []
    for name, found in sorted(seen.items()):
        process = found.get("process") or {}
        rows.append([name, found["state"], str(found["pid"] or "-"), process.get("release") or "-",
                     f"{now - process['started']:.0f}" if process else "-"])
    return rows


@dataclass
class Report:
    """What ``status`` read on one host: the facts, the drift, the health URLs' answers, the last backup,
    and the exit code they make."""
    site: Site
    facts: Facts
    drifts: tuple[drift.Drift, ...]
    urls: list[str]
    answers: dict
    last_backup: dict | None
    code: int

    def health(self, url: str) -> str:
        return "ok" if url in self.answers.get("answered", {}) else self.answers.get("failed", {}).get(url, "?")

    def as_dict(self) -> dict:
        config, facts = self.site.config, self.facts
        return {"site": config.name, "current": facts.current,
                "serving_set": facts.color if config.switch == "bluegreen" else None, "code": self.code,
                "trouble": SAID.get(self.code), "drift": [d.as_dict() for d in self.drifts],
                "programs": {row[0]: dict(zip(("state", "pid", "release", "up_seconds"), row[1:]))
                             for row in program_rows(self.site, facts)},
                "health": {url: self.health(url) for url in self.urls},
                "last_switch": facts.last_switch, "last_backup": self.last_backup}


def read(site: Site) -> Report:
    """One host's status: one read of what runs, its drift, its health URLs asked, its last backup."""
    facts, looping = observed.read_settled(site)
    config = site.config
    drifts = tuple(drift.find(config, facts, looping))
    found = site.run(last_backup_command(config), changes=False, warn=True)
    last_backup = json.loads(found.stdout) if found.stdout.strip() else None
    urls = [url for _, url in live(site) if url] if facts.current else []
    health = site.run(health_command(site, urls, 3), changes=False, warn=True) if urls else None
    answers = json.loads(health.stdout or "{}") if health else {}
    health_failed = bool(answers.get("failed")) or (bool(urls) and not answers)
    code = trouble_code(facts.current is not None, False, health_failed, facts.last_switch, last_backup, drifts)
    return Report(site, facts, drifts, urls, answers, last_backup, code)


def show(report: Report) -> None:
    """One host's status in words and tables: its release, last switch and backup, programs, health, drift."""
    config, facts = report.site.config, report.facts
    output.say(f"current release: {facts.current or 'none'}"
               + (f" (the {facts.color} set serves)" if config.switch == "bluegreen" else ""))
    if facts.current is None:
        return
    if facts.last_switch:
        last = facts.last_switch
        output.say(config.redact(f"last switch: to {last.get('release')} at {last.get('finished')}: "
                                 f"{last.get('result')}" + (f" ({last['error']})" if last.get("error") else "")))
    if report.last_backup:
        last_backup = report.last_backup
        output.say(config.redact(
            f"last backup: {last_backup.get('time')}: "
            + (f"failed ({last_backup.get('error')})" if last_backup["event"] == "backup-failed"
               else f"{last_backup.get('kind')} {last_backup.get('stamp')}, verified")))
    output.table("programs", ["program", "state", "pid", "runs release", "up (s)"], program_rows(report.site, facts))
    output.table("health", ["url", "answer"],
                 [[config.redact(url), config.redact(report.health(url))] for url in report.urls])
    for found_drift in report.drifts:
        output.say(f"[yellow]{found_drift.kind}:[/] {config.redact(found_drift.message)}")


def trouble(report: Report) -> str:
    """Why a host's status is not 0, in words: the kind, then each drift of that kind."""
    if report.facts.current is None:
        return f"nothing is deployed on {report.site.config.name}"
    return SAID[report.code] + "".join(f"\n  {d.message}" for d in report.drifts if d.code == report.code)
