"""``deploy`` and ``rollback``: one path for the one host of a config and for a fleet's many. Every host
connected and read at once; the bundles made before any lock, so that the same content with no drift
anywhere is a no-op after that one read; else every host locked, what drifted put right, the release
built beside what serves, switched in the fleet's order, and on a failure every host that switched goes
back."""
from __future__ import annotations

import time

from invoke import Exit

from .. import output
from ..build.bundle import Bundle
from ..config.fleet import Fleet, Member
from ..data import backup as backups, restore, schedule
from ..remote import notify, parallel
from ..remote.events import log_event
from ..remote.site import Facts, Site, who
from ..sites import hostsites
from ..switch import hooks, job as switch
from . import deploy as deploys, fleet as fleets, plan as plans, releases


def deploy(c, fleet: Fleet, force_unlock: bool = False, plan: bool = False, allow_dirty: bool = False) -> None:
    """The deploy chain on every host of the config: bundle, push, build, switch, check; back by itself
    on failure."""
    started = time.monotonic()
    for member in fleet.members:  # each host's ports and names against the other sites there
        hostsites.check_neighbours(member.config)
    with fleets.connected(c, fleet) as sites:
        with output.step(f"read {len(sites)} hosts" if fleet.declared else "read the host"):
            facts, looping = fleets.read_settled(fleet, sites)
        drifts = fleets.drifts_of(fleet, facts, looping)
        made = fleets.make_bundles(fleet, sites, facts, allow_dirty)
        content = fleets.digest(fleet, made)
        if plan or any(site.dry for site in sites.values()):
            return show_plan(fleet, sites, facts, made, drifts, content)
        if (not any(drifts.values()) and not force_unlock and not any(f.lock for f in facts.values())
                and fleets.serving(facts, content)):
            output.say(nothing_to_deploy(fleet, facts))  # one read, no lock: a no-op
            return
        with fleets.locked(fleet, sites, facts, "deploy", force_unlock):
            facts, repaired = fleets.repair(fleet, sites, facts, drifts, fleets.serving(facts, content))
            if fleets.serving(facts, content):  # undoing a dead switch may bring back another release
                output.say(nothing_to_deploy(fleet, facts) + (f"; repaired: {'; '.join(repaired)}" if repaired else ""))
                if repaired:
                    fleets.each(fleet, lambda m: log_event(sites[m.name], "converge", release=facts[m.name].current,
                                                           repaired=repaired))
                return
            for line in repaired:
                output.say(f"repaired: {line}")
            release_id, refused = fleets.release_for(fleet, facts, content)
            if refused:
                raise Exit(refused, 1)
            sent = roll_out(fleet, sites, facts, made, release_id, started)
    commands = sum(site.commands_run for site in sites.values())
    where = f"{len(sites)} hosts of {fleet.name}" if fleet.declared else fleet.name
    output.say(f"[bold green]deployed {release_id} to {where} in {time.monotonic() - started:.1f}s "
               f"({sent} bytes sent, {commands} remote commands)[/]")


def nothing_to_deploy(fleet: Fleet, facts: dict[str, Facts]) -> str:
    """What a deploy that finds its content serving says: one host's release, or every host's."""
    current = next(iter(facts.values())).current
    if fleet.declared:
        return f"nothing to deploy: every host of {fleet.name} runs {current}"
    return f"nothing to deploy: {current} already has this content"


def show_plan(fleet: Fleet, sites: dict[str, Site], facts: dict[str, Facts], made: dict[str, Bundle],
              drifts: dict[str, list], content: str) -> None:
    """What a deploy would do on each host, drift included; nothing changes."""
    release_id, _ = fleets.release_for(fleet, facts, content)
    for member in fleet.members:
        site, found = sites[member.name], drifts[member.name]
        lines = deploys.describe_plan(site, facts[member.name], made[member.name], release_id)
        if found:
            lines[-1] = "not a no-op: what runs differs from the deploy (below)"
        with fleets.on_host(fleet, member.name):
            output.say("\n".join(lines + plans.describe(site, facts[member.name], made[member.name])
                                 + [f"drift: {member.config.redact(d.message)}" for d in found]))
    output.say("plan only: no host was changed" if fleet.declared else "plan only: the host is unchanged")


def roll_out(fleet: Fleet, sites: dict[str, Site], facts: dict[str, Facts], made: dict[str, Bundle],
             release_id: str, started: float) -> int:
    """Build on every host that lacks the release, back up, switch in order, then record and clean up on
    every host; the bytes sent. A failure anywhere is logged on every host, told, and raised."""
    tag = {"fleet": fleet.name} if fleet.declared else {}
    for member in fleet.members:
        site, bundle = sites[member.name], made[member.name]
        with fleets.on_host(fleet, member.name):
            output.say("\n".join(deploys.describe_plan(site, facts[member.name], bundle, release_id)[:-1]
                                 + plans.describe(site, facts[member.name], bundle)))
    first = sites[fleet.members[0].name]
    notify.send(first, "deploy-started", release_id, who())
    try:
        deploys.run_hook_before_deploy(first)
        sent = build_everywhere(fleet, sites, facts, made, release_id)
        taken = before_switch(fleet, sites, facts, release_id)
        noted = switch_everywhere(fleet, sites, facts, release_id)
        taken.update(after_switch(fleet, sites, facts, release_id))
    except BaseException as error:
        message = parallel.message(error) if not isinstance(error, KeyboardInterrupt) else "interrupted"
        fleets.each(fleet, lambda m: log_event(sites[m.name], "deploy-failed", release=release_id,
                                               current=facts[m.name].current, error=message, **tag))
        notify.send(first, "deploy-failed", release_id, who(), time.monotonic() - started, message)
        raise

    def record(member: Member) -> None:
        site = sites[member.name]
        log_event(site, "deploy", release=release_id, previous=facts[member.name].current, bytes=sent.get(member.name, 0),
                  eggs=made[member.name].eggs, backup=taken.get(member.name),
                  seconds=round(time.monotonic() - started, 1), **tag)
        with output.step("cleanup"):
            releases.cleanup_releases(site, site.facts(), release_id)

    with parallel.interrupts_noted() as late:  # every host switched: a Ctrl-C now stops nothing
        fleets.each(fleet, record)
        notify.send(first, "deploy-succeeded", release_id, who(), time.monotonic() - started)
    if noted or late.is_set():
        output.say("Ctrl-C came once every host had switched: the deploy was finished")
    return sum(sent.values())


def build_everywhere(fleet: Fleet, sites: dict[str, Site], facts: dict[str, Facts], made: dict[str, Bundle],
                     release_id: str, built: str = ": switching to it") -> dict[str, int]:
    """Push and build on every host that lacks the built release, at once; the bytes sent, by host. A
    host that fails: nothing switches anywhere, and what the others built stays for the next deploy."""
    missing = [m for m in fleet.members
               if not (facts[m.name].release(release_id) and facts[m.name].release(release_id).built)]
    for member in fleet.members:
        if member not in missing:
            with fleets.on_host(fleet, member.name):
                output.say(f"{release_id} is built already{built}")

    def build(member: Member) -> int:
        return deploys.build_release(sites[member.name], facts[member.name], made[member.name], release_id)

    try:
        sent, errors = fleets.each(fleet, build, missing)
    except parallel.Interrupted as stopped:
        raise Exit(f"interrupted during the build of {release_id}: nothing was switched on any host "
                   f"(built on: {' '.join(stopped.results) or 'none'})", 130) from None
    if errors and not fleet.declared:
        raise next(iter(errors.values()))
    if errors:
        built = [name for name in sites if name not in errors]
        raise Exit(f"the build of {release_id} failed; nothing was switched on any host"
                   f"{' (built on ' + ' '.join(built) + ': kept for the next deploy)' if built else ''}:\n"
                   f"{parallel.describe(errors)}", 1)
    return sent


def before_switch(fleet: Fleet, sites: dict[str, Site], facts: dict[str, Facts], release_id: str) -> dict[str, str]:
    """The ``before_switch`` hook on every host; on the backup host, the backup schedule and the backup
    tagged with the release that leaves (after the switch when that release is gone); the stamps, by host."""
    fleets.each_or_exit(fleet, lambda m: deploys.run_hook_before_switch(sites[m.name], release_id),
                        "the before_switch hook failed; nothing was switched")
    taken = {}
    for member in fleet.having("backup"):
        site, leaving = sites[member.name], facts[member.name].current
        with fleets.on_host(fleet, member.name):
            output.say(schedule.install_schedule(site, release_id))
            if leaving and facts[member.name].release(leaving):
                backup = backups.backup_before_switch(site, leaving)
                taken[member.name] = backup and backup.get("stamp")
    return taken


def after_switch(fleet: Fleet, sites: dict[str, Site], facts: dict[str, Facts], release_id: str) -> dict[str, str]:
    """The backup a gone release could not take before the switch, tagged with the new one. The switch
    stands when it fails (the data is untouched): a warning, not a failed deploy."""
    taken = {}
    for member in fleet.having("backup"):
        leaving = facts[member.name].current
        if leaving and not facts[member.name].release(leaving):  # and its repozo with it
            with fleets.on_host(fleet, member.name):
                output.say(f"{leaving}, which current named, was gone: the backup is taken after the switch")
                try:
                    backup = backups.backup_before_switch(sites[member.name], release_id)
                except Exit as failed:
                    output.say(f"[yellow]warning: {release_id} serves, but the backup after the switch failed "
                               f"({parallel.message(failed).partition(': ')[2]}): fab -H {fleet.name} backup takes one[/]")
                    continue
            taken[member.name] = backup and backup.get("stamp")
    return taken


def switch_everywhere(fleet: Fleet, sites: dict[str, Site], facts: dict[str, Facts], release_id: str) -> bool:
    """Switch group after group; a failure on a fleet sends every host already switched (and the failing
    ones) back to what they left, marks the release bad on every host, and exits 1. True when a Ctrl-C
    came during the last group (the switch was finished)."""
    def one(member: Member) -> dict:
        f = facts[member.name]
        with output.step("switch and check"):
            return deploys.switch_and_check(sites[member.name], release_id, f.current, f.color)

    try:
        return fleets.switch_in_order(fleet, sites, facts, release_id, one)
    except fleets.SwitchFailed as failed:
        reason = "; ".join(f"{name}: {parallel.message(e)}" for name, e in failed.errors.items())
        fleets.each(fleet, lambda m: releases.mark_bad(sites[m.name], release_id, reason))
        raise Exit(f"the switch to {release_id} failed:\n{failed}; {release_id} marked bad on every host", 1) from None


def push(c, fleet: Fleet, force_unlock: bool = False, allow_dirty: bool = False) -> None:
    """Upload and build the release beside the serving one on every host, under the deploy lock; switch
    nothing. What it leaves is built and not current, so a deploy of the same content only switches."""
    started = time.monotonic()
    for member in fleet.members:
        hostsites.check_neighbours(member.config)
    with fleets.connected(c, fleet) as sites:
        with output.step(f"read {len(sites)} hosts" if fleet.declared else "read the host"):
            facts = fleets.read_facts(fleet, sites)
        if any(site.dry for site in sites.values()):
            made = fleets.make_bundles(fleet, sites, facts, allow_dirty)
            release_id, _ = fleets.release_for(fleet, facts, fleets.digest(fleet, made))
            for member in fleet.members:
                with fleets.on_host(fleet, member.name):
                    output.say("\n".join(deploys.describe_plan(sites[member.name], facts[member.name],
                                                               made[member.name], release_id)))
            output.say("plan only: no host was changed" if fleet.declared else "plan only: the host is unchanged")
            return
        with fleets.locked(fleet, sites, facts, "push", force_unlock):
            made = fleets.make_bundles(fleet, sites, facts, allow_dirty)
            content = fleets.digest(fleet, made)
            current = next(iter(facts.values())).current
            if fleets.serving(facts, content):
                output.say(f"nothing to push: {current} is current and already has this content")
                return
            release_id, refused = fleets.release_for(fleet, facts, content)
            if refused:
                raise Exit(refused, 1)
            if all(f.release(release_id) and f.release(release_id).built for f in facts.values()):
                output.say(f"nothing to push: {release_id} is built already with this content "
                           f"(fab -H {fleet.name} deploy switches to it)")
                return
            for member in fleet.members:
                with fleets.on_host(fleet, member.name):
                    output.say("\n".join(deploys.describe_plan(sites[member.name], facts[member.name],
                                                               made[member.name], release_id)[:-1]))
            sent = build_everywhere(fleet, sites, facts, made, release_id, built="")
            fleets.each(fleet, lambda m: log_event(sites[m.name], "push", release=release_id,
                                                   current=facts[m.name].current, bytes=sent.get(m.name, 0),
                                                   eggs=made[m.name].eggs, seconds=round(time.monotonic() - started, 1)))
    commands = sum(site.commands_run for site in sites.values())
    where = f"{len(sites)} hosts of {fleet.name}" if fleet.declared else fleet.name
    output.say(f"[bold green]pushed {release_id} to {where} in {time.monotonic() - started:.1f}s "
               f"({sum(sent.values())} bytes sent, {commands} remote commands); "
               f"{current or 'nothing'} still serves: fab -H {fleet.name} deploy switches[/]")


def rollback(c, fleet: Fleet, to: str | None = None, with_data: bool = False, force_unlock: bool = False) -> None:
    """Every host back to the previous good release (or ``to``), in the switch's order; the data too
    with ``with_data`` (one host). Any failure on a fleet puts every host back."""
    started = time.monotonic()
    if with_data and fleet.declared:
        raise Exit(f"{fleet.name}: rollback --with-data is not there for fleets yet: roll back, then "
                   f"fab -H {fleet.name} restore", 2)
    with fleets.connected(c, fleet) as sites:
        facts = fleets.read_facts(fleet, sites)
        drifts = fleets.drifts_of(fleet, facts)
        target = rollback_target(fleet, facts, to)
        everywhere = " on every host" if fleet.declared else ""
        if all(f.current == target for f in facts.values()):
            output.say(f"{target} is already current{everywhere}: nothing to do")
            return
        with fleets.locked(fleet, sites, facts, target, force_unlock):
            if any(drifts.values()):  # what the switch does not put right by itself, before it
                facts, repaired = fleets.repair(fleet, sites, facts, drifts, serving=False)
                for line in repaired:
                    output.say(f"repaired: {line}")
                if all(f.current == target for f in facts.values()):
                    output.say(f"{target} is current again{everywhere}: nothing more to do")
                    return
            restored = restore.restore_for_rollback(sites[fleet.members[0].name], target) if with_data else None
            noted = switch_back(fleet, sites, facts, target, restored, started)
    if noted:
        output.say("Ctrl-C came once every host had switched: the rollback was finished")
    output.say(f"rolled back every host of {fleet.name} to {target} in {time.monotonic() - started:.1f}s"
               if fleet.declared else f"rolled back to {target} in {time.monotonic() - started:.1f}s")


def switch_back(fleet: Fleet, sites: dict[str, Site], facts: dict[str, Facts], target: str,
                restored: dict | None, started: float) -> bool:
    """The rollback's switch on every host not on ``target``, in order, each recorded and told, then
    the ``after_rollback`` hook everywhere; True when a Ctrl-C came during the last group."""
    def one(member: Member) -> dict | None:
        site, leaving = sites[member.name], facts[member.name].current
        if leaving == target:
            return None
        with output.step(f"rollback {leaving} -> {target}"):
            verdict = switch.run_switch(site, target, leaving, live=facts[member.name].color)
        if verdict["result"] != "ok":
            error = site.config.redact(verdict.get("error", "?"))
            log_event(site, "rollback-failed", release=target, current=leaving, error=error)
            raise Exit(f"rollback to {target} failed ({error}); {switch.what_serves(site, verdict, leaving)}", 1)
        log_event(site, "rollback", release=target, previous=leaving, data=restored and restored.get("stamp"))
        return verdict

    try:
        noted = fleets.switch_in_order(fleet, sites, facts, target, one, "rollback")
    except fleets.SwitchFailed as failed:
        raise Exit(f"the rollback to {target} failed:\n{failed}", 1) from None
    notify.send(sites[fleet.members[0].name], "rollback", target, who(), time.monotonic() - started)
    hooked = fleets.each(fleet, lambda m: hooks.run_on_host(sites[m.name], "after_rollback",
                                                             sites[m.name].path("current"), target))[0]
    failed = [hook.describe() for hook in hooked.values() if hook and not hook.ok]
    if failed:  # the rollback stands: going forward again would bring back what was fled
        raise Exit(f"rolled back to {target}, but {'; '.join(failed)}", 1)
    return noted


def rollback_target(fleet: Fleet, facts: dict[str, Facts], to: str | None) -> str:
    """The release every host goes back to: ``to``, or the newest that is good on every host and older
    than what each runs now."""
    if to:
        lacking = [name for name, f in facts.items() if not (f.release(to) and f.release(to).built)]
        if lacking:
            where = " ".join(lacking) if fleet.declared else fleet.name
            raise Exit(f"no built release {to} on {where} (see: fab -H {fleet.name} releases)", 1)
        bad = next(((name, f.release(to).bad) for name, f in facts.items() if f.release(to).bad), None)
        if bad:
            where = f" on {bad[0]}" if fleet.declared else ""
            raise Exit(f"release {to} is marked bad{where} ({bad[1].get('reason')}); pick another", 1)
        return to
    newest = max((f.current for f in facts.values() if f.current), default=None)
    candidates = sorted({r.id for f in facts.values() for r in f.releases if newest is None or r.id < newest})
    target = next((r for r in reversed(candidates)
                   if all(f.release(r) and f.release(r).good for f in facts.values())), None)
    if target is None:
        raise Exit(f"no good release before {newest} to roll back to"
                   + (f" on every host of {fleet.name}" if fleet.declared else ""), 1)
    return target
