"""Releases on the host: switch ``current``, mark bad, list, clean up."""
from __future__ import annotations

import json
from datetime import datetime, timezone

from ..data import backup, job as datajob
from .. import commands, output
from . import leftovers
from ..remote import lock
from ..remote.site import Facts, Release, Site, who


def switch_current(site: Site, release_id: str) -> None:
    """Point ``current`` at the release, atomically."""
    site.run(commands.switch_link(site.path("current"), f"releases/{release_id}"))


def mark_bad(site: Site, release_id: str, reason: str) -> None:
    """Mark a release bad: rollback never chooses it again."""
    record = json.dumps({"when": datetime.now(timezone.utc).isoformat(timespec="seconds"), "who": who(),
                         "reason": site.config.redact(reason)})
    site.run(commands.write_file(site.path("releases", release_id, ".deploy", "bad.json"), record))


def previous_good(releases: tuple[Release, ...], current: str | None) -> Release | None:
    """The newest good release older than ``current``."""
    older = [r for r in releases if r.good and (current is None or r.id < current)]
    return older[-1] if older else None


def releases_to_remove(releases: tuple[Release, ...], current: str | None, keep: int,
                       building: str | None = None, running: tuple[str, ...] = ()) -> list[str]:
    """Which releases cleanup removes: all but the newest ``keep``, current, the previous good, and
    those a set of instances runs from (blue/green: the warm set)."""
    protected = {current, building, *running}
    previous = previous_good(releases, current)
    if previous:
        protected.add(previous.id)
    newest_built = [r.id for r in releases if r.built][-keep:] if keep > 0 else []
    return [r.id for r in releases if r.id not in protected and r.id not in newest_built]


def cleanup_releases(site: Site, facts: Facts, current: str | None, building: str | None = None,
                     before_restore_days: float | None = None, mention_kept: bool = False) -> list[str]:
    """Remove old releases (and half-built ones) beyond ``keep_releases``, then what dead runs left
    (``leftovers.clean``); the ids of the releases removed."""
    doomed = releases_to_remove(facts.releases, current, site.config.keep_releases, building,
                                tuple(facts.sets.values()))
    if doomed:
        site.run(commands.remove(*(site.path("releases", r) for r in doomed)))
    kept = tuple(r.id for r in facts.releases if r.id not in doomed)
    leftovers.clean(site, kept, before_restore_days, mention_kept)
    return doomed


def releases_table(site: Site) -> None:
    """One host's releases as a table: id, built, who, current, bad, its backup."""
    facts = site.facts()
    records = backup.inventory(datajob.DataShell(site), backup.site_settings(site, None)).records
    taken = {}  # release -> the newest backup taken while it was current (a deploy's: as it left)
    for stamp, record in sorted(records.items()):
        taken[record.get("release")] = stamp
    rows = []
    for release in reversed(facts.releases):
        built = release.built or {}
        rows.append([
            release.id, built.get("when", "(not built)"), built.get("who", ""),
            "current" if release.id == facts.current else "",
            f"bad: {release.bad.get('reason', '')}" if release.bad else "", taken.get(release.id, ""),
        ])
    output.table(f"releases on {site.config.name}", ["id", "built", "who", "current", "bad", "its backup"], rows)


def cleanup_site(site: Site, days: float | None) -> None:
    """Remove old and half-built releases and what dead runs left, under the deploy lock."""
    facts = site.facts()
    with lock.held(site, facts, "cleanup", False):
        removed = cleanup_releases(site, facts, facts.current, before_restore_days=days, mention_kept=True)
    output.say(f"removed {len(removed)} release(s): {' '.join(removed)}" if removed else "no release to remove")


