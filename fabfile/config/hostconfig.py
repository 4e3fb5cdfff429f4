"""Host configs: ``hostconfigs/NAME.cfg`` read, layered, interpolated and checked.

A config is INI read with configparser (``=`` is the only delimiter, so buildout
style ``section:option`` keys work in ``[overrides]``). ``[hostconfig] extends``
layers files like buildout's ``extends``: the bases first, later files win.
Values may name ``${env:NAME}`` (from ``.env`` beside ``hostconfigs/`` or the
environment; such values are secrets and get redacted wherever we print) and
``${here}`` (the directory of the file the value comes from). ``$$`` is a ``$``.
Refused: paths out of their base, a system root, line breaks outside lists, unplain names or URLs.
"""
from __future__ import annotations

import dataclasses
import getpass
import ipaddress
import os
import posixpath
import re
from pathlib import Path

from ..backups import offsite as offsites
from ..paths import PROJECT
from . import crb
from .layers import dotenv, interpolate, layered, read_layered  # noqa: F401  (read_layered: fleet.py)
from .model import (LETS_ENCRYPT, MAX_HAPROXY_SOCKET, MAX_SOCKET_PATH, ConfigError, Front, HostConfig,  # noqa: F401
                    Program, instance_address)
from .schema import (ADDRESS, BACKUP_LOCATIONS, EMAIL, FRONT_CONTROLS, FRONT_SERVERS, FRONT_TLS, HOSTNAME, MANAGERS,
                     REQUIRED, SCHEMA, SITE_PATH, SWITCHES, SYSLOG_FACILITIES, check_known, origin_of, schema_of, typed,
                     unique)
from .secrets import secret_pattern  # noqa: F401  (the name the rest of fabfile/ takes it by)

# DEPLOY_HOSTCONFIGS points elsewhere (tests, or one checkout serving several projects)
CONFIG_DIR = Path(os.environ.get("DEPLOY_HOSTCONFIGS") or PROJECT / "hostconfigs")


def available(config_dir: Path = CONFIG_DIR) -> list[str]:
    """Names of the host configs in ``config_dir``."""
    return sorted(p.stem for p in config_dir.glob("*.cfg") if not (p.stem.startswith("base") or p.stem.endswith("-base")))


def resolve(name: str, config_dir: Path = CONFIG_DIR, environ: dict | None = None) -> HostConfig:
    """The config that ``fab -H NAME`` means: ``NAME.cfg``, else the one whose address is NAME."""
    path = config_dir / f"{name}.cfg"
    if path.is_file():
        return load(path, environ)
    broken = []
    for candidate in available(config_dir):
        try:  # one broken config must not stop the others from being found
            config = load(config_dir / f"{candidate}.cfg", environ)
        except ConfigError as error:
            broken.append(f"{candidate} ({str(error).replace(str(config_dir) + '/', '')})")
            continue
        if config.address == name:
            return config
    names = ", ".join(available(config_dir)) or "none"
    unread = f"; skipped, they do not load: {'; '.join(broken)}" if broken else ""
    raise ConfigError(f"no host config for {name!r} in {config_dir} (there are: {names}{unread})")


def load(path: Path, environ: dict | None = None) -> HostConfig:
    """Read ``path`` with its bases, check every key, and build the HostConfig."""
    path = path.resolve()
    raw = layered(path, ())
    if is_fleet(raw):
        hosts = raw.get("fleet", {}).get("hosts", ("",))[0].split()
        raise ConfigError(f"{path}: is a fleet of {len(hosts)} hosts ({' '.join(hosts)}): this task takes one "
                          f"host (the fleet's tasks: deploy, rollback, releases, status, logs, backup)")
    return from_raw(path, raw, environ)


def is_fleet(raw: dict) -> bool:
    """Whether layered sections describe a fleet (``[fleet]``, ``[host:NAME]`` or ``[role:NAME]``)."""
    return any(section == "fleet" or section.startswith(("host:", "role:")) for section in raw)


def from_raw(path: Path, raw, environ: dict | None = None, references: dict | None = None,
             **fields) -> HostConfig:
    """The HostConfig of layered sections; ``references`` are more sections that values may name
    (a fleet's ``${fleet:zeo_address}``), ``fields`` set after the build (a fleet host's name and roles)."""
    path = path.resolve()
    if environ is None:
        environ = {**dotenv(path.parent.parent / ".env"), **os.environ}
        environ = {k: v for k, v in environ.items() if v is not None}
    lookup = {**raw, **(references or {})}
    secrets: set[str] = set()
    values: dict[str, dict[str, tuple[str, Path]]] = {}
    for section, options in raw.items():
        if not options:
            check_known(section, None, f"{path}: [{section}]")
        values.setdefault(section, {})
        for key, (value, origin) in options.items():
            where = f"{origin}: [{section}] {key}"
            check_known(section, key, where)
            expanded = interpolate(value, lookup, origin, environ, secrets, where, ())
            values.setdefault(section, {})[key] = (expanded, origin)
    for key, (value, origin) in values.get("green", {}).items():
        if any(secret and secret in value for secret in secrets):
            raise ConfigError(f"{origin}: [green] {key}: holds a ${{env:...}} value; [green] options are written "
                              f"into the release, so a secret goes in [overrides] (kept in <root>/secrets.cfg)")
    for key, (value, origin) in values.get("overrides", {}).items():
        if any(secret and "${" in secret and secret in value for secret in secrets):
            raise ConfigError(f"{origin}: [overrides] {key}: a ${{env:...}} value holds '${{', which buildout would "
                              f"take for a reference (it has no way to write it literally); change the secret")
    for section, key in sorted(REQUIRED):
        if not values.get(section, {}).get(key, ("",))[0].strip():
            raise ConfigError(f"{path}: [{section}] {key} is required")
    try:
        warnings = _backup_from_crb(values)
        config = _build(path, values, frozenset(s for s in secrets if s), warnings)
    except ConfigError as error:
        raise ConfigError(without_secrets(str(error), raw, values, frozenset(s for s in secrets if s))) from None
    return dataclasses.replace(config, **fields) if fields else config


_WHERE = re.compile(r"(?P<where>.*?: \[(?P<section>[^\]\n]+)\] (?P<key>[^\s:]+)): (?P<reason>.*)", re.S)
_QUOTED = re.compile(r"'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\"")
_ENV_NAME = re.compile(r"\$\{env:([\w.-]+)\}")


def without_secrets(message: str, raw, values, secrets: frozenset[str]) -> str:
    """A config error as it may be shown: a key whose value holds a ``${env:...}`` secret is named, with
    what is wrong and without its value (nor any part of it: a port, a host); other secrets as ``***``."""
    if not secrets:
        return message
    pattern = secret_pattern(secrets)
    found = _WHERE.fullmatch(message)
    if found:
        value = values.get(found["section"], {}).get(found["key"], ("",))[0]
        if pattern.search(value):
            names = _ENV_NAME.findall(raw.get(found["section"], {}).get(found["key"], ("",))[0])
            reason = pattern.sub("***", found["reason"])
            reason = _QUOTED.sub(lambda quoted: "***" if any(quoted[0][1:-1] in secret for secret in secrets)
                                 else quoted[0], reason)  # what the check quoted of the value: a part of a secret
            first, space, rest = reason.partition(" ")  # "{number} is out of range": the value as read
            if (len(first) >= 4 or re.search("[0-9]", first)) and any(first in secret for secret in secrets):
                reason = f"***{space}{rest}"
            source = " and ".join(f"${{env:{name}}}" for name in names) or "${env:...}"
            return (f"{found['where']}: its value, from {source} (a secret, not shown), is wrong: {reason}")
    return pattern.sub("***", message)


def _backup_from_crb(values) -> tuple[str, ...]:
    """``values["backup"]`` in our keys: collective.recipe.backup's names translated (``crb.py``), over
    the options of the buildout's CRB part; what means nothing here, in sentences."""
    backup = values.get("backup", {})
    said: list[str] = []
    merged: dict[str, tuple[str, Path]] = {}
    buildout = values.get("buildout", {})
    if "directory" in buildout:
        directory, origin = buildout["directory"]
        profile = typed("localpath", directory, f"{origin}: [buildout] directory", origin) / \
            buildout.get("config", ("production.cfg",))[0]
        root_value, root_origin = values["host"]["root"]
        root = typed("root", root_value, f"{root_origin}: [host] root", root_origin)
        shared_value, shared_origin = buildout.get("shared", ("var", origin))
        shared = typed("release_paths", shared_value, f"{shared_origin}: [buildout] shared", shared_origin)
        try:
            from_part, part_said = crb.from_buildout(profile, root, shared)
        except crb.CRBError as error:
            raise ConfigError(str(error)) from None
        merged.update({key: (value, profile) for key, value in from_part.items()})
        said += part_said
    own = {key: value for key, value in backup.items() if key not in crb.OPTIONS}
    for origin in dict.fromkeys(origin for _, origin in backup.values()):
        named = {key: value for key, (value, at) in backup.items() if key in crb.OPTIONS and at == origin}
        try:
            translated, more = crb.translate(named, f"{origin}: [backup]")
        except crb.CRBError as error:
            raise ConfigError(str(error)) from None
        said += more
        for key, value in translated.items():
            if key in own and key not in named:
                name = next(n for n in named if crb.OPTIONS[n].ours == key)
                raise ConfigError(f"{origin}: [backup] {name}: sets {key}, which [backup] {key} sets too "
                                  f"({own[key][1]}): give one of them")
            merged[key] = (value, origin)
    merged.update(own)
    if backup or merged:
        values["backup"] = merged
    return tuple(said)


def _build(path: Path, values, secrets: frozenset[str], warnings: tuple[str, ...] = ()) -> HostConfig:
    def get(section: str, key: str, default=None):
        if key not in values.get(section, {}):
            return default
        value, origin = values[section][key]
        schema = schema_of(section)
        return typed(schema.get(key) or schema["*"], value, f"{origin}: [{section}] {key}", origin)

    manager = get("services", "manager", "supervisor")
    if manager not in MANAGERS:
        origin = values["services"]["manager"][1]
        raise ConfigError(f"{origin}: [services] manager: {manager!r} is not one of {', '.join(MANAGERS)}")
    names = get("services", "programs", ())
    for section in values:
        if section.startswith("program:") and section[8:] not in names:
            origin = next(iter(values[section].values()), (None, path))[1]
            raise ConfigError(f"{origin}: [{section}] names a program missing from [services] programs")
    programs = tuple(
        Program(name, get(f"program:{name}", "command", f"bin/{name}"), get(f"program:{name}", "health_url"),
                get(f"program:{name}", "address"), get(f"program:{name}", "green_address"))
        for name in names
    )
    for program in programs:
        if manager == "supervisor" and re.search(r"\s[;#]", program.command):
            raise ConfigError(f"{origin_of(values, f'program:{program.name}', 'command')}: [program:{program.name}] "
                              f"command: has a ';' or '#' after a space: supervisor's config reads the rest of the line "
                              f"as a comment, and has no way to escape it; write the word without the space before "
                              f"it (or run the command from a script)")
        for key in ("address", "green_address"):
            address = getattr(program, key)
            found = ADDRESS.fullmatch(address) if address is not None else True
            if not found or (address is not None and not 1 <= int(found["port"]) <= 65535):
                raise ConfigError(f"{origin_of(values, f'program:{program.name}', key)}: [program:{program.name}] "
                                  f"{key}: {address!r} is not host:port with a port 1-65535 (127.0.0.1:8081)")
    front = _front(path, values, get, programs) if "front" in values else None
    switch = get("deploy", "switch", "rolling" if front else "stopstart")
    if switch not in SWITCHES:
        raise ConfigError(f"{origin_of(values, 'deploy', 'switch')}: [deploy] switch: {switch!r} is not one of "
                          f"{', '.join(SWITCHES)}")
    if switch != "stopstart" and not front:
        raise ConfigError(f"{origin_of(values, 'deploy', 'switch')}: [deploy] switch = {switch} needs a [front] "
                          f"that can take instances out (without one: stopstart)")
    root = get("host", "root")
    socket = f"{root}/var/run/supervisor.sock"
    if manager == "supervisor" and len(socket.encode()) > MAX_SOCKET_PATH:
        raise ConfigError(f"{origin_of(values, 'host', 'root')}: [host] root: too long: supervisor's socket "
                          f"{socket} would have {len(socket.encode())} bytes, a unix socket holds "
                          f"{MAX_SOCKET_PATH} (choose a shorter root)")
    admin = f"{root}/front/run/admin.sock"  # HAProxy run by the site (control = self): its runtime API
    if front and front.server == "haproxy" and front.control == "self" and len(admin.encode()) > MAX_HAPROXY_SOCKET:
        raise ConfigError(f"{origin_of(values, 'host', 'root')}: [host] root: too long: HAProxy's admin socket "
                          f"{admin} would have {len(admin.encode())} bytes, HAProxy takes {MAX_HAPROXY_SOCKET} "
                          f"(choose a shorter root)")
    user = get("host", "user", getpass.getuser())
    storages = {posixpath.join(f"{root}/var", posixpath.dirname(get("backup", "filestorage", "filestorage/Data.fs"))),
                posixpath.join(f"{root}/var", get("backup", "blobstorage", "blobstorage"))} - {f"{root}/var/", f"{root}/var"}
    for key in BACKUP_LOCATIONS:  # a backup inside the data it keeps: a restore swaps it away, a backup copies it
        location = get("backup", key)
        inside = next((s for s in storages if location and (location + "/").startswith(s.rstrip("/") + "/")), None)
        if inside:
            raise ConfigError(f"{origin_of(values, 'backup', key)}: [backup] {key}: {location!r} is inside the "
                              f"data it backs up ({inside}); give a directory of its own")
    if get("notify", "syslog") not in (None, *SYSLOG_FACILITIES):
        raise ConfigError(f"{origin_of(values, 'notify', 'syslog')}: [notify] syslog: {get('notify', 'syslog')!r} "
                          f"is not a syslog facility ({', '.join(SYSLOG_FACILITIES)})")
    overrides, green = (tuple(
        (*key.split(":", 1), get(section, key)) for key in sorted(values.get(section, {}))
    ) for section in ("overrides", "green"))
    if switch == "bluegreen":
        _check_bluegreen(values, manager, front, programs, green)
    elif green:
        raise ConfigError(f"{origin_of(values, 'green', '')}: [green]: its options are used only with [deploy] "
                          f"switch = bluegreen (switch is {switch}): remove [green], or switch blue/green")
    return HostConfig(
        name=path.stem, path=path,
        address=get("host", "address"), port=get("host", "port", 22), user=user,
        private_address=get("host", "private_address", get("host", "address")),
        app_user=get("host", "app_user", user), root_user=get("host", "root_user", "root"),
        root=root, identity=get("host", "identity"),
        known_hosts=get("host", "known_hosts", path.parent / "known_hosts"),
        packages=get("host", "packages", ()), harden=get("host", "harden", False), store=get("host", "store"),
        firewall=get("host", "firewall", True), firewall_ports=get("host", "firewall_ports", ()),
        security_upgrades=get("host", "security_upgrades", True), swap=get("host", "swap", "auto"),
        buildout_dir=get("buildout", "directory"),
        buildout_config=get("buildout", "config", "production.cfg"),
        development_config=get("buildout", "development", "development.cfg"),
        python=get("buildout", "python", "python3"), shared=get("buildout", "shared", ("var",)),
        index=get("buildout", "index"),
        manager=manager, programs=programs,
        keep_releases=get("deploy", "keep_releases", 5),
        health_timeout=get("deploy", "health_timeout", 60), min_uptime=_min_uptime(values, get),
        allow_dirty=get("deploy", "allow_dirty", True), switch=switch, front=front,
        backup_keep=get("backup", "keep", 2),
        backup_keep_blob_days=get("backup", "keep_blob_days", 14),
        backup_before_deploy=get("backup", "before_deploy", True),
        backup_filestorage=get("backup", "filestorage", "filestorage/Data.fs"),
        backup_blobstorage=get("backup", "blobstorage", "blobstorage"),
        backup_additional_filestorages=get("backup", "additional_filestorages", ()),
        backup_locations=tuple((key, get("backup", key)) for key in BACKUP_LOCATIONS
                               if get("backup", key) is not None),
        backup_pre_command=get("backup", "pre_command"), backup_post_command=get("backup", "post_command"),
        backup_quick=get("backup", "quick", True), backup_gzip=get("backup", "gzip", True),
        backup_verify=get("backup", "verify", "full"),
        backup_blob_archive=get("backup", "blob_archive") or None,
        backup_schedule_incremental=get("backup", "schedule_incremental") or None,
        backup_schedule_full=get("backup", "schedule_full") or None,
        backup_zeopack_before_full=get("backup", "zeopack_before_full", False),
        backup_pack_days=get("backup", "pack_days", 7),
        backup_zeopack=get("backup", "zeopack", "bin/zeopack"),
        offsite=_offsite(values, get),
        backup_only_blobs=get("backup", "only_blobs", False), backup_debug=get("backup", "debug", False),
        backup_full=get("backup", "full", False), backup_use_rsync=get("backup", "use_rsync", True),
        backup_rsync_options=get("backup", "rsync_options", ()),
        backup_link_first_copy=get("backup", "rsync_hard_links_on_first_copy", False),
        backup_enable_snapshotrestore=get("backup", "enable_snapshotrestore", True),
        backup_enable_zipbackup=get("backup", "enable_zipbackup", True),
        backup_alternative_source=get("backup", "alternative_restore_source", ()),
        backup_prefix=get("backup", "locationprefix"),
        backup_incremental_blobs=get("backup", "incremental_blobs", False) and bool(get("backup", "blob_archive")),
        warnings=warnings + ((f"{origin_of(values, 'backup', 'incremental_blobs')}: [backup] incremental_blobs: "
                              f"ignored: it is used only with archive_blob = true (blob_archive = tar)",)
                             if get("backup", "incremental_blobs", False) and not get("backup", "blob_archive")
                             else ()),
        webhook=get("notify", "webhook"), syslog=get("notify", "syslog"),
        hooks=tuple((key, get("hooks", key)) for key in SCHEMA["hooks"] if key != "hook_timeout"
                    and key in values.get("hooks", {})),
        hook_timeout=get("hooks", "hook_timeout", 600),
        overrides=overrides, green=green, secrets=secrets,
    )


def _min_uptime(values, get) -> int:
    """``[deploy] min_uptime``: a start is proven by the same pid that long after it; within the health
    timeout, or no start could ever count."""
    uptime, timeout = get("deploy", "min_uptime", 3), get("deploy", "health_timeout", 60)
    if uptime > timeout:
        raise ConfigError(f"{origin_of(values, 'deploy', 'min_uptime')}: [deploy] min_uptime = {uptime}: "
                          f"longer than health_timeout ({timeout} s), no start could count")
    return uptime


def _offsite(values, get) -> offsites.Offsite | None:
    """``[backup] offsite`` with the key and known_hosts it is reached with."""
    offsite = get("backup", "offsite")
    for key in ("offsite_identity", "offsite_known_hosts"):
        if get("backup", key) and not offsite:
            raise ConfigError(f"{origin_of(values, 'backup', key)}: [backup] {key}: set only with [backup] offsite "
                              f"= ssh://user@host/path")
    if not offsite:
        return None
    return dataclasses.replace(offsite, identity=get("backup", "offsite_identity"),
                               known_hosts=get("backup", "offsite_known_hosts"))


def _is_ip(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
        return True
    except ValueError:
        return False


def _front(path: Path, values, get, programs: tuple[Program, ...]) -> Front:
    """``[front]``, checked: kinds, hostnames, a plain site path, instances with addresses, free ports."""
    def fail(key: str, message: str):
        raise ConfigError(f"{origin_of(values, 'front', key)}: [front] {key}: {message}")

    for key, allowed in (("server", FRONT_SERVERS), ("control", FRONT_CONTROLS)):
        if get("front", key, allowed[0]) not in allowed:
            fail(key, f"{get('front', key)!r} is not one of {', '.join(allowed)}")
    tls = get("front", "tls", "off")
    if tls not in FRONT_TLS:
        fail("tls", f"{tls!r} is not one of {', '.join(FRONT_TLS)}")
    email = get("front", "email")
    if tls == "acme" and not (email and EMAIL.fullmatch(email)):
        fail("email", f"tls = acme needs an e-mail address for the ACME account (not {email!r})")
    domains = unique(get("front", "domains", ()), f"{origin_of(values, 'front', 'domains')}: [front] domains")
    for domain in domains:
        if tls != "off" and _is_ip(domain):
            fail("domains", f"{domain!r} is an IP address: a certificate (tls = {tls}) names hostnames; serve an "
                            f"address with tls = off")
        if not HOSTNAME.fullmatch(domain):
            fail("domains", f"{domain!r} is not a hostname")
    if tls != "off" and not domains:
        fail("tls", f"tls = {tls} needs [front] domains (the names on the certificate)")
    site_path = get("front", "site_path")
    if site_path is not None and (not SITE_PATH.fullmatch(site_path) or
                                  any(part in (".", "..") for part in site_path.split("/"))):
        fail("site_path", f"{site_path!r} must be a path like /Plone: letters, digits, _ . ~ @ + -, no spaces, "
                          f"no '..'")
    bind = get("front", "bind", "*")
    if bind != "*" and not (HOSTNAME.fullmatch(bind) or _is_ip(bind)):
        fail("bind", f"{bind!r} is not *, an IP address or a hostname")
    by_name = {p.name: p for p in programs}
    instances = get("front", "instances", None)
    if instances is not None:
        unique(instances, f"{origin_of(values, 'front', 'instances')}: [front] instances")
    if instances is None:
        instances = tuple(p.name for p in programs if p.health_url)
    if not instances:
        fail("instances", "no program to balance: name them, or give programs a health_url")
    for name in instances:
        if name not in by_name:
            fail("instances", f"{name!r} is not in [services] programs")
        address = instance_address(by_name[name])
        if address is None or not ADDRESS.fullmatch(address):
            fail("instances", f"{name}: no host:port to reach it: set [program:{name}] address "
                              f"(or a health_url with a port)")
        if not by_name[name].health_url:
            fail("instances", f"{name}: the front needs [program:{name}] health_url to know it is up")
    http_port, https_port = get("front", "http_port", 80), get("front", "https_port", 443)
    taken = {int(instance_address(by_name[n]).rsplit(":", 1)[1]): n for n in instances}
    for key, port in (("http_port", http_port), ("https_port", https_port)):
        if port in taken:
            fail(key, f"{port} is the port of {taken[port]}")
    if http_port == https_port and tls != "off":
        fail("https_port", "must differ from http_port")
    drain_timeout, keep_warm = get("front", "drain_timeout", 30), get("front", "keep_warm", 300)  # 0 to a day
    acme_port = get("front", "acme_port", 8402)
    if tls == "acme" and acme_port in (*taken, http_port, https_port):
        fail("acme_port", f"{acme_port} is taken by the front or an instance")
    ca_bundle = get("front", "acme_ca_bundle")
    if ca_bundle is not None and not ca_bundle.is_file():
        fail("acme_ca_bundle", f"no such file {ca_bundle}")
    return Front(server=get("front", "server", "haproxy"), domains=domains, tls=tls, email=email,
                 acme_directory=get("front", "acme_directory", LETS_ENCRYPT), acme_ca_bundle=ca_bundle,
                 acme_port=acme_port, site_path=site_path, instances=instances,
                 bind=bind, http_port=http_port, https_port=https_port,
                 hsts=get("front", "hsts", False), control=get("front", "control", "systemd"),
                 admin_port=get("front", "admin_port", 9999),
                 drain_timeout=drain_timeout, retry_after=get("front", "retry_after", 30), keep_warm=keep_warm)


def _check_bluegreen(values, manager: str, front: Front, programs: tuple[Program, ...], green) -> None:
    """Blue/green runs every instance twice: each needs a second address, and the buildout a way to use it."""
    where = origin_of(values, "deploy", "switch")
    if manager != "supervisor":
        raise ConfigError(f"{where}: [deploy] switch = bluegreen works with [services] manager = supervisor "
                          f"only (yet); with systemd use switch = rolling")
    if not green:
        raise ConfigError(f"{where}: [deploy] switch = bluegreen needs a [green] section: the buildout options "
                          f"that make a release listen on the green addresses (ports:instance1 = 18081)")
    by_name = {p.name: p for p in programs}
    used = {instance_address(by_name[n]) for n in front.instances}
    # the ports the green twins must not take: the front's own, and what the buildout is told to listen on
    ports = {front.http_port: "the front's http_port", front.https_port: "the front's https_port",
             front.admin_port: "the front's admin_port", **({front.acme_port: "the front's acme_port"}
                                                            if front.tls == "acme" else {})}
    ports.update({int(value): f"[overrides] {key}" for key, (value, _) in values.get("overrides", {}).items()
                  if key.startswith("ports:") and re.fullmatch(r"[0-9]{1,5}", value.strip())})
    ports.update({int(address.rsplit(":", 1)[1]): f"{p.name}'s address" for p in programs
                  if (address := instance_address(p)) and ADDRESS.fullmatch(address) and p.name not in front.instances})
    for name in front.instances:
        address = by_name[name].green_address
        if not address or not ADDRESS.fullmatch(address):
            raise ConfigError(f"{where}: [program:{name}] green_address: switch = bluegreen needs the host:port "
                              f"the green {name} listens on")
        if address in used:
            raise ConfigError(f"{where}: [program:{name}] green_address: {address} is taken by another instance")
        port = int(address.rsplit(":", 1)[1])
        if port in ports:
            raise ConfigError(f"{where}: [program:{name}] green_address: port {port} is {ports[port]}")
        used.add(address)
