"""The switch from this side: write the plan, start the job on the host, follow it, read its verdict.

The job (``onhost/switch.py``) runs detached on the host, so a client that dies
(Ctrl-C, SIGKILL, a dropped connection) leaves it to finish or go back by itself;
``<root>/.switch/`` keeps its plan, its log and its verdict for the next command.
"""
from __future__ import annotations

import json
import shlex
import sys
import uuid
from datetime import datetime, timezone

from invoke import Exit, UnexpectedExit

from . import commands, front, nginx, onhost, supervisor, systemd
from .hostconfig import HostConfig
from .site import Site, who


class Interrupted(Exception):
    """The client stopped following; the job goes on on the host."""


def _manager(config: HostConfig):
    return {"supervisor": supervisor, "systemd": systemd}[config.manager]


def state_dir(config: HostConfig) -> str:
    return config.path_on_host(".switch")


def running_programs(config: HostConfig) -> str:
    """The names of the programs that run, one per line (never fails)."""
    if config.manager == "supervisor":
        return f"{{ {supervisor.status(config)} 2>/dev/null || true; }} | awk '$2 == \"RUNNING\" {{print $1}}'"
    script = 'slug=$1; shift; for name; do systemctl is-active --quiet "$slug-$name.service" && echo "$name"; done; true'
    return commands.join("sh", "-c", script, "sh", systemd.site_slug(config), *(p.name for p in config.programs))


def front_plan(config: HostConfig, live: str) -> dict:
    """How the job talks to the front: HAProxy's admin socket, or nginx's upstream file and reload."""
    common = {"kind": config.front.server, "backend": front.backend_name(config),
              "drain_timeout": config.front.drain_timeout}
    if config.front.server == "haproxy":
        configs = ({color: front.render_config(config, color) for color in ("blue", "green")}
                   if config.switch == "bluegreen" else None)
        return {**common, "socket": front.admin_socket(config), "configs": configs,
                "config_path": front.config_path(config)}
    return {**common, "servers": nginx.servers(config), "enabled": nginx.enabled(config, live),
            "upstream_file": front.front_dir(config, "conf", "upstream.inc"), "pid_file": nginx.pid_file(config),
            "reload": nginx.reload_command(config)}


def build_plan(config: HostConfig, release: str, leaving: str | None, job: str, *,
               restart_all: bool = False, mode: str | None = None, live: str = "blue") -> dict:
    """Everything the job needs, commands built here from quoted tokens."""
    manager = _manager(config)
    processes = supervisor.processes(config) if config.manager == "supervisor" else \
        [(p.name, p, "current") for p in config.programs]
    names = [name for name, _, _ in processes]
    return {
        "job": job, "root": config.root, "state_dir": state_dir(config), "who": who(),
        "release": release, "leaving": leaving, "mode": mode or config.switch, "restart_all": restart_all,
        "health_timeout": config.health_timeout,
        "programs": [{"name": name, "base": p.name, "color": None if link == "current" else link,
                      "health_url": p.green_health_url if link == "green" else p.health_url,
                      "command": p.command, "script": shlex.split(p.command)[0]} for name, p, link in processes],
        "keep_warm": config.front.keep_warm if config.front else 0,
        "manager_config": supervisor.CONFIG_IN_RELEASE if config.manager == "supervisor" else None,
        "front_instances": list(config.front.instances) if config.front else [],
        "front": front_plan(config, live) if config.front else None,
        "commands": {
            "load": manager.start(config, []),
            "start": {name: manager.start(config, [name]) for name in names},
            "stop": {name: manager.stop(config, [name]) for name in names},
            "stop_all": manager.stop(config, list(reversed(names))),
            "running": running_programs(config),
            "status": manager.status(config),
        },
        "secrets": sorted(config.secrets),
    }


def new_job_id() -> str:
    return f"{datetime.now(timezone.utc):%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:6]}"


class _Redacted:
    """A stream for Fabric's output that takes secrets out before it prints."""

    def __init__(self, config: HostConfig):
        self.config = config

    def write(self, text: str) -> None:
        sys.stdout.write(self.config.redact(text))

    def flush(self) -> None:
        sys.stdout.flush()


def start_job(site: Site, plan: dict) -> str:
    """Write the plan and the job's script, start it detached; its pid."""
    directory = state_dir(site.config)
    job = plan["job"]
    site.run(commands.and_then(
        "umask 077", commands.make_directories(directory, mode="0700"),
        commands.write_file(f"{directory}/switch.py", onhost.source("switch")),
    ))
    # over SFTP, 0600: its health URLs and secrets never show in the process list
    site.write_private(f"{directory}/{job}.json", json.dumps(plan))
    # setsid: its own session, so the end of ours sends it no SIGHUP; no terminal, no stdin. Only the
    # setsid is in the background (not a subshell with our output open, which would hold the session)
    job_command = commands.join(site.config.python, f"{directory}/switch.py", f"{directory}/{job}.json")
    start = (f"cd {shlex.quote(site.path())} || exit 1; setsid {job_command}"
             f" </dev/null >{shlex.quote(f'{directory}/{job}.log')} 2>&1 & echo $!")
    return site.run(start).stdout.strip()


def follow(site: Site, job: str, pid: str) -> dict:
    """Print the job's log as it grows, until it ends; its verdict."""
    directory = state_dir(site.config)
    log = f"{directory}/{job}.log"
    try:
        follower = commands.python(site.config.python, onhost.source("follow"), log,
                                   f"{directory}/{job}.result.json", pid)
        site.connection.run(follower, hide=False, warn=True,
                            in_stream=False, out_stream=_Redacted(site.config), err_stream=_Redacted(site.config))
    except KeyboardInterrupt:
        raise Interrupted(job) from None
    return read_verdict(site, job)


def read_verdict(site: Site, job: str) -> dict:
    directory = state_dir(site.config)
    try:
        text = site.run(commands.join("cat", f"{directory}/{job}.result.json"), changes=False).stdout
    except UnexpectedExit:
        log = site.run(commands.join("tail", "-n", "5", f"{directory}/{job}.log"), changes=False, warn=True)
        return {"result": "failed", "bad": False,
                "error": f"the switch job left no verdict: {' / '.join(log.stdout.strip().splitlines())}"}
    return json.loads(text)


def run_switch(site: Site, release: str, leaving: str | None, **options) -> dict:
    """Switch to ``release`` on the host and wait for the verdict: ``ok``, ``rolled-back`` or ``failed``."""
    plan = build_plan(site.config, release, leaving, new_job_id(), **options)
    if site.dry:
        print(f"[dry] switch job: {plan['mode']} to {release}")
        return {"result": "ok", "restarted": {}}
    pid = start_job(site, plan)
    try:
        return follow(site, plan["job"], pid)
    except Interrupted:
        raise Exit(f"interrupted: the switch to {release} goes on on the host and finishes or goes back by "
                   f"itself (its log: {state_dir(site.config)}/{plan['job']}.log); see fab -H "
                   f"{site.config.name} status", 130) from None


def describe(verdict: dict) -> str:
    restarted = verdict.get("restarted") or {}
    return ", ".join(f"{name} ({why})" for name, why in restarted.items()) or "nothing"
