"""``start``, ``stop``, ``restart``, ``status``, ``logs``: the site's programs, on one host or a fleet's."""
from __future__ import annotations

import re

from fabric import task
from invoke import Exit


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
    fleetops.status(c, fleetconfig.limit(fleetconfig.for_host(c), limit), as_json=json)


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
    from ..switch import logs as programlogs
    fleet = fleetconfig.limit(fleetconfig.for_host(c), limit)
    if follow and len(fleet.members) > 1:
        raise Exit(f"logs --follow follows one host: add --limit HOST ({' '.join(fleet.names)})", 2)
    work = programlogs.follow_logs if follow else programlogs.show_logs
    fleetops.in_order(c, fleet, lambda site: work(site, int(lines)))
