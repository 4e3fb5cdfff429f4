"""``start``, ``stop``, ``restart``, ``status``, ``logs``: the site's programs, on one host or a fleet's."""
from __future__ import annotations

import re

from fabric import task
from invoke import Exit


def _fleet(c):
    """The fleet ``-H`` names, or None for one host."""
    from ..config import fleet as fleetconfig
    fleet = fleetconfig.for_host(c)
    return fleet if fleet.declared else None


@task
def start(c):
    """Start the site's programs, in order (a fleet: host by host, the ZEO host first)."""
    from ..config import fleet as fleetconfig
    from ..pipeline import fleetops
    from ..switch import services
    fleetops.in_order(c, fleetconfig.for_host(c), services.start_site)


@task
def stop(c):
    """Stop the site's programs, in reverse order (a fleet: host by host, the ZEO host last)."""
    from ..config import fleet as fleetconfig
    from ..pipeline import fleetops
    from ..switch import services
    fleetops.in_order(c, fleetconfig.for_host(c), services.stop_site, reverse=True)


@task(help={"everything": "with a front: also restart the programs outside it (the ZEO server: its "
                          "clients wait for it, requests may fail meanwhile)"})
def restart(c, everything=False):
    """Restart the site's programs one by one, each healthy before the next (with a front: drained)."""
    from ..config import fleet as fleetconfig
    from ..pipeline import fleetops
    from ..state.converge import restart_converged
    fleetops.in_order(c, fleetconfig.for_host(c), lambda site: restart_converged(site, everything))


@task(help={"limit": "a fleet: only these hosts (host1,host2)",
            "json": "print what was found as one JSON document, for a monitor (same exit code)"})
def status(c, limit=None, json=False):
    """Show what runs and what differs from the deploy (exit 1, 3-8 by kind of trouble; docs/operations.md)."""
    from ..config import fleet as fleetconfig
    from ..pipeline import fleetops
    from ..remote.site import open_site
    from ..state.status import status_site
    fleet = _fleet(c)
    if fleet:
        return fleetops.status(c, fleetconfig.limit(fleet, limit), as_json=json)
    status_site(open_site(c), as_json=json)


@task(help={"lines": "how many lines of each log (default 20)",
            "follow": "go on printing what the programs log, until Ctrl-C",
            "limit": "a fleet: only these hosts (host1,host2)"})
def logs(c, lines=None, follow=False, limit=None):
    """Show the last lines of each program's log (-f: follow them live until Ctrl-C)."""
    lines = "20" if lines is None else lines  # a string here: Invoke would refuse 'abc' with a traceback
    if not re.fullmatch(r"[0-9]{1,6}", str(lines)) or not 0 < int(lines) <= 100000:  # isdigit() takes ²
        raise Exit(f"logs --lines takes a whole number from 1 to 100000, not {lines!r}", 2)
    from ..config import fleet as fleetconfig
    from ..pipeline import fleetops
    from ..remote.site import Site, open_site
    from ..switch import logs as programlogs
    fleet = _fleet(c)
    if fleet:
        fleet = fleetconfig.limit(fleet, limit)
        if follow and len(fleet.members) > 1:
            raise Exit(f"logs --follow follows one host: add --limit HOST ({' '.join(fleet.names)})", 2)
        if not follow:
            return fleetops.in_order(c, fleet, lambda site: programlogs.show_logs(site, int(lines)))
        site = Site(c, fleet.members[0].config)
    else:
        site = open_site(c)
    if follow:
        programlogs.follow_logs(site, int(lines))
        return
    programlogs.show_logs(site, int(lines))
