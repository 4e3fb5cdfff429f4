"""``bootstrap-host`` and ``sites``: the host itself, and every site it holds."""
from __future__ import annotations

from fabric import task
from invoke import Exit



@task(name="bootstrap-host")
def bootstrap_host(c):
    """Make a fresh host ready (as root, once): users, key, packages, layout, venv, units, firewall, updates, swap."""
    from .. import output
    from ..config import fleet as fleetconfig
    from ..host import bootstrap, ssh
    from ..remote import parallel
    from ..remote.site import host_config
    fleet = fleetconfig.for_host(c)
    if not fleet.declared:
        return bootstrap.bootstrap_one(c, host_config(c))
    ssh.deploy_public_key(fleet.members[0].config, bool(c.config.run.dry))  # made once, before the threads
    _, errors = parallel.run(lambda member: bootstrap.bootstrap_one(c, member.config),
                             fleetconfig.by_name(fleet.members), fleet.parallel)
    if errors:
        raise Exit(f"bootstrap-host failed on {' '.join(errors)} of {fleet.name} (the others are ready; run it "
                   f"again, it changes only what is missing):\n{parallel.describe(errors)}", 1)
    output.say(f"[bold green]every host of {fleet.name} is ready: fab -H {fleet.name} deploy[/]")


@task
def sites(c):
    """List every site on this host: release, health, disk (MB), last backup (exit 1: one deployed is unwell)."""
    from .. import output
    from ..remote.site import host_config
    from ..sites import hostsites
    here = host_config(c)
    rows, unwell = [], []
    for config in hostsites.neighbours(here):
        row, healthy = hostsites.describe(c, config)
        rows.append(row)
        if not healthy:
            unwell.append(config.name)
    output.table(f"sites on {here.address}:{here.port}",
                 ["site", "root", "current", "health", "data MB", "backups MB", "releases MB", "last backup"], rows)
    if unwell:
        raise Exit(f"not healthy: {', '.join(unwell)}", 1)
