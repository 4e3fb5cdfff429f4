"""Fleets: one host config that names several hosts, each with roles, read as one HostConfig per host.

```ini
[fleet]
hosts = front data app1 app2   ; the hosts, in the order their locks are taken
parallel = 10                  ; SSH sessions at once
batch = 1                      ; app hosts switched at once: 1, N or N%
[host]                         ; every host's defaults
root = /srv/site
[host:data]
address = 10.0.0.10
roles = zeo backup
[role:app]
programs = instance1 instance2
```

A role is one of ``ROLES``: ``zeo`` runs the ZEO server (the data lives there), ``app`` the ZEO
clients the front balances, ``front`` the web server in front of every app host, ``backup`` the
backups (on the ZEO host). A value may name ``${host:KEY}`` (the host's own, ``private_address``
too) and ``${fleet:zeo_address}`` (the ZEO host's private address), so one file serves every host.
A config without ``[fleet]`` is a fleet of one host with every role: today's configs.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, replace
from pathlib import Path
from urllib.parse import urlsplit

from invoke import Exit

from . import hostconfig
from .hostconfig import ConfigError, HostConfig
from .schema import plain, typed, unique

ROLES = ("zeo", "app", "front", "backup")
HOST_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_-]{0,62}")
_BATCH = re.compile(r"([1-9][0-9]{0,5})(%?)")


@dataclass(frozen=True)
class Member:
    """One host of the fleet: the fleet's name for it, its roles, its config."""
    name: str
    roles: tuple[str, ...]
    config: HostConfig


@dataclass(frozen=True)
class Fleet:
    name: str
    path: Path
    members: tuple[Member, ...]
    parallel: int = 10
    batch: str = "1"
    declared: bool = False          # a [fleet] section (False: one host, today's config)

    def having(self, role: str) -> tuple[Member, ...]:
        return tuple(m for m in self.members if role in m.roles)

    def member(self, name: str) -> Member:
        found = next((m for m in self.members if m.name == name), None)
        if found is None:
            raise ConfigError(f"{self.path}: no host {name!r} in the fleet ({' '.join(self.names)})")
        return found

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(m.name for m in self.members)

    def batches(self, members: tuple[Member, ...]) -> list[tuple[Member, ...]]:
        """``members`` in batches of ``batch`` hosts (``50%``: half of them, at least one)."""
        count, percent = _BATCH.fullmatch(self.batch).groups()
        size = max(1, len(members) * int(count) // 100) if percent else int(count)
        return [members[i:i + size] for i in range(0, len(members), size)]


def for_host(c) -> Fleet:
    """The fleet ``fab -H NAME`` names (exit 2 when there is none)."""
    name = getattr(c, "host", None)
    if not name:
        raise Exit(f"name the host: fab -H NAME TASK (configs: {', '.join(hostconfig.available())})", 2)
    try:
        return resolve(name)
    except ConfigError as error:
        raise Exit(str(error), 2) from None


def by_name(members) -> dict[str, Member]:
    """Members by their names, in order: what ``parallel.run`` takes."""
    return {m.name: m for m in members}


def resolve(name: str) -> Fleet:
    """The fleet ``fab -H NAME`` names: ``NAME.cfg`` as a fleet, or a one-host fleet of any config."""
    path = hostconfig.CONFIG_DIR / f"{name}.cfg"
    if path.is_file():
        return load(path)
    config = hostconfig.resolve(name)
    return single(config)


def single(config: HostConfig) -> Fleet:
    """A one-host config as a fleet: the host has every role."""
    return Fleet(config.name, config.path, (Member(config.name, ROLES, config),))


def load(path: Path, environ: dict | None = None) -> Fleet:
    """Read a fleet config: its hosts, checked, each with its own HostConfig."""
    path = path.resolve()
    raw = hostconfig.read_layered(path)
    if not hostconfig.is_fleet(raw):
        return single(hostconfig.from_raw(path, raw, environ))
    hosts, roles = _hosts(path, raw), _roles(path, raw)
    _check(path, raw, hosts, roles)
    zeo = next((name for name, own in hosts.items() if "zeo" in own), None)
    references = {"fleet": {"zeo_address": (_private(raw, zeo), path)}} if zeo else {}
    shared = {s: o for s, o in raw.items() if s != "fleet" and not s.startswith(("host:", "role:"))}
    members = []
    for name, own in hosts.items():
        programs = [p for p in _words(raw, "services", "programs")
                    if any(p in roles.get(role, ()) for role in own)]
        if "front" in own and "front" in shared:  # the front's config is checked against the app programs
            programs = [p for p in _words(raw, "services", "programs") if p in roles.get("app", ())] or programs
        sections = {s: o for s, o in shared.items() if not s.startswith("program:") or s[8:] in programs}
        sections["host"] = {**shared.get("host", {}), **{k: v for k, v in raw[f"host:{name}"].items() if k != "roles"}}
        sections["host"].setdefault("private_address", sections["host"]["address"])
        sections["services"] = {**shared.get("services", {}), "programs": (" ".join(programs), path)}
        if "front" not in own and "app" not in own:
            sections.pop("front", None)
        if "front" not in sections:  # the ZEO host: its programs restart when they changed, not each deploy
            sections["deploy"] = {k: v for k, v in shared.get("deploy", {}).items() if k != "switch"}
        config = hostconfig.from_raw(path, sections, environ, references, member=name, roles=own)
        if "front" not in sections:
            config = replace(config, switch="rolling")
        members.append(Member(name, own, config))
    fleet = Fleet(path.stem, path, tuple(members), *_fleet_options(path, raw), declared=True)
    _check_addresses(fleet)
    zeo_port = raw.get("role:zeo", {}).get("port")
    if zeo_port:
        zeo_port = typed("port", zeo_port[0], _where(raw, "role:zeo", "port", path), zeo_port[1])
    return _with_firewall(_with_front(fleet), zeo_port or None)


def _words(raw, section: str, key: str) -> list[str]:
    return raw.get(section, {}).get(key, ("", None))[0].split()


def _where(raw, section: str, key: str | None, path: Path) -> str:
    options = raw.get(section, {})
    origin = options[key][1] if key in options else next((o for _, o in options.values()), path)
    return f"{origin}: [{section}]" + (f" {key}" if key else "")


def _private(raw, name: str) -> str:
    own = {**raw.get("host", {}), **raw[f"host:{name}"]}
    return (own.get("private_address") or own["address"])[0]


def _hosts(path: Path, raw) -> dict[str, tuple[str, ...]]:
    """Each host of ``[fleet] hosts`` with its roles, in that order."""
    names = _words(raw, "fleet", "hosts")
    if not names:
        raise ConfigError(f"{_where(raw, 'fleet', 'hosts', path)}: name the fleet's hosts "
                          f"(a [host:NAME] section each)")
    if len(set(names)) != len(names):
        raise ConfigError(f"{_where(raw, 'fleet', 'hosts', path)}: names a host twice")
    for name in names:  # it names sections, directories, HAProxy servers and log lines
        plain(HOST_NAME, name, _where(raw, "fleet", "hosts", path),
              "a host name: letters, digits, _ and - (not first: -), at most 63")
    for section in raw:
        if section.startswith("host:") and section[5:] not in names:
            raise ConfigError(f"{_where(raw, section, None, path)}: {section[5:]} is not in [fleet] hosts "
                              f"({' '.join(names)})")
    hosts = {}
    for name in names:
        if f"host:{name}" not in raw:
            raise ConfigError(f"{_where(raw, 'fleet', 'hosts', path)}: {name} has no [host:{name}] section "
                              f"(its address and roles)")
        own = unique(tuple(raw[f"host:{name}"].get("roles", ("", None))[0].split()),
                     _where(raw, f"host:{name}", "roles", path))
        if not own:
            raise ConfigError(f"{_where(raw, f'host:{name}', 'roles', path)}: {name} is in no role "
                              f"(give it one or more of {', '.join(ROLES)})")
        for role in own:
            if role not in ROLES:
                raise ConfigError(f"{_where(raw, f'host:{name}', 'roles', path)}: {role!r} is not a role "
                                  f"({', '.join(ROLES)})")
        if "address" not in raw[f"host:{name}"] and "address" not in raw.get("host", {}):
            raise ConfigError(f"{_where(raw, f'host:{name}', None, path)}: {name} has no address")
        hosts[name] = own
    return hosts


def _roles(path: Path, raw) -> dict[str, tuple[str, ...]]:
    """Each ``[role:NAME]``'s programs."""
    roles = {}
    for section in raw:
        if section.startswith("role:"):
            role = section[5:]
            if role not in ROLES:
                raise ConfigError(f"{_where(raw, section, None, path)}: {role!r} is not a role ({', '.join(ROLES)})")
            roles[role] = tuple(_words(raw, section, "programs"))
    return roles


def _check(path: Path, raw, hosts: dict[str, tuple[str, ...]], roles: dict[str, tuple[str, ...]]) -> None:
    """A role no host has, a program in no role or in no [services], a backup host without the ZEO server,
    two ZEO hosts, a front without a [front]: refused, with file, section and key."""
    for name, own in hosts.items():
        if "backup" in own and "zeo" not in own:
            raise ConfigError(f"{_where(raw, f'host:{name}', 'roles', path)}: {name} has the role backup but not "
                              f"zeo: backups run where the ZEO server keeps the data")
    held = {role for own in hosts.values() for role in own}
    for role in roles:
        if role not in held:
            raise ConfigError(f"{_where(raw, f'role:{role}', None, path)}: no host has the role {role} "
                              f"(add it to a [host:NAME] roles)")
    services = _words(raw, "services", "programs")
    for role, programs in roles.items():
        for program in programs:
            if program not in services:
                raise ConfigError(f"{_where(raw, f'role:{role}', 'programs', path)}: {program!r} is not in "
                                  f"[services] programs")
    for program in services:
        if not any(program in programs for programs in roles.values()):
            raise ConfigError(f"{_where(raw, 'services', 'programs', path)}: {program} is in no role's programs "
                              f"(a [role:NAME] programs)")
    for name, own in hosts.items():
        if "front" in own and "front" not in raw:
            raise ConfigError(f"{_where(raw, f'host:{name}', 'roles', path)}: {name} has the role front, and "
                              f"there is no [front] section")
    zeo_hosts = [name for name, own in hosts.items() if "zeo" in own]
    if len(zeo_hosts) > 1:
        raise ConfigError(f"{_where(raw, f'host:{zeo_hosts[1]}', 'roles', path)}: {' and '.join(zeo_hosts)} "
                          f"both have the role zeo: a fleet has one ZEO server")
    if zeo_hosts and not any("backup" in own for own in hosts.values()):
        raise ConfigError(f"{_where(raw, f'host:{zeo_hosts[0]}', 'roles', path)}: no host has the role backup: "
                          f"give it to {zeo_hosts[0]}, which keeps the data")
    if "front" in raw and raw["front"].get("server", ("haproxy",))[0] != "haproxy":
        raise ConfigError(f"{_where(raw, 'front', 'server', path)}: a fleet's front is haproxy (its runtime "
                          f"API takes the app hosts' instances out and back over the network)")


def _fleet_options(path: Path, raw) -> tuple[int, str]:
    parallel, origin = raw.get("fleet", {}).get("parallel", ("10", path))
    parallel = typed("positive", parallel, _where(raw, "fleet", "parallel", path), origin)
    batch = raw.get("fleet", {}).get("batch", ("1",))[0]
    found = _BATCH.fullmatch(batch)
    if not found or (found.group(2) and int(found.group(1)) > 100):
        raise ConfigError(f"{_where(raw, 'fleet', 'batch', path)}: {batch!r} is not 1, a number of hosts "
                          f"or a percentage (50%)")
    return parallel, batch


def _check_addresses(fleet: Fleet) -> None:
    seen: dict[tuple[str, int, str], str] = {}
    for member in fleet.members:
        key = (member.config.address, member.config.port, member.config.root)
        if key in seen:
            raise ConfigError(f"{fleet.path}: [host:{member.name}] address: {member.name} and {seen[key]} are "
                              f"one host ({key[0]}:{key[1]}) with one root ({key[2]}): give each its own")
        seen[key] = member.name


def _with_front(fleet: Fleet) -> Fleet:
    """The front host balances every app host's instances; each app host's switch takes its own out and
    back through the front's runtime API, on the front host's private address."""
    fronts = fleet.having("front")
    if not fronts:
        return fleet
    front_host = fronts[0].config
    servers = []
    for member in fleet.having("app"):
        programs = {p.name: p for p in member.config.programs}
        for name in member.config.front.instances:
            address = hostconfig.instance_address(programs[name])
            check = urlsplit(programs[name].health_url)
            servers.append((f"{member.name}-{name}", address, (check.path or "/") +
                            (f"?{check.query}" if check.query else "")))
    members = []
    for member in fleet.members:
        config = member.config
        if "front" in member.roles:
            config = replace(config, front=replace(config.front, servers=tuple(servers)))
            if "app" not in member.roles:
                config = replace(config, programs=(), switch="rolling")
        elif "app" in member.roles:
            admin = f"{front_host.private_address}:{front_host.front.admin_port}"
            config = replace(config, front=replace(config.front, admin=admin, server_prefix=f"{member.name}-"))
        members.append(replace(member, config=config))
    return replace(fleet, members=tuple(members))


def _with_firewall(fleet: Fleet, zeo_port: int | None) -> Fleet:
    """Ports only the fleet's own hosts reach: ZEO's from the app hosts, the front's runtime API from the
    app hosts, each app host's instances from the front."""
    apps = tuple(m.config.private_address for m in fleet.having("app"))
    fronts = tuple(m.config.private_address for m in fleet.having("front"))
    members = []
    for member in fleet.members:
        config, allowed = member.config, []
        if "zeo" in member.roles and zeo_port:
            allowed.append((zeo_port, apps))
        if "front" in member.roles and config.front and config.front.servers:
            allowed.append((config.front.admin_port, apps))
        if "app" in member.roles and fronts and config.front:
            ports = sorted({int(hostconfig.instance_address(p).rsplit(":", 1)[1]) for p in config.programs
                            if p.name in config.front.instances})
            allowed += [(port, fronts) for port in ports]
        members.append(replace(member, config=replace(config, firewall_from=tuple(allowed))))
    return replace(fleet, members=tuple(members))


def refuse_limit(fleet: Fleet, names: str | None, task: str) -> None:
    """``--limit`` where it would split the release: refused, exit 2."""
    if names:
        raise Exit(f"{task} --limit {names}: refused: {task} moves every host of {fleet.name} to one release "
                   f"together (--limit narrows status and logs)", 2)


def limit(fleet: Fleet, names: str | None) -> Fleet:
    """The fleet narrowed to ``--limit host1,host2``."""
    if names is None or names == "":
        return fleet
    wanted = names.replace(",", " ").split()
    if not wanted:  # "," or " ": not "every host", which is what no --limit says
        raise Exit(f"--limit {names!r}: name one or more of the fleet's hosts ({', '.join(fleet.names)}), "
                   f"separated by commas", 2)
    try:
        return replace(fleet, members=tuple(fleet.member(n) for n in dict.fromkeys(wanted)))
    except ConfigError as error:
        raise Exit(f"--limit {names}: {error}", 2) from None

