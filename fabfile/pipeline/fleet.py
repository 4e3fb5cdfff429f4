"""The hosts a deploy or rollback works on, together: a config without ``[fleet]`` is a fleet of one
host with every role. Every host connected and read at once, locked all or none, its bundle made, the
release id chosen, and switched in the fleet's order (the ZEO host first, the front, then the app hosts
in batches); a failure puts every host that switched back on the release it left."""
from __future__ import annotations

import hashlib
from contextlib import ExitStack, contextmanager, nullcontext
from typing import Callable

from invoke import Exit

from ..build import bundle as bundles
from . import deploy as deploys
from ..remote import lock, parallel
from .. import output
from ..switch import job as switch
from ..build.bundle import Bundle
from ..config.fleet import by_name, Fleet, Member
from ..remote.site import Facts, Site, warn
from ..state import converge, drift, observed


def on_host(fleet: Fleet, name: str):
    """Lines printed in the block start with the host's name on a fleet; one host's go unnamed."""
    return output.on_host(name) if fleet.declared else nullcontext()


def each(fleet: Fleet, work: Callable[[Member], object], members=None) -> tuple[dict, dict[str, BaseException]]:
    """``work(member)`` on every host (or ``members``) at once, at most ``parallel``; the results and
    the errors, by host. The one host of a config without ``[fleet]`` works here, under no name."""
    return parallel.run(work, by_name(fleet.members if members is None else members), fleet.parallel,
                        alone=not fleet.declared)


def each_or_exit(fleet: Fleet, work: Callable[[Member], object], what: str, members=None) -> dict:
    """``each``; any host's error stops here: one host's as it came, a fleet's as one Exit naming each."""
    results, errors = each(fleet, work, members)
    if errors:
        if not fleet.declared:
            raise next(iter(errors.values()))
        raise Exit(f"{what}:\n{parallel.describe(errors)}", 1)
    return results


@contextmanager
def connected(c, fleet: Fleet):
    """Every host's Site, connected at once (at most ``parallel``); one unreachable host: every other
    connection closed, nothing changed anywhere."""
    warn(fleet.members[0].config)
    sites, errors = parallel.open_sites(c, fleet.members, fleet.parallel, alone=not fleet.declared)
    if errors and not fleet.declared:
        raise next(iter(errors.values()))
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


def read_facts(fleet: Fleet, sites: dict[str, Site]) -> dict[str, Facts]:
    """What every host holds now and what runs there, read at once."""
    return each_or_exit(fleet, lambda m: observed.read(sites[m.name]),
                        f"cannot read every host of {fleet.name}; nothing was changed")


def read_settled(fleet: Fleet, sites: dict[str, Site]) -> tuple[dict[str, Facts], dict[str, dict]]:
    """``read_facts``, a young program looked at twice: the facts and the crash-looping programs, by host."""
    read = each_or_exit(fleet, lambda m: observed.read_settled(sites[m.name]),
                        f"cannot read every host of {fleet.name}; nothing was changed")
    return {name: found[0] for name, found in read.items()}, {name: found[1] for name, found in read.items()}


def drifts_of(fleet: Fleet, facts: dict[str, Facts], looping: dict[str, dict] | None = None,
              nothing: str = "nothing was changed") -> dict[str, list]:
    """Each host's drift; a port another process holds on any host stops here, before anything changes."""
    drifts = {m.name: drift.find(m.config, facts[m.name], (looping or {}).get(m.name)) for m in fleet.members}
    if not fleet.declared:
        converge.refuse_taken_ports(fleet.members[0].config, drifts[fleet.members[0].name], nothing)
    taken = [f"{name}: {d.message}" for name, found in drifts.items() for d in found if d.kind == "port-taken"]
    if taken:
        raise Exit(f"{fleet.name}: another process holds a port of the site; nothing was changed on any host:\n  "
                   + "\n  ".join(taken), 1)
    return drifts


def repair(fleet: Fleet, sites: dict[str, Site], facts: dict[str, Facts], drifts: dict[str, list],
           serving: bool) -> tuple[dict[str, Facts], list[str]]:
    """Each host that drifted put right, in the switch's order, and read again; what was done. On a host
    that already serves the content, everything (``converge``); else what the switch does not put right
    by itself (its programs it restarts anyway; a missing ``current`` it replaces)."""
    done = []
    for group in switch_order(fleet, facts):
        for member in group:
            site, found = sites[member.name], drifts.get(member.name)
            if not found:
                continue
            with on_host(fleet, member.name):
                if serving:
                    lines = converge.converge(site)[1]
                else:
                    lines = converge.repair(site, facts[member.name],
                                            [d for d in found if d.kind != "current-missing"], programs=False)
            done += [f"{member.name}: {line}" if fleet.declared else line for line in lines]
    return (read_facts(fleet, sites) if done or any(drifts.values()) else facts), done


@contextmanager
def locked(fleet: Fleet, sites: dict[str, Site], facts: dict[str, Facts], purpose: str, force_unlock: bool):
    """Every host's lock, taken in the fleet's order: all of them, or none (those taken are let go)."""
    with ExitStack() as stack:
        for member in fleet.members:
            stack.enter_context(lock.held(sites[member.name], facts[member.name], purpose, force_unlock))
        yield


def digest(fleet: Fleet, made: dict[str, Bundle]) -> str:
    """The content of the release, 8 hex digits: one host's bundle's own; a fleet's, of every host's
    bundle, by host."""
    if not fleet.declared:
        return made[fleet.members[0].name].digest
    text = "".join(f"{name} {bundle.digest}\n" for name, bundle in sorted(made.items()))
    return hashlib.sha256(text.encode()).hexdigest()[:8]


def serving(facts: dict[str, Facts], content: str) -> bool:
    """Every host's ``current`` is a release on it with this content."""
    return all(f.current and f.release(f.current) and bundles.digest_of(f.current) == content
               for f in facts.values())


def make_bundles(fleet: Fleet, sites: dict[str, Site], facts: dict[str, Facts],
                 allow_dirty: bool) -> dict[str, Bundle]:
    """The develop eggs released once, then each host's bundle (its programs and overrides) for its
    platform; the distributions are fetched once per platform."""
    first = fleet.members[0].name
    wheels = deploys.release_wheels(sites[first], facts[first], allow_dirty)
    made = {}
    for member in fleet.members:
        with on_host(fleet, member.name):
            made[member.name] = deploys.prepare(sites[member.name], facts[member.name], allow_dirty, wheels)
    return made


def release_for(fleet: Fleet, facts: dict[str, Facts], content: str) -> tuple[str, str | None]:
    """The release id for this content (the newest a host built before, a failed deploy's, else a new
    one), and why it may not be deployed (a host marked it bad), or None."""
    same = [(name, r) for name, f in facts.items() for r in f.releases if bundles.digest_of(r.id) == content]
    bad = next(((name, r) for name, r in same if r.bad), None)
    refused = None
    if bad:
        where = f" on {bad[0]}" if fleet.declared else ""
        refused = (f"release {bad[1].id} has this content and is marked bad{where} "
                   f"({bad[1].bad.get('reason')}); change something first")
    built = sorted(r.id for _, r in same if r.built)
    return (built[-1] if built else bundles.release_id(content)), refused


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


class SwitchFailed(Exception):
    """Some hosts failed their switch; every host already switched went back."""

    def __init__(self, errors: dict[str, BaseException], back: str):
        super().__init__(f"{parallel.describe(errors)}\n{back}")
        self.errors = errors


def switch_in_order(fleet: Fleet, sites: dict[str, Site], facts: dict[str, Facts], target: str,
                    one: Callable[[Member], dict | None], what: str = "switch") -> bool:
    """``one(member)`` group after group, in the switch's order (``None``: that host had nothing to do).
    A failure raises ``SwitchFailed`` once every host already switched is back on what it left (one
    host: its own error, its job went back by itself). A Ctrl-C lets the group's switches end; with
    groups still to go, every host goes back and it exits 130; during the last group, the switch is
    whole and it returns True (Ctrl-C came, nothing was cut)."""
    switched: list[Member] = []
    groups = switch_order(fleet, facts)
    with parallel.interrupts_noted() as noted:
        for index, group in enumerate(groups):
            done, errors = each(fleet, one, group)
            switched += [m for m in group if done.get(m.name) is not None]
            if errors and not fleet.declared:
                raise next(iter(errors.values()))
            if errors or (noted.is_set() and index < len(groups) - 1):
                back = go_back(fleet, sites, facts, target, switched)
                if errors:
                    raise SwitchFailed(errors, back)
                raise Exit(f"interrupted during the {what} to {target}: {back}", 130)
        return noted.is_set()


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
        _, failed = each(fleet, back, [m for m in group if m in switched])
        errors.update(failed)
    if errors:
        return (f"going back failed on {' '.join(errors)} (see fab -H {fleet.name} status):\n"
                f"{parallel.describe(errors)}")
    names = " ".join(m.name for m in switched)
    return f"every host is on the release it left ({names + ' went back' if names else 'none had switched'})"



