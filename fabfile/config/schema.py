"""The keys of each section of a host config, their kinds, and the check of a value against its kind."""
from __future__ import annotations

import ipaddress
import os
import posixpath
import re
import shlex
from pathlib import Path, PurePosixPath
from urllib.parse import urlsplit

from ..backups import offsite as offsites
from . import crb
from .model import ConfigError


MANAGERS = ("supervisor", "systemd")


# section -> {key: kind}; kinds: str, int, count (0-10000), positive (1-10000), seconds (0-86400), timeout
# (1-86400), days (0-36500), port, bool, list,
# root (absolute on the host), localpath, address, user, python, command, url, names (program
# names), ports (TCP ports), swap (auto, off or a size: 512M, 2G), release_paths (relative to the release), var_path(s) (under <root>/var), backup_path,
# hook (a shell command line)
SCHEMA: dict[str, dict[str, str]] = {
    "hostconfig": {"extends": "list"},
    "host": {
        "address": "address", "port": "port", "user": "user", "app_user": "user",
        "root_user": "user", "root": "root", "identity": "localpath", "known_hosts": "localpath",
        "packages": "list", "harden": "bool", "store": "root", "firewall": "bool", "firewall_ports": "ports",
        "security_upgrades": "bool", "swap": "swap", "private_address": "address",
    },
    "buildout": {
        "directory": "localpath", "config": "str", "development": "str",
        "python": "python", "shared": "release_paths", "index": "str",
    },
    "services": {"manager": "str", "programs": "names"},
    "program:*": {"command": "command", "health_url": "url", "address": "str", "green_address": "str"},
    "deploy": {"keep_releases": "positive", "health_timeout": "timeout", "min_uptime": "timeout", "allow_dirty": "bool",
               "switch": "str"},
    "front": {"server": "str", "domains": "list", "tls": "str", "email": "str", "acme_directory": "url",
              "acme_ca_bundle": "localpath", "acme_port": "port",
              "site_path": "str", "instances": "list", "bind": "str", "http_port": "port",
              "https_port": "port", "hsts": "bool", "control": "str", "drain_timeout": "seconds",
              "retry_after": "seconds", "keep_warm": "seconds",
              "admin_port": "port"},
    "green": {"*": "str"},
    "backup": {"keep": "count", "keep_blob_days": "days", "before_deploy": "bool",
               "filestorage": "var_path", "blobstorage": "var_path", "additional_filestorages": "var_paths",
               "location": "backup_path", "blob_location": "backup_path", "snapshot_location": "backup_path",
               "blob_snapshot_location": "backup_path", "pre_command": "str", "post_command": "str",
               "quick": "bool", "gzip": "bool", "verify": "str", "blob_archive": "str",
               "schedule_incremental": "schedule", "schedule_full": "schedule", "zeopack_before_full": "bool",
               "pack_days": "days", "zeopack": "str",
               # collective.recipe.backup's own (``crb.py``): the keys it sets here, or a warning at load time
               "zip_location": "backup_path", "blob_zip_location": "backup_path", "only_blobs": "bool",
               "debug": "bool", "full": "bool", "use_rsync": "bool", "rsync_options": "rsync_options",
               "rsync_hard_links_on_first_copy": "bool", "enable_snapshotrestore": "bool", "incremental_blobs": "bool",
               "enable_zipbackup": "bool", "alternative_restore_source": "alternative", "locationprefix": "site_path"},
    "notify": {"webhook": "str", "syslog": "str"},
    "hooks": {"before_deploy": "hook", "before_switch": "hook", "after_switch": "hook", "after_rollback": "hook",
              "hook_timeout": "timeout"},
    "overrides": {"*": "str"},
    "fleet": {"hosts": "names", "parallel": "positive", "batch": "str"},  # fleetconfig.py
    "role:*": {"programs": "names", "port": "port"},
}


SCHEMA["host:*"] = {**SCHEMA["host"], "roles": "list"}


SCHEMA["backup"].update({"offsite": "offsite_url", "offsite_identity": "host_path",  # fabfile/offsite.py
                         "offsite_known_hosts": "host_path"})


for _name in crb.OPTIONS:  # CRB's other names: translated into the keys above before they are typed
    SCHEMA["backup"].setdefault(_name, "crb")


DAY = 86400


# number kind -> (least, most): a bound for each, so nothing a timer, a sleep or a count cannot hold
# reaches the host (Python's time.sleep and threading timers overflow on huge numbers)
NUMBERS = {"int": (-2**63, 2**63 - 1), "count": (0, 10000), "positive": (1, 10000), "seconds": (0, DAY),
           "timeout": (1, DAY), "days": (0, 36500)}


WHOLE_NUMBER = re.compile(r"[+-]?[0-9]+")


LIST_KINDS = ("list", "ports", "names", "release_paths", "var_paths", "alternative", "crb")  # whitespace, new lines too, separates items


SWITCHES = ("stopstart", "rolling", "bluegreen")


SYSLOG_FACILITIES = ("user", "daemon", "local0", "local1", "local2", "local3", "local4", "local5", "local6", "local7")


FRONT_SERVERS = ("haproxy", "nginx")


FRONT_TLS = ("off", "internal", "acme")


EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}")


FRONT_CONTROLS = ("systemd", "self")


HOSTNAME = re.compile(r"(?=.{1,253}$)(?!-)[a-z0-9-]{1,63}(?<!-)(\.(?!-)[a-z0-9-]{1,63}(?<!-))*", re.I)


SITE_PATH = re.compile(r"/[A-Za-z0-9_.~@+-]*(/[A-Za-z0-9_.~@+-]+)*")


ADDRESS = re.compile(r"(?P<host>[A-Za-z0-9.-]+|\[[0-9a-fA-F:]+\]):(?P<port>[0-9]{1,5})")


NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")                 # a program


OVERRIDE = re.compile(r"[A-Za-z0-9_.-]+:[A-Za-z0-9_.-]+")         # a buildout section:option


USER = re.compile(r"(?=.{1,32}$)[a-z_][a-z0-9_-]*[$]?")           # a POSIX user name


PYTHON = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*|/[A-Za-z0-9_./+-]+")  # a command or an absolute path


SCHEDULE_NAMES = ("hourly", "daily", "weekly", "monthly")


CRON_FIELD = re.compile(r"[0-9*/,-]+|[A-Za-z]{3}(?:-[A-Za-z]{3})?(?:,[A-Za-z]{3})*")


CRON_RANGES = ((0, 59), (0, 23), (1, 31), (1, 12), (0, 7))  # minute, hour, day, month, weekday (7: Sunday)


SYSTEM_DIRS = ("/proc", "/sys", "/dev", "/etc", "/boot", "/bin", "/sbin", "/usr", "/lib", "/lib64")


BACKUP_LOCATIONS = ("location", "blob_location", "snapshot_location", "blob_snapshot_location", "zip_location",
                    "blob_zip_location")


REQUIRED = {("host", "address"), ("host", "root"), ("buildout", "directory")}


# A secret shorter than this is refused at load time: redacting it would turn every "ab" of a log
# line into ***, and such a value gives nothing away that a guess would not.
MIN_SECRET_LENGTH = 4


def schema_of(section: str) -> dict[str, str] | None:
    """The keys a section takes: its own, or those of its kind (``[program:NAME]``, ``[host:NAME]``)."""
    return SCHEMA.get(section) or SCHEMA.get(section.split(":", 1)[0] + ":*") if ":" in section else SCHEMA.get(section)


def check_known(section: str, key: str, where: str) -> None:
    schema = schema_of(section)
    if schema is None:
        raise ConfigError(f"{where}: unknown section [{section}] (known: {', '.join(SCHEMA)})")
    if key is not None and key not in schema and "*" not in schema:
        raise ConfigError(f"{where}: unknown key (known in [{section}]: {', '.join(schema)})")
    if section in ("overrides", "green") and key is not None and not OVERRIDE.fullmatch(key):
        raise ConfigError(f"{where}: an override is written 'section:option = value', with plain buildout "
                          f"names (letters, digits, _ . -)")


def typed(kind: str, value: str, where: str, origin: Path):
    if "\0" in value or (kind not in LIST_KINDS and ("\n" in value or "\r" in value)):
        raise ConfigError(f"{where}: has a line break or a NUL character; write the value on one line "
                          f"(only lists may take an item a line)")
    if kind in NUMBERS:
        if not WHOLE_NUMBER.fullmatch(value):  # int() takes "1_000", " 5", "²"'s kin and other scripts' digits
            raise ConfigError(f"{where}: {value!r} is not a whole number (digits 0-9)")
        minimum, maximum = NUMBERS[kind]
        number = int(value) if len(value) <= 20 else (-1 if value.startswith("-") else 1) * 10 ** 20
        if not minimum <= number <= maximum:
            shown = number if len(value) <= 20 else f"{value[:12]}…"
            raise ConfigError(f"{where}: {shown} is out of range: {minimum} or more, at most {maximum}"
                              + (" (seconds: a day)" if maximum == DAY else ""))
        return number
    if kind == "port":
        port = typed("int", value, where, origin)
        if not 1 <= port <= 65535:
            raise ConfigError(f"{where}: {port} is not a TCP port (1-65535)")
        return port
    if kind == "ports":
        return unique(tuple(typed("port", port, where, origin) for port in value.split()), where)
    if kind == "swap":
        return swap_size(value, where)
    if kind == "schedule":  # checked here, so that deploy --plan refuses what schedule would
        return schedule(value, where)
    if kind == "bool":
        lowered = value.lower()
        if lowered in ("true", "yes", "on", "1"):
            return True
        if lowered in ("false", "no", "off", "0"):
            return False
        raise ConfigError(f"{where}: {value!r} is not true or false")
    if kind == "list":
        return tuple(value.split())
    if kind == "names":
        return unique(tuple(plain(NAME, name, where, "a program name: letters, digits, _ . - (not first: . -)")
                             for name in value.split()), where)
    if kind == "release_paths":
        paths = unique(tuple(inside(p, where, "the release", absolute=False) for p in value.split()), where)
        for path in paths:
            inner = next((p for p in paths if p.startswith(path + "/")), None)
            if inner:
                raise ConfigError(f"{where}: {inner!r} is inside {path!r}; linking both would delete the data")
        return paths
    if kind in ("var_path", "backup_path"):
        if value:  # empty: no blobstorage, or the default location
            inside(value, where, "<root>/var" if kind == "var_path" else "<root>/backups")
        return value
    if kind == "var_paths":  # NAME, NAME:PATH or NAME:PATH:BLOBDIR (crb.py makes CRB's lines so)
        for entry in value.split():
            name, _, rest = entry.partition(":")
            plain(NAME, name, where, "NAME or NAME:PATH")
            for path in filter(None, rest.split(":", 1)):
                inside(path, where, "<root>/var")
        return tuple(value.split())
    if kind == "alternative":  # collective.recipe.backup's "Data FSBACKUPS [BLOBBACKUPS]"
        lines = [line.split() for line in value.splitlines() if line.strip() and not line.strip().startswith("#")]
        if len(lines) != 1 or lines[0][0] not in ("Data", "1") or len(lines[0]) not in (2, 3):
            raise ConfigError(f"{where}: {value!r} is not one line 'Data FSBACKUPS [BLOBBACKUPS]' (the main "
                              f"filestorage's backups, and its blob backups)")
        for place in lines[0][1:]:
            if not place.startswith("/") or ".." in place.split("/"):
                raise ConfigError(f"{where}: {place!r} is not an absolute path without '..'")
            if system_dir(posixpath.normpath(place)):
                raise ConfigError(f"{where}: {place!r} is / or in a system directory ({', '.join(SYSTEM_DIRS)})")
        return (("main", lines[0][1]),) + ((("blobstorage", lines[0][2]),) if len(lines[0]) == 3 else ())
    if kind == "rsync_options":
        try:
            options = tuple(shlex.split(value))
        except ValueError as error:
            raise ConfigError(f"{where}: {value!r} cannot be split into words ({error})") from None
        for option in options:
            if not option.startswith("-") or option.startswith(("--delete", "--remove-source", "--link-dest")):
                raise ConfigError(f"{where}: {option!r}: give rsync options only (--no-l -k), not paths, and none "
                                  f"that deletes or links (the copy does that itself)")
        return options
    if kind == "site_path":
        return inside(value, where, "<root>")
    if kind == "root":
        return root_path(value, where, origin)
    if kind in ("offsite_url", "host_path"):
        if not value:  # empty: none (an extending file may take a base's offsite away)
            return None
        try:
            return offsites.parse_url(value) if kind == "offsite_url" else offsites.host_path(value)
        except ValueError as error:
            raise ConfigError(f"{where}: {error}") from None
    if kind == "localpath":
        return (origin.parent / os.path.expanduser(value)).resolve()
    if kind == "user":
        return plain(USER, value, where, "a user name: lower-case letters, digits, _ and -, at most 32 characters")
    if kind == "python":
        return plain(PYTHON, value, where, "a command (python3.11) or an absolute path, without spaces "
                                             "or shell characters")
    if kind == "address":
        try:
            ipaddress.ip_address(value)
        except ValueError:
            plain(HOSTNAME, value, where, "a hostname, an IPv4 or an IPv6 address")
        return value
    if kind == "url":
        if not value.isprintable():  # a tab, a control character: a request line or a config line would break
            raise ConfigError(f"{where}: has a tab or a control character; a URL carries them percent-encoded "
                              f"(%09)")
        try:
            parts = urlsplit(value)
            fine = parts.scheme in ("http", "https") and parts.hostname and parts.port != 0
        except ValueError:  # a port that is not a number or out of range, a broken [IPv6]
            fine = False
        if not fine:
            raise ConfigError(f"{where}: {value!r} is not an http:// or https:// URL with a host (and a port "
                              f"1-65535, if any)")
        return value
    if kind == "hook":
        if not value.strip():
            raise ConfigError(f"{where}: is empty; leave the key out for no hook")
        try:
            shlex.split(value)
        except ValueError as error:
            raise ConfigError(f"{where}: {value!r} is not a shell command line ({error}): close every quote") \
                from None
        return value
    if kind == "command":
        try:
            words = shlex.split(value)
        except ValueError as error:
            raise ConfigError(f"{where}: {value!r} cannot be split into words ({error}): close every quote") \
                from None
        if not words:
            raise ConfigError(f"{where}: is empty; leave it out for bin/NAME")
        return value
    return value


SIZE = re.compile(r"([0-9]{1,9})([MG])", re.I)


MIN_SWAP = 64 * 2**20


def swap_size(value: str, where: str) -> str | int:
    """``auto``, ``off``, or a size in MiB or GiB (``512M``, ``2G``) as bytes."""
    if value.lower() in ("auto", "off"):
        return value.lower()
    found = SIZE.fullmatch(value)
    if not found:
        raise ConfigError(f"{where}: {value!r} is not auto, off or a size such as 512M or 2G")
    size = int(found.group(1)) * 2 ** (20 if found.group(2).upper() == "M" else 30)
    if not MIN_SWAP <= size <= 2**40:
        raise ConfigError(f"{where}: {value!r} is out of range: 64M to 1024G")
    return size


def schedule(value: str, where: str) -> str:
    """``hourly`` .. ``monthly`` or five cron fields, each number in its field's range."""
    fields = value.split()
    if value in SCHEDULE_NAMES or not value:
        return value
    wrong = len(fields) != 5 or not all(CRON_FIELD.fullmatch(field) for field in fields)
    for field, (least, most) in zip(fields if not wrong else (), CRON_RANGES):
        if any(not least <= int(number) <= most for number in re.findall(r"[0-9]+", field.split("/")[0])) or \
                any(int(step) < 1 for step in re.findall(r"/([0-9]+)", field)):
            wrong = True
    if wrong:
        raise ConfigError(f"{where}: {value!r} is not {', '.join(SCHEDULE_NAMES)} or five cron fields in their "
                          f"ranges (minute 0-59, hour 0-23, day 1-31, month 1-12, weekday 0-7: '15 3 * * 1-6')")
    return value


def plain(pattern: re.Pattern, value: str, where: str, what: str) -> str:
    if not pattern.fullmatch(value):
        raise ConfigError(f"{where}: {value!r} is not {what}")
    return value


def unique(items: tuple[str, ...], where: str) -> tuple[str, ...]:
    for index, item in enumerate(items):
        if item in items[:index]:
            raise ConfigError(f"{where}: {item!r} is named twice")
    return items


def inside(path: str, where: str, base: str, absolute: bool = True) -> str:
    """``path`` normalised: relative to ``base`` and under it, or (if ``absolute``) absolute without ``..``."""
    if path.startswith("/"):
        if not absolute:
            raise ConfigError(f"{where}: {path!r} is absolute; give a path relative to {base}")
        if ".." in path.split("/"):
            raise ConfigError(f"{where}: {path!r} has a '..'; write the path without it")
        normal = "/" + posixpath.normpath(path).lstrip("/")
        if system_dir(normal):
            raise ConfigError(f"{where}: {normal!r} is / or in a system directory ({', '.join(SYSTEM_DIRS)}); "
                              f"give a directory the site owns (under {base}, or one of its own such as /backups/site)")
        return normal
    normal = posixpath.normpath(path)
    if normal == ".." or normal.startswith("../"):
        raise ConfigError(f"{where}: {path!r} leaves {base} ('..'); give a path under it")
    if normal == ".":
        raise ConfigError(f"{where}: {path!r} is {base} itself; give a path under it")
    return normal


def system_dir(path: str) -> bool:
    """Whether the absolute, normal ``path`` is ``/`` or in a system directory."""
    path = "/" + path.lstrip("/")
    return path == "/" or any(path == system or path.startswith(system + "/") for system in SYSTEM_DIRS)


def root_path(value: str, where: str, origin: Path) -> str:
    """``[host] root``: absolute, plain, without ``..`` (but ``${here}/..``), not ``/`` or a system directory."""
    if not PurePosixPath(value).is_absolute():
        raise ConfigError(f"{where}: {value!r} must be an absolute path on the host")
    if any(character.isspace() or character in "'\"\\$" for character in value):
        raise ConfigError(f"{where}: {value!r} has a space, a quote or a $; buildout and Zope write the root "
                          f"into '#!' lines, Python strings and ZConfig files, which cannot hold them")
    if any(character in ";{}#" for character in value):
        raise ConfigError(f"{where}: {value!r} has one of ; {{ }} #: the front's config files and HAProxy's "
                          f"runtime commands name paths under the root, and these end or open a statement there")
    if ".." in value.split("/") and not value.startswith(f"{origin.parent}/"):
        raise ConfigError(f"{where}: {value!r} has a '..'; write the root without it")
    root = "/" + posixpath.normpath(value).lstrip("/")
    if root == "/" or any(root == system or root.startswith(system + "/") for system in SYSTEM_DIRS):
        raise ConfigError(f"{where}: {root!r} is / or a system directory ({', '.join(SYSTEM_DIRS)}); "
                          f"give the site a directory of its own, such as /srv/mysite")
    return root


def origin_of(values, section: str, key: str) -> Path | str:
    """The file a key comes from; for a missing key, the file of its section."""
    options = values.get(section, {})
    if key in options:
        return options[key][1]
    return next((origin for _, origin in options.values()), "host config")
