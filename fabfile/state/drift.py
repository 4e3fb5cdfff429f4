"""The difference between what runs on a host and what its hostconfig wants there, as a list of drifts.

Pure: it reads the facts of one read (``observed.read``) and says, for each thing that is not as
wanted, what it is, in a line a user can act on, and which kind of trouble it is (the exit code
``fab status`` gives it). Wanted: ``current`` names a release that is there; every program of the
serving set runs, from that release (the front's instances: the programs every switch restarts),
holds its port and keeps its pid; one supervisord; no other process on the site's ports; the
front runs with the config rendered from the hostconfig, the serving set in rotation and the other
one out; maintenance off; no switch job dead without a verdict.
"""
from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass

from ..config.hostconfig import HostConfig, instance_address
from ..config.model import port_of
from ..front import haproxy, nginx
from ..programs import supervisor
from ..remote.site import Facts
from .observed import own_front_files

# ``fab status`` exit codes (docs/operations.md: "fab status for a monitor"); 2 is a config error
NOTHING_DEPLOYED, PROGRAM_DOWN, HEALTH_FAILING, LAST_RUN_FAILED, FRONT_WRONG, MAINTENANCE_ON, PORT_TAKEN = \
    1, 3, 4, 5, 6, 7, 8


@dataclass(frozen=True)
class Drift:
    kind: str       # program-down, crash-loop, other-release, not-listening, second-manager, manager-unreachable,
    #                 front-down, front-config, front-rotation, maintenance-on, job-died, port-taken, current-missing
    message: str
    code: int

    def as_dict(self) -> dict:
        return asdict(self)


def _programs(facts: Facts) -> dict | None:
    """The manager's answer: ``{name: {state, pid, process}}``, or None when it gave none."""
    found = (facts.observed or {}).get("programs")
    return found.get("programs") if found else None


def expected_programs(config: HostConfig, color: str) -> list[tuple[str, str, str | None]]:
    """``(process name, program, port)`` of what serves: under blue/green the ``color`` set's instances."""
    if config.manager != "supervisor":
        return [(p.name, p.name, port_of(instance_address(p))) for p in config.programs]
    found = []
    for name, program, link in supervisor.live_processes(config, color):
        address = program.green_address if link == "green" else instance_address(program)
        found.append((name, program.name, port_of(address)))
    return found



def describe_process(process: dict) -> str:
    command = " ".join(process.get("cmdline") or [])
    return f"pid {process['pid']}: {command[:80]}"


def ours(config: HostConfig, facts: Facts, process: dict) -> bool:
    """Whether a process is the site's: it runs under the root, or a manager or the front started it."""
    observed = facts.observed or {}
    family = {found["pid"] for found in (_programs(facts) or {}).values() if found.get("pid")}
    family |= {p["pid"] for p in observed.get("managers") or ()}
    family |= {found["pid"] for found in (observed.get("pidfiles") or {}).values() if found and found.get("alive")}
    return bool(process.get("under_root")) or process["pid"] in family or process.get("ppid") in family


WILDCARDS = {None, "", "*", "0.0.0.0", "::"}


def overlaps(wanted: str | None, bound: str | None) -> bool:
    """Whether a socket bound to ``bound`` takes the port from the site, which binds ``wanted``."""
    same = lambda address: {"localhost": "127.0.0.1", "::ffff:127.0.0.1": "127.0.0.1"}.get(address, address)
    return wanted in WILDCARDS or bound in WILDCARDS or same(wanted) == same(bound)


def holders(held: dict, wanted: str | None) -> tuple[list[int], bool]:
    """The pids that hold a port where the site binds it (``wanted``), and whether each such socket's
    process was seen; older reads without addresses: every holder."""
    listeners = held.get("listeners")
    if listeners is None:
        return held["pids"], held["visible"]
    mine = [found for found in listeners if overlaps(wanted, found["address"])]
    return sorted({pid for found in mine for pid in found["pids"]}), all(found["pids"] for found in mine)


def port_drifts(config: HostConfig, facts: Facts) -> list[Drift]:
    """The site's ports that another process holds where the site binds them, that process named."""
    observed = facts.observed or {}
    uids = set((observed.get("uids") or {}).values())
    found = []
    for port, held in sorted((observed.get("ports") or {}).items(), key=lambda item: int(item[0])):
        if not held:
            continue
        who = held.get("who") or "the site"
        pids, visible = holders(held, held.get("site_address"))
        listeners = [f for f in held.get("listeners") or () if overlaps(held.get("site_address"), f["address"])]
        socket_uids = {f["uid"] for f in listeners} if held.get("listeners") is not None else set(held.get("uids") or ())
        strangers = [p for p in held["processes"] if p["pid"] in pids and not ours(config, facts, p)]
        if strangers:
            found.append(Drift("port-taken", f"port {port} ({who}) is held by another process: "
                               + "; ".join(describe_process(p) for p in strangers), PORT_TAKEN))
        elif not visible and socket_uids and not socket_uids <= uids:
            found.append(Drift("port-taken", f"port {port} ({who}) is held by a process of uid "
                               f"{' '.join(map(str, sorted(socket_uids)))}, not the site's users", PORT_TAKEN))
    return found


def manager_drifts(config: HostConfig, facts: Facts) -> list[Drift]:
    observed = facts.observed or {}
    if config.manager != "supervisor":
        return []
    managers = observed.get("managers") or []
    pid_file = (observed.get("pidfiles") or {}).get("supervisord")
    found = []
    if len(managers) > 1:
        found.append(Drift("second-manager", f"{len(managers)} supervisord run for {config.root}: "
                           + "; ".join(describe_process(p) for p in managers), PROGRAM_DOWN))
    answer = observed.get("programs") or {}
    deaf = answer.get("exit", 0) != 0 or (not answer.get("programs") and bool(expected_programs(config, facts.color)))
    if pid_file and pid_file["alive"] and deaf:
        found.append(Drift("manager-unreachable", f"supervisord (pid {pid_file['pid']}) runs but does not answer on "
                           f"{supervisor.socket_path(config)}", PROGRAM_DOWN))
    return found


def program_drifts(config: HostConfig, facts: Facts, looping: dict[str, str]) -> list[Drift]:
    programs = _programs(facts)
    if not expected_programs(config, facts.color):
        return []  # a fleet's front host: no program of the site runs here
    if programs is None or (not programs and config.manager == "supervisor"):
        return [] if (facts.observed or {}).get("managers") else \
            [Drift("program-down", "the process manager is not running", PROGRAM_DOWN)]
    observed = facts.observed or {}
    live_release = facts.sets.get(facts.color, facts.current) if config.switch == "bluegreen" else facts.current
    in_front = set(config.front.instances) if config.front else set()
    found = []
    for name, base, port in expected_programs(config, facts.color):
        state = programs.get(name) or {"state": "UNKNOWN", "pid": 0, "process": None}
        process = state.get("process")
        if state["state"] not in ("RUNNING", "active") or not process:
            found.append(Drift("program-down", f"{name} is {state['state'].lower()}"
                               + (" (its pid is gone)" if state["state"] in ("RUNNING", "active") else ""),
                               PROGRAM_DOWN))
            continue
        if name in looping:
            found.append(Drift("crash-loop", f"{name} is crash-looping: {looping[name]}", PROGRAM_DOWN))
            continue
        if base not in in_front:
            continue  # the ZEO server keeps running from the release it started in while its files are unchanged
        if process.get("release") and process["release"] != live_release:
            found.append(Drift("other-release", f"{name} (pid {process['pid']}) runs {process['release']}, not "
                               f"{live_release}", PROGRAM_DOWN))
        held = (observed.get("ports") or {}).get(port) if port else None
        pids, visible = holders(held, held.get("site_address")) if held else ([], True)
        if port and not pids and visible:
            found.append(Drift("not-listening", f"{name} (pid {process['pid']}) does not listen on port {port}",
                               PROGRAM_DOWN))
        elif port and visible and not any(p["pid"] == process["pid"] or p["ppid"] == process["pid"]
                                          for p in held["processes"] if p["pid"] in pids):
            holding = "; ".join(describe_process(p) for p in held["processes"] if p["pid"] in pids)
            found.append(Drift("not-listening", f"port {port} of {name} is held by {holding}, not by {name} "
                               f"(pid {process['pid']})", PROGRAM_DOWN))
    return found


def front_drifts(config: HostConfig, facts: Facts) -> list[Drift]:
    if not config.runs_front:
        return []
    observed = facts.observed or {}
    front = (observed.get("pidfiles") or {}).get("front")
    if not front or not front["alive"]:
        return [Drift("front-down", f"the front ({config.front.server}) does not run", FRONT_WRONG)]
    found = []
    files = observed.get("files") or {}
    for path, text in own_front_files(config, facts.color).items():
        seen = files.get(f"front {path}")
        if seen is None:
            found.append(Drift("front-config", f"the front's config {path} is missing", FRONT_WRONG))
        elif seen["sha256"] != hashlib.sha256(text.encode()).hexdigest():
            found.append(Drift("front-config", f"the front runs another config than the hostconfig's: {path} "
                               f"differs", FRONT_WRONG))
    servers = (observed.get("haproxy") or {}).get("servers")
    if servers is not None and facts.current:
        for name, _, disabled in haproxy.servers(config, facts.color):
            status = servers.get(config.front.server_prefix + name)
            if status is None:
                found.append(Drift("front-rotation", f"the front has no server {name}", FRONT_WRONG))
            elif disabled and not status.startswith("MAINT"):
                found.append(Drift("front-rotation", f"{name} is in the front's rotation ({status}), but the "
                                   f"{facts.color} set serves", FRONT_WRONG))
            elif not disabled and (status.startswith("MAINT") or status.startswith("DRAIN")):
                found.append(Drift("front-rotation", f"{name} is out of the front's rotation ({status})",
                                   FRONT_WRONG))
    maintenance = files.get("maintenance")
    text = (maintenance or {}).get("text") or ""
    on = text == nginx.maintenance_text(True) if config.front.server == "nginx" else "on" in text.split()
    if on:
        found.append(Drift("maintenance-on", "the maintenance page is on (fab maintenance off ends it)",
                           MAINTENANCE_ON))
    return found


def job_drifts(facts: Facts) -> list[Drift]:
    job = (facts.observed or {}).get("switch_job")
    if job and not job["verdict"] and not job["running"]:
        return [Drift("job-died", f"the switch job {job['job']} died without a verdict", LAST_RUN_FAILED)]
    return []


def find(config: HostConfig, facts: Facts, looping: dict[str, str] | None = None) -> list[Drift]:
    """Every difference between what runs and what the hostconfig wants, worst kinds first."""
    if facts.current is None:  # nothing deployed: only what would stop the first deploy
        return port_drifts(config, facts)
    if facts.release(facts.current) is None:
        found = [Drift("current-missing", f"current points at {facts.current}, which is not on the host",
                       PROGRAM_DOWN)]
    else:
        found = manager_drifts(config, facts) + program_drifts(config, facts, looping or {})
    found += port_drifts(config, facts) + front_drifts(config, facts) + job_drifts(facts)
    return found
