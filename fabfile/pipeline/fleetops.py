"""The other tasks over the config's hosts: start, stop and restart in order, status; a fleet's releases
as one table with a host column."""
from __future__ import annotations

import json

from invoke import Exit

from .. import output
from ..remote import parallel
from ..config.fleet import Fleet
from .fleet import connected, each, on_host, read_facts, switch_order
from ..remote.site import warn
from ..state import status as hoststatus


def status(c, fleet: Fleet, as_json: bool = False) -> None:
    """Every host's release, programs, health and drift: one host's in its tables, a fleet's one row per
    host; exit by the worst trouble found (docs/operations.md), 1 for a fleet's host out of reach or a
    fleet split between releases."""
    warn(fleet.members[0].config)
    sites, errors = parallel.open_sites(c, fleet.members, fleet.parallel, alone=not fleet.declared)
    try:  # a host down is a row, not a traceback
        reports, failed = each(fleet, lambda m: hoststatus.read(sites[m.name]), [m for m in fleet.members
                                                                                 if m.name in sites])
    finally:
        for site in sites.values():
            site.close()
    errors.update(failed)
    if not fleet.declared:
        if errors:
            raise next(iter(errors.values()))
        report = next(iter(reports.values()))
        if as_json:
            print(report.site.config.redact(json.dumps(report.as_dict(), indent=1)))
            if report.code:
                raise Exit(code=report.code)
            return
        hoststatus.show(report)
        if report.code:
            raise Exit(hoststatus.trouble(report), report.code)
        return
    table, drifts = [], {}
    for member in fleet.members:
        if member.name in errors:
            table.append([member.name, " ".join(member.roles), "-", "unreachable", parallel.message(errors[member.name]),
                          "-"])
        else:
            row, drifts[member.name] = _status_row(reports[member.name])
            table.append([member.name, " ".join(member.roles), *row])
    currents = {row[2] for row in table if row[3] != "unreachable"}
    unwell = [row[0] for row in table if row[3] in ("unreachable", "not running") or row[4] not in ("ok", "-")
              or drifts.get(row[0])]
    if as_json:
        print(json.dumps({"fleet": fleet.name, "hosts": {
            row[0]: {"roles": row[1].split(), "current": row[2], "programs": row[3], "health": row[4],
                     "drift": [d.as_dict() for d in drifts.get(row[0], ())]} for row in table},
            "split": len(currents) > 1}, indent=1))
    else:
        output.table(f"status of {fleet.name}", ["host", "roles", "current", "programs", "health", "drift"], table)
        for name, found in drifts.items():
            for drifted in found:
                output.say(f"[yellow]{name}: {drifted.kind}:[/] {drifted.message}")
        if len(currents) > 1:
            output.say(f"[yellow]the hosts are on different releases: {' '.join(sorted(currents))}[/]")
    if unwell or len(currents) > 1:  # a switch that failed and was undone everywhere is no trouble now
        codes = {reports[name].code for name in unwell if name in reports} - {0, hoststatus.LAST_RUN_FAILED}
        code = next((found for found in hoststatus.WORST_FIRST if found in codes), 1)
        raise Exit(f"{fleet.name}: " + (f"not well on {' '.join(unwell)}" if unwell else "split between releases"),
                   code)


def _status_row(report: hoststatus.Report) -> tuple[list[str], list]:
    facts = report.facts
    found = list(report.drifts) if facts.current else []
    programs = ((facts.observed or {}).get("programs") or {}).get("programs") or {}
    running = [name for name, state in programs.items() if state["state"] in ("RUNNING", "active")]
    failed = report.answers.get("failed", {})
    row = [facts.current or "none",
           f"{len(running)} running" if running or not report.site.config.programs else "not running",
           ("failing: " + " ".join(failed)) if failed else ("ok" if report.urls else "-"),
           " ".join(sorted({d.kind for d in found})) or "-"]
    return row, found


def in_order(c, fleet: Fleet, work, reverse: bool = False) -> None:
    """``work(site)`` on every host, one after another in the switch's order (the ZEO host first), or
    the other way; the one host of a config without ``[fleet]`` under no name."""
    groups = switch_order(fleet)
    with connected(c, fleet) as sites:
        for group in reversed(groups) if reverse else groups:
            for member in group:
                with on_host(fleet, member.name):
                    work(sites[member.name])


def releases(c, fleet: Fleet) -> None:
    """Every host's releases in one table: host, id, built, current, bad."""
    with connected(c, fleet) as sites:
        facts = read_facts(fleet, sites)
    rows = []
    for member in fleet.members:
        f = facts[member.name]
        for release in reversed(f.releases):
            built = release.built or {}
            rows.append([member.name, release.id, built.get("when", "(not built)"), built.get("who", ""),
                         "current" if release.id == f.current else "",
                         f"bad: {release.bad.get('reason', '')}" if release.bad else ""])
    output.table(f"releases on {fleet.name}", ["host", "id", "built", "who", "current", "bad"], rows)
