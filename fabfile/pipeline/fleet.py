"""A fleet's deploy: every host locked, the eggs made once, one release id, built on every host before
anything switches; the ZEO host first, the front, then the app hosts in batches (those that serve
nothing yet all at once); a failure during the switch puts every host back on the release it left and
marks the new one bad everywhere."""
from __future__ import annotations

import hashlib
import time
from contextlib import ExitStack, contextmanager
from typing import Callable

from invoke import Exit

from ..data import backup as backups
from ..build import bundle as bundles
from . import deploy as deploys
from ..sites import hostsites
from ..remote import lock, notify, parallel
from .. import output
from . import releases
from ..data import schedule
from ..switch import job as switch
from ..remote.events import log_event
from ..build.bundle import Bundle
from ..config.fleet import by_name, Fleet, Member
from ..remote.site import Facts, Site, who
from ..state import converge, drift, observed


@contextmanager
def connected(c, fleet: Fleet):
    """Every host's Site, connected at once (at most ``parallel``); one unreachable host: every other
    connection closed, nothing changed anywhere."""
    sites, errors = parallel.open_sites(c, fleet.members, fleet.parallel)
    if errors:
        for site in sites.values():
            site.close()
        raise Exit(f"cannot reach every host of {fleet.name}; nothing was changed on any host:\n"
                   f"{parallel.describe(errors)}", 1)
    try:
        yield sites
    finally:
        for site in sites.values():
            site.close()


def read_facts(fleet: Fleet, sites: dict[str, Site], observe: bool = False) -> dict[str, Facts]:
    """What every host holds now (``observe``: and what runs there), read at once."""
    try:
        return parallel.run_all(observed.read if observe else Site.facts, sites, fleet.parallel)
    except parallel.HostErrors as error:
        raise Exit(f"cannot read every host of {fleet.name}; nothing was changed:\n{error}", 1) from None


def fleet_drifts(fleet: Fleet, sites: dict[str, Site], facts: dict[str, Facts]) -> dict[str, list]:
    """Each host's drift; a port another process holds on any host stops the deploy before anything changes."""
    drifts = {m.name: drift.find(sites[m.name].config, facts[m.name]) for m in fleet.members}
    taken = [f"{name}: {d.message}" for name, found in drifts.items() for d in found if d.kind == "port-taken"]
    if taken:
        raise Exit(f"{fleet.name}: another process holds a port of the site; nothing was changed on any host:\n  "
                   + "\n  ".join(taken), 1)
    return drifts


def converge_everywhere(fleet: Fleet, sites: dict[str, Site], facts: dict[str, Facts],
                        drifts: dict[str, list]) -> list[str]:
    """Each host that drifted put right, in the switch's order; what was done, by host."""
    done = []
    for group in switch_order(fleet, facts):
        for member in group:
            if drifts.get(member.name):
                with output.on_host(member.name):
                    _, repaired = converge.converge(sites[member.name])
                done += [f"{member.name}: {line}" for line in repaired]
    return done


@contextmanager
def locked(fleet: Fleet, sites: dict[str, Site], facts: dict[str, Facts], purpose: str, force_unlock: bool):
    """Every host's lock, taken in the fleet's order: all of them, or none (those taken are let go)."""
    with ExitStack() as stack:
        for member in fleet.members:
            stack.enter_context(lock.held(sites[member.name], facts[member.name], purpose, force_unlock))
        yield


def fleet_digest(made: dict[str, Bundle]) -> str:
    """The content of the whole fleet's release: every host's bundle, by host."""
    text = "".join(f"{name} {bundle.digest}\n" for name, bundle in sorted(made.items()))
    return hashlib.sha256(text.encode()).hexdigest()


def make_bundles(fleet: Fleet, sites: dict[str, Site], facts: dict[str, Facts],
                 allow_dirty: bool) -> dict[str, Bundle]:
    """The develop eggs released once, then each host's bundle (its programs and overrides) for its
    platform; the distributions are fetched once per platform."""
    for member in fleet.members:  # each host's ports and names against the other sites there
        hostsites.check_neighbours(member.config)
    first = fleet.members[0].name
    wheels = deploys.release_wheels(sites[first], facts[first], allow_dirty)
    made = {}
    for member in fleet.members:
        with output.on_host(member.name):
            made[member.name] = deploys.prepare(sites[member.name], facts[member.name], allow_dirty, wheels)
    return made


def choose_release(fleet: Fleet, facts: dict[str, Facts], digest: str) -> str:
    """The release id for this content: the one a host built before (a failed deploy's), else a new one;
    refused when a host marked it bad."""
    same = [(name, r) for name, f in facts.items() for r in f.releases if bundles.digest_of(r.id) == digest[:8]]
    for name, release in same:
        if release.bad:
            raise Exit(f"release {release.id} has this content and is marked bad on {name} "
                       f"({release.bad.get('reason')}); change something first", 1)
    built = sorted(r.id for _, r in same if r.built)
    return built[-1] if built else bundles.release_id(digest)


def switch_order(fleet: Fleet, facts: dict[str, Facts] | None = None) -> list[tuple[Member, ...]]:
    """The ZEO host first, then the front, then the app hosts in batches of ``[fleet] batch``. With the
    hosts' ``facts``, the app hosts that serve no release yet (a first deploy, a host just added) switch
    together before the batches: there is nothing on them to keep up while the others switch."""
    first = tuple(m for m in fleet.members if "zeo" in m.roles and "app" not in m.roles)
    front = tuple(m for m in fleet.members if "front" in m.roles and "app" not in m.roles and m not in first)
    rest = tuple(m for m in fleet.members if m not in first and m not in front)
    fresh = tuple(m for m in rest if facts is not None and facts[m.name].current is None)
    serving = tuple(m for m in rest if m not in fresh)
    return [group for group in (first, front, fresh) if group] + fleet.batches(serving)


def deploy_fleet(c, fleet: Fleet, force_unlock: bool = False, plan: bool = False, allow_dirty: bool = False) -> None:
    """Deploy the buildout to every host of the fleet as one release."""
    started = time.monotonic()
    with connected(c, fleet) as sites:
        with output.step(f"read {len(sites)} hosts"):
            facts = read_facts(fleet, sites, observe=True)
        drifts = fleet_drifts(fleet, sites, facts)
        dry = plan or any(site.dry for site in sites.values())
        with ExitStack() as stack:
            if not dry:
                stack.enter_context(locked(fleet, sites, facts, "deploy", force_unlock))
            made = make_bundles(fleet, sites, facts, allow_dirty)
            digest = fleet_digest(made)
            serving = all(f.current and f.release(f.current) and bundles.digest_of(f.current) == digest[:8]
                          for f in facts.values())
            if serving and not dry and any(drifts.values()):
                repaired = converge_everywhere(fleet, sites, facts, drifts)
                facts = read_facts(fleet, sites, observe=True)
                serving = all(f.current and bundles.digest_of(f.current) == digest[:8] for f in facts.values())
                for line in repaired:
                    output.say(f"repaired: {line}")
            if serving:
                output.say(f"nothing to deploy: every host of {fleet.name} runs {next(iter(facts.values())).current}")
                return
            release_id = choose_release(fleet, facts, digest)
            if dry:
                for member in fleet.members:
                    with output.on_host(member.name):
                        output.say("\n".join(deploys.describe_plan(sites[member.name], facts[member.name],
                                                                   made[member.name], release_id)))
                output.say("plan only: no host was changed")
                return
            first = sites[fleet.members[0].name]
            notify.send(first, "deploy-started", release_id, who())
            try:
                sent = build_everywhere(fleet, sites, facts, made, release_id)
                before_switch(fleet, sites, facts, release_id)
                switch_everywhere(fleet, sites, facts, release_id)
            except BaseException as error:
                message = parallel.message(error) if not isinstance(error, KeyboardInterrupt) else "interrupted"
                parallel.run(lambda m: log_event(sites[m.name], "deploy-failed", release=release_id, fleet=fleet.name,
                                                 current=facts[m.name].current, error=message),
                             by_name(fleet.members), fleet.parallel)
                notify.send(first, "deploy-failed", release_id, who(), time.monotonic() - started, message)
                raise
            with parallel.interrupts_noted() as noted:  # every host switched: a Ctrl-C now stops nothing
                parallel.run(lambda m: log_event(sites[m.name], "deploy", release=release_id, fleet=fleet.name,
                                                 previous=facts[m.name].current,
                                                 seconds=round(time.monotonic() - started, 1)),
                             by_name(fleet.members), fleet.parallel)
                parallel.run(lambda m: releases.cleanup_releases(sites[m.name], sites[m.name].facts(), release_id),
                             by_name(fleet.members), fleet.parallel)
                notify.send(first, "deploy-succeeded", release_id, who(), time.monotonic() - started)
            if noted.is_set():
                output.say("Ctrl-C came once every host had switched: the deploy was finished")
    commands = sum(site.commands_run for site in sites.values())
    output.say(f"[bold green]deployed {release_id} to {len(sites)} hosts of {fleet.name} in "
               f"{time.monotonic() - started:.1f}s ({sent} bytes sent, {commands} remote commands)[/]")


def build_everywhere(fleet: Fleet, sites: dict[str, Site], facts: dict[str, Facts], made: dict[str, Bundle],
                     release_id: str) -> int:
    """Push and build on every host that lacks the built release, at once; the bytes sent. A host that
    fails: nothing switches anywhere, and what the others built stays for the next deploy."""
    deploys.run_hook_before_deploy(sites[fleet.members[0].name])
    missing = by_name(m for m in fleet.members
                      if not (facts[m.name].release(release_id) and facts[m.name].release(release_id).built))
    for name in sites:
        if name not in missing:
            with output.on_host(name):
                output.say(f"{release_id} is built already")

    def build(member: Member) -> int:
        return deploys.build_release(sites[member.name], facts[member.name], made[member.name], release_id)

    try:
        sent, errors = parallel.run(build, missing, fleet.parallel)
    except parallel.Interrupted as stopped:
        raise Exit(f"interrupted during the build of {release_id}: nothing was switched on any host "
                   f"(built on: {' '.join(stopped.results) or 'none'})", 130) from None
    if errors:
        built = [name for name in sites if name not in errors]
        raise Exit(f"the build of {release_id} failed; nothing was switched on any host"
                   f"{' (built on ' + ' '.join(built) + ': kept for the next deploy)' if built else ''}:\n"
                   f"{parallel.describe(errors)}", 1)
    return sum(sent.values())


def before_switch(fleet: Fleet, sites: dict[str, Site], facts: dict[str, Facts], release_id: str) -> None:
    """The ``before_switch`` hook on every host; the backup schedule and the backup tagged with the
    release that leaves, on the backup host only."""
    parallel.run_all(lambda m: deploys.run_hook_before_switch(sites[m.name], release_id),
                     by_name(fleet.members), fleet.parallel)
    for member in fleet.having("backup"):
        with output.on_host(member.name):
            output.say(schedule.install_schedule(sites[member.name], release_id))
            backups.backup_before_switch(sites[member.name], facts[member.name].current)


class SwitchFailed(Exception):
    """Some hosts failed their switch; every host already switched went back."""

    def __init__(self, errors: dict[str, BaseException], back: str):
        super().__init__(f"{parallel.describe(errors)}\n{back}")
        self.errors = errors


def switch_in_order(fleet: Fleet, sites: dict[str, Site], facts: dict[str, Facts], target: str,
                    one: Callable[[Member], dict | None], what: str = "switch") -> None:
    """``one(member)`` group after group, in the switch's order (``None``: that host had nothing to do).
    A failure raises ``SwitchFailed``; a Ctrl-C lets the group's switches end, then exits 130; both once
    every host already switched is back on what it left."""
    switched: list[Member] = []
    with parallel.interrupts_noted() as noted:
        for group in switch_order(fleet, facts):
            done, errors = parallel.run(one, by_name(group), fleet.parallel)
            switched += [m for m in group if done.get(m.name) is not None]
            if errors or noted.is_set():
                back = go_back(fleet, sites, facts, target, switched)
                if errors:
                    raise SwitchFailed(errors, back)
                raise Exit(f"interrupted during the {what} to {target}: {back}", 130)


def switch_everywhere(fleet: Fleet, sites: dict[str, Site], facts: dict[str, Facts], release_id: str) -> None:
    """Switch group after group; a failure sends every host already switched (and the failing ones) back
    to what they left, marks the release bad on every host, and exits 1."""
    def one(member: Member) -> dict:
        f = facts[member.name]
        with output.step("switch and check"):
            return deploys.switch_and_check(sites[member.name], release_id, f.current, f.color)

    try:
        switch_in_order(fleet, sites, facts, release_id, one)
    except SwitchFailed as failed:
        reason = "; ".join(f"{name}: {parallel.message(e)}" for name, e in failed.errors.items())
        parallel.run(lambda m: releases.mark_bad(sites[m.name], release_id, reason),
                     by_name(fleet.members), fleet.parallel)
        raise Exit(f"the switch to {release_id} failed:\n{failed}; {release_id} marked bad on every host", 1) from None


def go_back(fleet: Fleet, sites: dict[str, Site], facts: dict[str, Facts], release_id: str,
            switched: list[Member]) -> str:
    """Every host in ``switched`` back on the release it left (newest first, the ZEO host last); what
    happened, in words."""
    def back(member: Member) -> None:
        leaving = facts[member.name].current
        if leaving is None:
            return
        verdict = switch.run_switch(sites[member.name], leaving, release_id, live=facts[member.name].color)
        if verdict["result"] != "ok":
            raise Exit(verdict.get("error", "?"), 1)

    errors = {}
    for group in reversed([g for g in switch_order(fleet, facts) if any(m in switched for m in g)]):
        _, failed = parallel.run(back, by_name([m for m in group if m in switched]), fleet.parallel)
        errors.update(failed)
    if errors:
        return (f"going back failed on {' '.join(errors)} (see fab -H {fleet.name} status):\n"
                f"{parallel.describe(errors)}")
    names = " ".join(m.name for m in switched)
    return f"every host is on the release it left ({names + ' went back' if names else 'none had switched'})"



