"""A fleet's other tasks: status and releases as one table with a host column."""
from __future__ import annotations

import json

from invoke import Exit

from .. import output
from ..remote import parallel
from ..switch import services
from ..config.fleet import Fleet
from .fleet import connected, on_host, read_facts, switch_order
from ..remote.site import Site
from ..state import drift, observed


def status(c, fleet: Fleet, as_json: bool = False) -> None:
    """Every host's release, programs, health and drift in one table; exit 1 when a host is down or unwell."""
    sites, errors = parallel.open_sites(c, fleet.members, fleet.parallel)  # a host down is a row, not a traceback
    try:
        rows, failed = parallel.run(_status_row, sites, fleet.parallel)
    finally:
        for site in sites.values():
            site.close()
    errors.update(failed)
    table, drifts = [], {}
    for member in fleet.members:
        if member.name in errors:
            table.append([member.name, " ".join(member.roles), "-", "unreachable", parallel.message(errors[member.name]),
                          "-"])
        else:
            row, drifts[member.name] = rows[member.name]
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
    if unwell or len(currents) > 1:
        raise Exit(f"{fleet.name}: " + (f"not well on {' '.join(unwell)}" if unwell else "split between releases"), 1)


def _status_row(site: Site) -> tuple[list[str], list]:
    facts, looping = observed.read_settled(site)
    found = drift.find(site.config, facts, looping) if facts.current else []
    programs = ((facts.observed or {}).get("programs") or {}).get("programs") or {}
    running = [name for name, state in programs.items() if state["state"] in ("RUNNING", "active")]
    urls = [url for _, url in services.live(site) if url] if facts.current else []
    health = site.run(services.health_command(site, urls, 3), changes=False, warn=True) if urls else None
    failed = json.loads(health.stdout or "{}").get("failed", {}) if health else {}
    row = [facts.current or "none", f"{len(running)} running" if running or not site.config.programs else "not running",
           ("failing: " + " ".join(failed)) if failed else ("ok" if urls else "-"),
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
