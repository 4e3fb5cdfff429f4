"""``fab -H NAME sites``: every site that ``hostconfigs/`` puts on NAME's host, side by side.

A site is a hostconfig with the same address and SSH port. Each is read over its own connection
(its own user), read-only: current release, health, the disk its data, backups and releases
use, and its last backup. A site that cannot be read shows why in its row, not as a traceback.
"""
from __future__ import annotations

import json
import re

from invoke import Exit

from ..buildout import profile as buildoutfiles
from .. import commands
from ..config import hostconfig
from ..switch import services
from ..front import shared as sharedfront
from ..config.hostconfig import ConfigError, HostConfig, instance_address
from ..remote.events import last_backup_command
from ..remote.site import Site


def neighbours(config: HostConfig) -> list[HostConfig]:
    """The configs of the sites on ``config``'s host (itself included), by name; those that do not load are
    left out (they deploy nothing)."""
    found = {config.name: config}
    for name in hostconfig.available(config.path.parent):
        try:
            other = hostconfig.load(config.path.parent / f"{name}.cfg")
        except ConfigError:
            continue
        if (other.address, other.port) == (config.address, config.port):
            found.setdefault(other.name, other)
    return [found[name] for name in sorted(found)]


def ports_of(config: HostConfig) -> set[int]:
    """The TCP ports ``config``'s site uses on its host: its front's, its health URLs', and its buildout's
    ``[ports]`` and ``*port*`` / ``*address`` options (as far as this machine can read the buildout)."""
    used = {config.front.http_port, config.front.https_port} if config.front else set()
    used |= {int(p) for program in config.programs for p in re.findall(r":([0-9]+)", program.health_url or "")}
    try:
        profile = buildoutfiles.read_profile(config.buildout_dir / config.buildout_config)
    except (buildoutfiles.ProfileError, OSError):
        return used
    sections = {name: dict(options) for name, options in profile.sections.items()}
    for section, option, value in config.overrides:  # as deploy.cfg sets them over the profile
        sections.setdefault(section, {})[option] = value
    for section, options in sections.items():
        for key, value in options.items():
            if section == "ports" or "port" in key or key.endswith("address"):
                used |= {int(p) for p in re.findall(r"(?<![\w.$])([0-9]{4,5})\b", value) if int(p) < 65536}
    return used


def listen_ports(config: HostConfig) -> dict[int, tuple[str, str | None]]:
    """The ports this site's own processes listen on, which of them, and on which address (None: any): its
    instances' addresses (and their green twins'), its buildout's ``[ports]`` (as far as this machine reads
    it), the front it runs itself."""
    wanted: dict[int, tuple[str, str | None]] = {}
    if config.runs_front and config.front.control == "self":
        bind = None if config.front.bind == "*" else config.front.bind
        wanted.update({config.front.http_port: ("the front", bind), config.front.https_port: ("the front", bind)})
    try:
        profile = buildoutfiles.read_profile(config.buildout_dir / config.buildout_config)
        ports = dict(profile.sections.get("ports", {}))
    except (buildoutfiles.ProfileError, OSError):
        ports = {}
    ports.update({option: value for section, option, value in config.overrides if section == "ports"})
    host = ports.get("host", "").strip()
    host = host if host and "$" not in host else None
    for key, value in sorted(ports.items()):
        if re.fullmatch(r"[0-9]{1,5}", value.strip()) and 0 < int(value) < 65536:  # isdigit() takes ²
            wanted.setdefault(int(value), (f"[ports] {key}", host))
    for program in config.programs:
        for address, name in ((instance_address(program), program.name), (program.green_address, f"{program.name}-green")):
            where, _, port = (address or "").rpartition(":")
            if re.fullmatch(r"[0-9]{1,5}", port):
                wanted[int(port)] = (name, where.strip("[]") or None)
    return wanted


def shares_front(config: HostConfig, other: HostConfig) -> bool:
    """Whether both sites are behind the host's one front (``control = systemd``, the same server)."""
    return all(c.front and c.front.control == "systemd" for c in (config, other)) and \
        config.front.server == other.front.server


def check_ports(config: HostConfig) -> None:
    """Stop (exit 2) when another site on the host uses one of this site's ports, naming both."""
    mine = ports_of(config)
    for other in neighbours(config):
        if other.root == config.root:
            continue  # the same site under another name
        shared = mine & ports_of(other)
        if shares_front(config, other):  # one front listens for both: check_front compares them
            shared -= {config.front.http_port, config.front.https_port}
        if shared:
            raise Exit(f"{config.path}: port {', '.join(map(str, sorted(shared)))} of site {config.name} is also "
                       f"used by site {other.name} ({other.path}) on {config.address}: give one of them other "
                       f"ports; nothing changed", 2)


def claimed_names(config: HostConfig) -> set[str]:
    """The names the host's front routes to the site: its domains, or any name (``*``) without them."""
    return set(config.front.domains) or {sharedfront.ANY_NAME}


def check_front(config: HostConfig) -> None:
    """Stop (exit 2) when another site behind the host's front claims one of this site's domains or wants
    the front to listen otherwise, naming both."""
    for other in neighbours(config):
        if other.root == config.root or not shares_front(config, other):
            continue
        both = sorted(claimed_names(config) & claimed_names(other))
        if both:
            said = ", ".join("any name (no [front] domains)" if name == sharedfront.ANY_NAME else name
                             for name in both)
            raise Exit(f"{config.path}: domain {said} of site {config.name} is also claimed by site {other.name} "
                       f"({other.path}) on {config.address}: the host's front routes a name to one site; remove it "
                       f"from one of them; nothing changed", 2)
        listen = lambda c: (c.front.bind, c.front.http_port, c.front.https_port)
        if listen(config) != listen(other):
            raise Exit(f"{config.path}: site {config.name} wants the host's front on {_listeners(config)}, site "
                       f"{other.name} ({other.path}) on {_listeners(other)}: one front serves both; give them the "
                       f"same [front] bind, http_port and https_port; nothing changed", 2)


def _listeners(config: HostConfig) -> str:
    return f"{config.front.bind} ports {config.front.http_port} and {config.front.https_port}"


def check_neighbours(config: HostConfig) -> None:
    """Before a deploy or push changes anything: no port, and no name of the host's front, taken twice."""
    check_ports(config)
    check_front(config)


def megabytes(kilobytes: str) -> str:
    return f"{int(kilobytes) / 1024:.1f}" if re.fullmatch(r"[0-9]+", kilobytes) else "-"


def describe(c, config: HostConfig) -> tuple[list[str], bool]:
    """One row of the table, and whether the site is healthy."""
    try:
        site = Site(c, config)
    except (Exit, OSError) as error:
        return [config.name, config.root, "-", f"cannot connect: {error}", "-", "-", "-", "-"], False
    with site.connection:
        current = site.facts().current
        places = [config.path_on_host(part) for part in ("var", "backups", "releases")]
        sizes = site.run(commands.join("du", "-sk", "--", *places) + " 2>/dev/null", changes=False, warn=True)
        used = {line.split("\t", 1)[1]: line.split("\t", 1)[0] for line in sizes.stdout.splitlines() if "\t" in line}
        found = site.run(last_backup_command(config), changes=False, warn=True)
        last = json.loads(found.stdout) if found.stdout.strip() else None
        backup = "never" if not last else (f"{last.get('time')} failed" if last["event"] == "backup-failed"
                                           else f"{last.get('time')} {last.get('kind')}")
        healthy = current is None  # a config not deployed yet is not a site in trouble
        if current is None:
            health = "nothing deployed"
        else:
            urls = [url for _, url in services.live(site) if url]
            answer = site.run(services.health_command(site, urls, 3), changes=False, warn=True)
            failed = json.loads(answer.stdout or "{}").get("failed", {u: "no answer" for u in urls})
            running = site.run(services.status_command(site), changes=False, warn=True)
            healthy = not failed and not running.exited
            health = "ok" if healthy else ("programs down" if running.exited else f"{len(failed)} of {len(urls)} failing")
    return [config.name, config.root, current or "-", health,
            *(megabytes(used.get(place, "")) for place in places), config.redact(backup)], healthy


