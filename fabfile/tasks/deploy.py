"""``deploy`` and ``push``: the deploy chain over the hostconfig's host, or its fleet's hosts."""
from __future__ import annotations

from fabric import task


@task(help={"force_unlock": "remove a stale lock left by an interrupted deploy first",
            "plan": "print what the deploy would do, and change nothing",
            "allow_dirty": "deploy develop eggs with uncommitted files (a hostconfig may forbid it)",
            "limit": "refused: a fleet's hosts move together"})
def deploy(c, force_unlock=False, plan=False, allow_dirty=False, limit=None):
    """Deploy the buildout: bundle, push, build, switch, check; roll back by itself on failure."""
    from ..config import fleet as fleetconfig
    from ..pipeline import rollout
    fleet = fleetconfig.for_host(c)
    fleetconfig.refuse_limit(fleet, limit, "deploy")
    rollout.deploy(c, fleet, force_unlock, plan, allow_dirty)


@task(help={"force_unlock": "remove a stale lock left by an interrupted deploy or push first",
            "allow_dirty": "push develop eggs with uncommitted files (a hostconfig may forbid it)"})
def push(c, force_unlock=False, allow_dirty=False):
    """Upload and build the release beside the serving one; switch nothing (deploy then only switches)."""
    from ..config import fleet as fleetconfig
    from ..pipeline import rollout
    rollout.push(c, fleetconfig.for_host(c), force_unlock, allow_dirty)
