"""One read of a host: what its root records (``onhost/facts.py``) and what really runs there
(``onhost/observe.py``), in one remote command.

What runs: each program's state and pid as its process manager gives them, and for each pid
the release directory it runs from and when it started; every supervisord of the site; the
processes that listen on the site's ports; the front's process, its config files and, for
HAProxy, each server's state in its backend; the maintenance switch; the newest switch job.
"""
from __future__ import annotations

import json
import time

from .. import commands, onhost
from ..config.hostconfig import HostConfig
from ..front import haproxy, nginx, shared
from ..programs import supervisor, systemd
from ..remote.site import Facts, Site
from ..sites.hostsites import listen_ports

SYSTEM_HAPROXY_PID = "/run/haproxy.pid"
YOUNG = 5.0  # seconds: a program younger than this is looked at twice (a crash loop changes its pid)


def front_pid_file(config: HostConfig) -> str:
    if config.front.server == "nginx":
        return nginx.pid_file(config)
    return SYSTEM_HAPROXY_PID if config.front.control == "systemd" else haproxy.front_dir(config, "run", "haproxy.pid")


def maintenance_file(config: HostConfig) -> str:
    name = "maintenance.inc" if config.front.server == "nginx" else "maintenance.map"
    return haproxy.front_dir(config, name)


def own_front_files(config: HostConfig, live: str) -> dict[str, str]:
    """The front's config files that are this site's alone, by path, as the hostconfig renders them (the
    host's shared frontend is every site's: it is checked when a site deploys)."""
    return {path: text for path, text in haproxy.wanted_files(config, live).items() if path != shared.FRONT_FILE}


def spec(config: HostConfig) -> dict:
    """What ``onhost/observe.py`` looks at for this site."""
    manager = supervisor if config.manager == "supervisor" else systemd
    ports = listen_ports(config)
    wanted = {"root": config.root, "ports": {str(port): who for port, (who, _) in ports.items()},
              "addresses": {str(port): address for port, (_, address) in ports.items()},
              "users": sorted({config.user, config.app_user}), "switch_dir": config.path_on_host(".switch"),
              "programs_command": manager.program_states(config), "pidfiles": {}, "files": {}}
    if config.manager == "supervisor":
        wanted["pidfiles"]["supervisord"] = supervisor.pid_file(config)
        if config.app_user == config.user:  # the socket is ours: asked over XML-RPC, no supervisorctl to start
            wanted["supervisor_socket"] = supervisor.socket_path(config)
    if config.runs_front:
        wanted["pidfiles"]["front"] = front_pid_file(config)
        wanted["files"] = {f"front {path}": path for path in own_front_files(config, "blue")}
        wanted["files"]["maintenance"] = maintenance_file(config)
        if config.front.server == "haproxy" and not shared.shared(config):
            wanted["haproxy"] = {"socket": haproxy.admin_socket(config), "backend": haproxy.backend_name(config)}
    return wanted


def observe_command(config: HostConfig) -> str:
    return commands.python(config.python, onhost.source("observe"), json.dumps(spec(config)))


def read(site: Site) -> Facts:
    """The host's facts with what runs, in one remote command."""
    return site.facts(observe=observe_command(site.config))


def young_programs(facts: Facts) -> dict[str, int]:
    """``{program: pid}`` of the running programs that started less than ``YOUNG`` seconds ago, but those
    whose pid the last successful switch job saw stay up (a crash loop changes the pid)."""
    observed = facts.observed or {}
    programs = (observed.get("programs") or {}).get("programs") or {}
    proven = (observed.get("switch_job") or {}).get("proven") or {}
    now = observed.get("now", time.time())
    return {name: found["pid"] for name, found in programs.items()
            if found.get("process") and now - found["process"]["started"] < YOUNG
            and proven.get(name) != found["pid"]}


def read_settled(site: Site) -> tuple[Facts, dict[str, str]]:
    """``read``, and where a program is young, once more when it is not (bounded): the facts, and the
    programs whose pid changed in between (a crash loop: supervisord starts them again and again)."""
    facts = read(site)
    young = young_programs(facts)
    if not young:
        return facts, {}
    time.sleep(YOUNG)
    again = read(site)
    programs = ((again.observed or {}).get("programs") or {}).get("programs") or {}
    looping = {name: f"its pid went from {pid} to {programs.get(name, {}).get('pid') or 'none'} in {YOUNG:.0f}s"
               for name, pid in young.items() if (programs.get(name) or {}).get("pid") != pid}
    return again, looping
