"""A fleet's restore: while the data host swaps the data, the front shows the maintenance page and every
app host's ZEO clients are stopped; then they start, healthy, and the page goes."""
from __future__ import annotations

from contextlib import contextmanager

from invoke import Exit

from ..front import haproxy as front
from .. import output
from ..remote import parallel
from ..switch import services
from ..config.fleet import by_name, Fleet


@contextmanager
def clients_stopped(c, fleet: Fleet):
    """The maintenance page on, the app hosts' programs stopped, for the block; then back, in that order
    reversed (the page stays when a client does not come back healthy)."""
    fronts = by_name(fleet.having("front"))
    apps = by_name(m for m in fleet.having("app") if "zeo" not in m.roles)
    sites, errors = parallel.open_sites(c, (*fronts.values(), *apps.values()), fleet.parallel)
    if errors:
        raise parallel.HostErrors(errors)
    try:
        for name in fronts:
            with output.on_host(name):
                front.set_maintenance(sites[name], True)
                output.say("maintenance page on")
        parallel.run_all(lambda m: services.stop_programs(sites[m.name], shutdown=False), apps, fleet.parallel)
        yield
    finally:
        def start(member) -> None:
            services.start_programs(sites[member.name])
            failed = services.check_health(sites[member.name])
            if failed:
                raise Exit(f"not healthy after the restore: {failed}", 1)

        _, errors = parallel.run(start, apps, fleet.parallel)
        if not errors:
            for name in fronts:
                with output.on_host(name):
                    front.set_maintenance(sites[name], False)
                    output.say("maintenance page off")
        for site in sites.values():
            site.close()
    if errors:
        raise Exit(f"the data is restored, but app hosts did not come back (the maintenance page stays on: "
                   f"fab -H {fleet.name} maintenance off once they run):\n{parallel.describe(errors)}", 1)
