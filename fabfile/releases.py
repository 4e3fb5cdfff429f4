"""Releases on the host: switch ``current``, mark bad, roll back, list, clean up."""
from __future__ import annotations

import json
import re
import time
from datetime import datetime, timezone

from fabric import task
from invoke import Exit

from . import backup, commands, datajob, fleetconfig, hooks, leftovers, lock, notify, output, restore, switch
from .events import log_event
from .site import Facts, Release, Site, open_site, who


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


RELEASE_ID = re.compile(r"\d{8}T\d{6}Z-[0-9a-f]{8}")


@task(help={"to": "the release id to go back to (default: the previous good release)",
            "with_data": "also restore the data backed up when that release was left",
            "force_unlock": "remove a stale lock first", "limit": "refused: a fleet's hosts move together"})
def rollback(c, to=None, with_data=False, force_unlock=False, limit=None):
    """Go back to the previous good release (or --to ID) in seconds."""
    if to is not None and not RELEASE_ID.fullmatch(str(to)):
        raise Exit(f"rollback --to takes a release id such as 20261122T031500Z-3f2a9c1d (see: fab releases), "
                   f"not {to!r}", 2)
    fleet = fleetconfig.for_host(c)
    fleetconfig.refuse_limit(fleet, limit, "rollback")
    if fleet.declared:
        if with_data:
            raise Exit(f"{fleet.name}: rollback --with-data is not there for fleets yet: roll back, then "
                       f"fab -H {fleet.name} restore", 2)
        from . import fleettasks  # it builds on this module
        return fleettasks.rollback(c, fleet, to, force_unlock)
    site = open_site(c)
    started = time.monotonic()
    facts = site.facts()
    if to:
        target = facts.release(to)
        if target is None or not target.built:
            raise Exit(f"no built release {to} on {site.config.name} (see: fab -H {site.config.name} releases)", 1)
        if target.bad:
            raise Exit(f"release {to} is marked bad ({target.bad.get('reason')}); pick another", 1)
    else:
        target = previous_good(facts.releases, facts.current)
        if target is None:
            raise Exit(f"no good release before {facts.current} to roll back to", 1)
    if target.id == facts.current:
        output.say(f"{target.id} is already current: nothing to do")
        return
    with lock.held(site, facts, target.id, force_unlock):
        leaving = facts.current
        restored = None
        if with_data:
            restored = restore.restore_for_rollback(site, target.id)
        with output.step(f"rollback {leaving} -> {target.id}"):
            verdict = switch.run_switch(site, target.id, leaving, live=facts.color)
        if verdict["result"] != "ok":
            error = site.config.redact(verdict.get("error", "?"))
            log_event(site, "rollback-failed", release=target.id, current=leaving, error=error)
            back = f"{leaving} serves again" if verdict.get("went_back", True) else \
                f"going back to {leaving} failed too: see fab -H {site.config.name} status"
            raise Exit(f"rollback to {target.id} failed ({error}); {back}", 1)
        log_event(site, "rollback", release=target.id, previous=leaving,
                  data=restored and restored.get("stamp"))
        notify.send(site, "rollback", target.id, who(), time.monotonic() - started)
        hook = hooks.run_on_host(site, "after_rollback", site.path("current"), target.id)
    if hook and not hook.ok:  # the rollback stands: going forward again would bring back what was fled
        raise Exit(f"rolled back to {target.id}, but {hook.describe()}", 1)
    output.say(f"rolled back to {target.id} in {time.monotonic() - started:.1f}s")


@task
def releases(c):
    """Show the releases: id, date, who, current, bad, its backup."""
    fleet = fleetconfig.for_host(c)
    if fleet.declared:
        from . import fleettasks  # it builds on this module
        return fleettasks.releases(c, fleet)
    site = open_site(c)
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


@task(help={"before_restore_older_than": "also remove the data restores moved aside (*.before-restore-*) "
                                         "older than DAYS days (never by default)"})
def cleanup(c, before_restore_older_than=None):
    """Remove old and half-built releases and what dead deploys and restores left."""
    days = _days(before_restore_older_than)
    site = open_site(c)
    facts = site.facts()
    with lock.held(site, facts, "cleanup", False):
        removed = cleanup_releases(site, facts, facts.current, before_restore_days=days, mention_kept=True)
    output.say(f"removed {len(removed)} release(s): {' '.join(removed)}" if removed else "no release to remove")


def _days(value) -> float | None:
    """``--before-restore-older-than``: a number of days, 0 or more."""
    if value is None:
        return None
    try:
        days = float(value)
    except (TypeError, ValueError):
        days = -1
    if not days >= 0:
        raise Exit(f"--before-restore-older-than {value}: give a number of days, 0 or more", 2)
    return days
