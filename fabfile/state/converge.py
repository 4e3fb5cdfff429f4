"""Close the difference between what runs and what the hostconfig wants: the drift ``drift.find`` reads.

A port another process holds stops everything before anything changes, the holder named. A
second supervisord (or one whose socket is gone) is stopped by its pid, where it is ours to stop.
A switch job that died without a verdict is undone from its plan: the release it was leaving is
switched to again (through the front: nothing that serves stops), and the next deploy switches
forward as any deploy does. A dead or differing front is written, checked and loaded again; a
program that is down, crash-looping or runs another release is restarted through the front's
drain; maintenance goes off last. Each repair is said in one line; what is still wrong after them
stops the command.
"""
from __future__ import annotations

import json

from invoke import Exit

from .. import commands, output
from ..front import haproxy
from ..remote.site import Facts, Site
from ..switch import job as switch
from ..switch import services
from . import drift, observed
from .drift import Drift

PROGRAM_KINDS = {"program-down", "crash-loop", "other-release", "not-listening"}
FRONT_KINDS = {"front-down", "front-config", "front-rotation"}
MANAGER_KINDS = {"second-manager", "manager-unreachable"}


def refuse_taken_ports(config, drifts: list[Drift], nothing: str = "nothing was changed") -> None:
    """Exit 1, naming each holder, when another process holds a port of the site."""
    taken = [d.message for d in drifts if d.kind == "port-taken"]
    if taken:
        raise Exit(f"{config.label}: {'; '.join(taken)}: stop it or give the site other ports; {nothing}", 1)


def stop_processes(site: Site, pids: list[int], what: str) -> None:
    """SIGTERM, then (after 30 s) SIGKILL, each pid; bounded."""
    tokens = [str(pid) for pid in pids]
    wait = (f"i=0; while kill -0 {' '.join(tokens)} 2>/dev/null && [ $i -lt 300 ]; do sleep 0.1; i=$((i+1)); "
            f"done; kill -KILL {' '.join(tokens)} 2>/dev/null; true")
    site.run(f"{commands.join('kill', '-TERM', *tokens)} 2>/dev/null; {wait}")
    output.say(f"  stopped {what} (pid {' '.join(tokens)})")


def stop_stray_managers(site: Site, facts: Facts) -> str:
    """Every supervisord of the site but the one its pid file names (all of them when none answers)."""
    observed_now = facts.observed or {}
    pid_file = (observed_now.get("pidfiles") or {}).get("supervisord") or {}
    answering = (observed_now.get("programs") or {}).get("exit", 1) == 0 and \
        bool((observed_now.get("programs") or {}).get("programs") or not site.config.programs)
    keep = pid_file.get("pid") if answering else None
    strays = [p for p in observed_now.get("managers") or () if p["pid"] != keep]
    if pid_file.get("alive") and not answering and pid_file.get("pid") not in {p["pid"] for p in strays}:
        strays.append({"pid": pid_file["pid"], "uid": (pid_file.get("process") or {}).get("uid")})
    mine = (observed_now.get("uids") or {}).get(site.config.user)
    foreign = [p for p in strays if p.get("uid") not in (None, mine)]
    if foreign:
        pids = " ".join(str(p["pid"]) for p in foreign)
        raise Exit(f"{site.config.label}: supervisord (pid {pids}) runs for {site.config.root} without answering on "
                   f"its socket, as another user: stop it as root (sudo kill {pids}), then run this again", 1)
    if strays:
        stop_processes(site, [p["pid"] for p in strays], "a supervisord that did not answer or was a second one")
    return f"stopped {len(strays)} stray supervisord"


def undo_dead_job(site: Site, facts: Facts, drifts: list[Drift]) -> str:
    """The release a dead switch job was leaving, serving again (where it had moved ``current``, or left
    programs half switched), and a verdict written for it, so that it counts as dead no more."""
    job = (facts.observed or {}).get("switch_job") or {}
    leaving = job.get("leaving")
    if leaving and leaving != facts.current and facts.release(leaving) and facts.release(leaving).built:
        with output.step(f"undo the dead switch to {job.get('release')}: back to {leaving}"):
            verdict = switch.run_switch(site, leaving, facts.current, live=facts.color)
        if verdict["result"] != "ok":
            raise Exit(f"going back to {leaving} after the dead switch job failed: "
                       f"{site.config.redact(verdict.get('error', '?'))}", 1)
        done = f"the switch job {job['job']} had died: {leaving}, which it was leaving, serves again"
    elif {d.kind for d in drifts} & (PROGRAM_KINDS | {"front-rotation"}):
        services.restart_site(site, False)
        done = f"the switch job {job['job']} had died: every program restarted with {facts.current}"
    else:
        done = f"the switch job {job['job']} had died before it changed anything"
    record = json.dumps({"result": "failed", "bad": False, "job": job["job"], "release": job.get("release"),
                         "leaving": leaving, "error": f"the job died without a verdict; {done}"})
    site.run(commands.write_file(f"{switch.state_dir(site.config)}/{job['job']}.result.json", record))
    return done


def repair(site: Site, facts: Facts, drifts: list[Drift], programs: bool = True) -> list[str]:
    """Close each drift (``programs``: restart what does not run as wanted, too); what was done, in lines."""
    config = site.config
    refuse_taken_ports(config, drifts)
    kinds = {d.kind for d in drifts}
    if "current-missing" in kinds:
        raise Exit(f"{config.label}: current points at {facts.current}, which is not on the host: "
                   f"fab -H {config.name} deploy puts a release back", 1)
    done = []
    if kinds & MANAGER_KINDS:
        done.append(stop_stray_managers(site, facts))
    if "front-down" in kinds:
        with output.step("front"):
            done.append(haproxy.apply(site, facts.color, force=True))
    if "job-died" in kinds:
        done.append(undo_dead_job(site, facts, drifts))
    elif programs and kinds & (PROGRAM_KINDS | MANAGER_KINDS):
        down = "; ".join(d.message for d in drifts if d.kind in PROGRAM_KINDS | MANAGER_KINDS)
        services.restart_site(site, False)
        done.append(f"programs restarted through the front ({down})")
    if kinds & {"front-config", "front-rotation"}:
        with output.step("front"):
            done.append(haproxy.apply(site, observed.read(site).color, force=True))
    if "maintenance-on" in kinds:
        haproxy.set_maintenance(site, False)
        done.append("maintenance page off")
    return done


def converge(site: Site, programs: bool = True) -> tuple[Facts, list[str]]:
    """One read; when it differs from what is wanted, the repairs and a read that shows them done.
    Exit 1 when a drift is still there afterwards."""
    facts, looping = observed.read_settled(site)
    drifts = drift.find(site.config, facts, looping)
    refuse_taken_ports(site.config, drifts)
    if not drifts:
        return facts, []
    for found in drifts:
        output.say(f"[yellow]{found.kind}:[/] {site.config.redact(found.message)}")
    done = repair(site, facts, drifts, programs)
    facts, looping = observed.read_settled(site)
    left = [d for d in drift.find(site.config, facts, looping) if programs or d.kind not in PROGRAM_KINDS]
    if left:
        raise Exit(f"{site.config.label}: still not as deployed after "
                   f"{'; '.join(done) or 'the repairs'}:\n" + "\n".join(f"  {d.message}" for d in left), 1)
    for line in done:
        output.say(f"repaired: {line}")
    return facts, done


def restart_converged(site: Site, everything: bool) -> None:
    """``restart``: what is not as deployed put right first (a stray supervisord, the front, maintenance),
    then the rolling restart."""
    converge(site, programs=False)
    services.restart_site(site, everything)
