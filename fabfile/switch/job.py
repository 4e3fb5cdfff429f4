"""The switch from this side: write the plan, start the job on the host, follow it, read its verdict.

The job (``onhost/switch.py``) runs detached on the host, so a client that dies
(Ctrl-C, SIGKILL, a dropped connection) leaves it to finish or go back by itself;
``<root>/.switch/`` keeps its plan, its log and its verdict for the next command.
"""
from __future__ import annotations

import shlex

from invoke import Exit

from .. import commands, onhost
from ..front import haproxy as front, nginx
from . import hooks
from ..remote import jobs
from ..programs import supervisor, systemd
from ..config.hostconfig import HostConfig, instance_address
from ..config.model import port_of, secret_pattern
from ..remote.site import Site, who


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
        return {**common, "socket": config.front.admin or front.admin_socket(config), "configs": configs,
                "config_path": front.config_path(config), "tcp": bool(config.front.admin),
                "prefix": config.front.server_prefix}
    return {**common, "servers": nginx.servers(config), "enabled": nginx.enabled(config, live),
            "upstream_file": front.front_dir(config, "conf", "upstream.inc"), "pid_file": nginx.pid_file(config),
            "reload": nginx.reload_command(config)}


def build_plan(config: HostConfig, release: str, leaving: str | None, job: str, *,
               restart_all: bool = False, mode: str | None = None, live: str = "blue",
               with_hooks: bool = False) -> dict:
    """Everything the job needs, commands built here from quoted tokens; ``with_hooks`` (a deploy): the
    ``after_switch`` hook, a failure of the switch, and ``after_rollback`` once it went back."""
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
                      "port": port_of(p.green_address if link == "green" else instance_address(p)),
                      "command": p.command, "script": shlex.split(p.command)[0]} for name, p, link in processes],
        "min_uptime": config.min_uptime,
        "keep_warm": config.front.keep_warm if config.front else 0,
        "manager_config": supervisor.CONFIG_IN_RELEASE if config.manager == "supervisor" else None,
        # ours when the deploy login runs supervisord: asked over XML-RPC (else through the commands, sudo)
        "supervisor_socket": supervisor.socket_path(config)
        if config.manager == "supervisor" and config.app_user == config.user else None,
        "front_instances": list(config.front.instances) if config.front else [],
        "front": front_plan(config, live) if config.front else None,
        "commands": {
            "load": manager.start(config, []),
            "start": {name: manager.start(config, [name]) for name in names},
            "stop": {name: manager.stop(config, [name]) for name in names},
            "stop_all": manager.stop(config, list(reversed(names))),
            "running": running_programs(config),
            "pid": {name: manager.pid_of(config, name) for name in names},
            "status": manager.status(config),
        },
        "secret_pattern": secret_pattern(config.secrets).pattern if config.secrets else None,
        "hooks": {name: hooks.job_hook(config, name, config.path_on_host("current"))
                  for name in ("after_switch", "after_rollback")} if with_hooks else {},
    }


def run_switch(site: Site, release: str, leaving: str | None, **options) -> dict:
    """Switch to ``release`` on the host and wait for the verdict: ``ok``, ``rolled-back`` or ``failed``."""
    plan = build_plan(site.config, release, leaving, jobs.new_job_id(), **options)
    if site.dry:
        print(f"[dry] switch job: {plan['mode']} to {release}")
        return {"result": "ok", "restarted": {}}
    directory = state_dir(site.config)
    try:
        return jobs.run(site, directory, plan["job"], plan, f"{directory}/switch.py", what="switch job",
                        prepare=commands.write_file(f"{directory}/switch.py", onhost.source("switch")))
    except jobs.Interrupted:
        raise Exit(f"interrupted: the switch to {release} goes on on the host and finishes or goes back by "
                   f"itself (its log: {state_dir(site.config)}/{plan['job']}.log); see fab -H "
                   f"{site.config.name} status", 130) from None


def what_serves(site: Site, verdict: dict, leaving: str | None) -> str:
    """Where the host is after a switch that did not succeed, in words: read back, never assumed."""
    if verdict.get("went_back", True):
        return f"{leaving or 'no release'} is current again"
    found = site.run(f"readlink {shlex.quote(site.path('current'))} || true", changes=False, warn=True)
    current = found.stdout.strip().rpartition("/")[2] if found and found.stdout.strip() else "nothing"
    if verdict.get("died"):
        return (f"the switch job died before its end: current is {current} now (read back), the programs may "
                f"be half switched; fab -H {site.config.name} deploy (or status) puts it right")
    return f"going back to {leaving or 'nothing'} failed too (current is {current}, read back): see fab -H " \
           f"{site.config.name} status"


def describe(verdict: dict) -> str:
    restarted = verdict.get("restarted") or {}
    return ", ".join(f"{name} ({why})" for name, why in restarted.items()) or "nothing"
