"""``rollback``, ``releases``, ``cleanup``: the releases on the hostconfig's host, or its fleet's hosts."""
from __future__ import annotations

import re

from fabric import task
from invoke import Exit


RELEASE_ID = re.compile(r"[0-9]{8}T[0-9]{6}Z-[0-9a-f]{8}")


@task(help={"to": "the release id to go back to (default: the previous good release)",
            "with_data": "also restore the data backed up when that release was left",
            "force_unlock": "remove a stale lock first", "limit": "refused: a fleet's hosts move together"})
def rollback(c, to=None, with_data=False, force_unlock=False, limit=None):
    """Go back to the previous good release (or --to ID) in seconds."""
    if to is not None and not RELEASE_ID.fullmatch(str(to)):
        raise Exit(f"rollback --to takes a release id such as 20261122T031500Z-3f2a9c1d (see: fab releases), "
                   f"not {to!r}", 2)
    from ..config import fleet as fleetconfig
    from ..pipeline import rollout
    fleet = fleetconfig.for_host(c)
    fleetconfig.refuse_limit(fleet, limit, "rollback")
    rollout.rollback(c, fleet, to, with_data, force_unlock)


@task
def releases(c):
    """Show the releases: id, date, who, current, bad, its backup."""
    from ..config import fleet as fleetconfig
    from ..pipeline import fleetops
    from ..pipeline import releases as engine
    from ..remote.site import open_site
    fleet = fleetconfig.for_host(c)
    if fleet.declared:
        return fleetops.releases(c, fleet)
    engine.releases_table(open_site(c))


@task(help={"before_restore_older_than": "also remove the data restores moved aside (*.before-restore-*) "
                                         "older than DAYS days (never by default)"})
def cleanup(c, before_restore_older_than=None):
    """Remove old and half-built releases and what dead deploys and restores left."""
    days = _days(before_restore_older_than)
    from ..pipeline import releases as engine
    from ..remote.site import open_site
    engine.cleanup_site(open_site(c), days)


def _days(value) -> float | None:
    """``--before-restore-older-than``: a number of days, 0 to 36500 (``1.5`` too)."""
    if value is None:
        return None
    # float() takes inf, 1e400, 3_0 and other scripts' digits: ASCII digits only, and a bound
    if not re.fullmatch(r"[0-9]{1,5}(\.[0-9]{1,6})?", str(value)) or float(value) > 36500:
        raise Exit(f"--before-restore-older-than {value}: give a number of days, 0 to 36500 (digits 0-9)", 2)
    return float(value)
