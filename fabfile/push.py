"""``push``: upload and build a release beside the serving one, and switch nothing.

The build is the very one ``deploy`` runs (``deploy.build_release``), under the same
lock; the release it leaves is built and not current, so a later ``deploy`` of the
same content finds it ("built already: switching to it") and only switches.
"""
from __future__ import annotations

import time

from fabric import task
from invoke import Exit

from . import bundle as bundles
from . import deploy, hostsites, lock, output
from .events import log_event
from .site import open_site


@task(help={"force_unlock": "remove a stale lock left by an interrupted deploy or push first",
            "allow_dirty": "push develop eggs with uncommitted files (a hostconfig may forbid it)"})
def push(c, force_unlock=False, allow_dirty=False):
    """Upload and build the release beside the serving one; switch nothing (deploy then only switches)."""
    site = open_site(c)
    started = time.monotonic()
    hostsites.check_neighbours(site.config)
    with output.step("read the host"):
        facts = site.facts()
    if site.dry:
        bundle = deploy.prepare(site, facts, allow_dirty)
        output.say("\n".join(deploy.describe_plan(site, facts, bundle, bundle.release_id)))
        output.say("plan only: the host is unchanged")
        return
    with lock.held(site, facts, "push", force_unlock):
        bundle = deploy.prepare(site, facts, allow_dirty)
        if facts.current and bundles.digest_of(facts.current) == bundle.digest:
            output.say(f"nothing to push: {facts.current} is current and already has this content")
            return
        existing = deploy._existing(facts, bundle)
        if existing and existing.bad:
            raise Exit(f"release {existing.id} has this content and is marked bad "
                       f"({existing.bad.get('reason')}); change something first", 1)
        if existing:
            output.say(f"nothing to push: {existing.id} is built already with this content "
                       f"(fab -H {site.config.name} deploy switches to it)")
            return
        release_id = bundle.release_id
        output.say("\n".join(deploy.describe_plan(site, facts, bundle, release_id)[:-1]))
        sent = deploy.build_release(site, facts, bundle, release_id)
        log_event(site, "push", release=release_id, current=facts.current, bytes=sent, eggs=bundle.eggs,
                  seconds=round(time.monotonic() - started, 1))
    output.say(f"[bold green]pushed {release_id} to {site.config.name} in {time.monotonic() - started:.1f}s "
               f"({sent} bytes sent, {site.commands_run} remote commands); "
               f"{facts.current or 'nothing'} still serves: fab -H {site.config.name} deploy switches[/]")
