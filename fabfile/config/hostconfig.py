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

import configparser
import dataclasses
import functools
import getpass
import hashlib
import ipaddress
import os
import posixpath
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from urllib.parse import urlsplit

from dotenv import dotenv_values

from . import crb
from ..paths import PROJECT
from ..backups import offsite as offsites

# DEPLOY_HOSTCONFIGS points elsewhere (tests, or one checkout serving several projects)
CONFIG_DIR = Path(os.environ.get("DEPLOY_HOSTCONFIGS") or PROJECT / "hostconfigs")

MANAGERS = ("supervisor", "systemd")

# section -> {key: kind}; kinds: str, int, count (>= 0), positive (>= 1), port, bool, list,
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
    "deploy": {"keep_releases": "positive", "health_timeout": "positive", "allow_dirty": "bool", "switch": "str"},
    "front": {"server": "str", "domains": "list", "tls": "str", "email": "str", "acme_directory": "url",
              "acme_ca_bundle": "localpath", "acme_port": "port",
              "site_path": "str", "instances": "list", "bind": "str", "http_port": "port",
              "https_port": "port", "hsts": "bool", "control": "str", "drain_timeout": "int",
              "retry_after": "int", "keep_warm": "int",
              "admin_port": "port"},
    "green": {"*": "str"},
    "backup": {"keep": "count", "keep_blob_days": "count", "before_deploy": "bool",
               "filestorage": "var_path", "blobstorage": "var_path", "additional_filestorages": "var_paths",
               "location": "backup_path", "blob_location": "backup_path", "snapshot_location": "backup_path",
               "blob_snapshot_location": "backup_path", "pre_command": "str", "post_command": "str",
               "quick": "bool", "gzip": "bool", "verify": "str", "blob_archive": "str",
               "schedule_incremental": "str", "schedule_full": "str", "zeopack_before_full": "bool",
               "pack_days": "count", "zeopack": "str",
               # collective.recipe.backup's own (``crb.py``): the keys it sets here, or a warning at load time
               "zip_location": "backup_path", "blob_zip_location": "backup_path", "only_blobs": "bool",
               "debug": "bool", "full": "bool", "use_rsync": "bool", "rsync_options": "rsync_options",
               "rsync_hard_links_on_first_copy": "bool", "enable_snapshotrestore": "bool", "incremental_blobs": "bool",
               "enable_zipbackup": "bool", "alternative_restore_source": "alternative", "locationprefix": "site_path"},
    "notify": {"webhook": "str", "syslog": "str"},
    "hooks": {"before_deploy": "hook", "before_switch": "hook", "after_switch": "hook", "after_rollback": "hook",
              "hook_timeout": "positive"},
    "overrides": {"*": "str"},
    "fleet": {"hosts": "names", "parallel": "positive", "batch": "str"},  # fleetconfig.py
    "role:*": {"programs": "names", "port": "port"},
}
SCHEMA["host:*"] = {**SCHEMA["host"], "roles": "list"}
SCHEMA["backup"].update({"offsite": "offsite_url", "offsite_identity": "host_path",  # fabfile/offsite.py
                         "offsite_known_hosts": "host_path"})
for _name in crb.OPTIONS:  # CRB's other names: translated into the keys above before they are typed
    SCHEMA["backup"].setdefault(_name, "crb")
LIST_KINDS = ("list", "ports", "names", "release_paths", "var_paths", "alternative", "crb")  # whitespace, new lines too, separates items
SWITCHES = ("stopstart", "rolling", "bluegreen")
FRONT_SERVERS = ("haproxy", "nginx")
FRONT_TLS = ("off", "internal", "acme")
LETS_ENCRYPT = "https://acme-v02.api.letsencrypt.org/directory"
_EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}")
FRONT_CONTROLS = ("systemd", "self")
_HOSTNAME = re.compile(r"(?=.{1,253}$)(?!-)[a-z0-9-]{1,63}(?<!-)(\.(?!-)[a-z0-9-]{1,63}(?<!-))*", re.I)
_SITE_PATH = re.compile(r"/[A-Za-z0-9_.~@+-]*(/[A-Za-z0-9_.~@+-]+)*")
_ADDRESS = re.compile(r"(?P<host>[A-Za-z0-9.-]+|\[[0-9a-fA-F:]+\]):(?P<port>\d{1,5})")
_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")                 # a program
_OVERRIDE = re.compile(r"[A-Za-z0-9_.-]+:[A-Za-z0-9_.-]+")         # a buildout section:option
_USER = re.compile(r"(?=.{1,32}$)[a-z_][a-z0-9_-]*[$]?")           # a POSIX user name
_PYTHON = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*|/[A-Za-z0-9_./+-]+")  # a command or an absolute path
SYSTEM_DIRS = ("/proc", "/sys", "/dev", "/etc", "/boot", "/bin", "/sbin", "/usr", "/lib", "/lib64")
BACKUP_LOCATIONS = ("location", "blob_location", "snapshot_location", "blob_snapshot_location", "zip_location",
                    "blob_zip_location")
REQUIRED = {("host", "address"), ("host", "root"), ("buildout", "directory")}

# A secret shorter than this is refused at load time: redacting it would turn every "ab" of a log
# line into ***, and such a value gives nothing away that a guess would not.
MIN_SECRET_LENGTH = 4

_REFERENCE = re.compile(r"\$(\$|\{(?:([\w.-]+):)?([\w.-]+)\})")


class ConfigError(Exception):
    """A host config that cannot be used; the message names file, section and key."""


MAX_SOCKET_PATH = 107  # AF_UNIX paths hold 108 bytes with the NUL; supervisor's socket lives under <root>/var/run
MAX_HAPROXY_SOCKET = 97  # HAProxy binds <path>.<pid>.tmp first, then renames: its own limit


@dataclass(frozen=True)
class Program:
    name: str
    command: str
    health_url: str | None = None
    address: str | None = None      # host:port where the front reaches it (default: the health URL's)
    green_address: str | None = None  # host:port of its green twin (switch = bluegreen)

    @property
    def green_health_url(self) -> str | None:
        """The health URL of the green twin: the same URL at ``green_address``."""
        if not (self.health_url and self.green_address):
            return None
        parts = urlsplit(self.health_url)
        return parts._replace(netloc=self.green_address).geturl()


@dataclass(frozen=True)
class Front:
    """The web server in front of the instances: ``[front]``."""
    server: str = "haproxy"
    domains: tuple[str, ...] = ()
    tls: str = "off"                   # off | internal (acme: not yet)
    email: str | None = None
    acme_directory: str = LETS_ENCRYPT
    acme_ca_bundle: Path | None = None   # a CA file this side, for an ACME server with a private CA
    acme_port: int = 8402                # where the ACME client answers HTTP-01 behind the front
    site_path: str | None = None       # Zope virtual hosting: the object the domains show
    instances: tuple[str, ...] = ()    # the programs it balances
    bind: str = "*"
    http_port: int = 80
    https_port: int = 443
    hsts: bool = False
    control: str = "systemd"           # systemd: Debian's haproxy.service; self: run as the deploy login
    drain_timeout: int = 30
    retry_after: int = 30
    keep_warm: int = 300               # bluegreen: seconds the old set stays up for a flip back
    admin_port: int = 9999             # a fleet's front: its runtime API over TCP, for the app hosts' switches
    # set by fleetconfig.py: the front host's servers (name, host:port, health check path) on every app
    # host, or on an app host, where the front's runtime API listens and the prefix of its servers' names
    servers: tuple[tuple[str, str, str], ...] = ()
    admin: str | None = None
    server_prefix: str = ""


@dataclass(frozen=True)
class HostConfig:
    name: str
    path: Path
    address: str
    root: str
    buildout_dir: Path
    port: int = 22
    user: str = field(default_factory=getpass.getuser)
    app_user: str = ""
    root_user: str = "root"
    store: str | None = None          # a directory on the host whose dists and eggs the sites share
    identity: Path | None = None
    known_hosts: Path | None = None   # default: known_hosts beside the config file
    packages: tuple[str, ...] = ()
    harden: bool = False
    firewall: bool = True              # nftables: SSH, the front's ports and firewall_ports in, nothing else
    firewall_ports: tuple[int, ...] = ()
    security_upgrades: bool = True     # Debian's unattended-upgrades
    swap: str | int = "auto"           # auto | off | bytes of a swap file
    buildout_config: str = "production.cfg"
    development_config: str = "development.cfg"
    python: str = "python3"
    shared: tuple[str, ...] = ("var",)
    index: str | None = None
    manager: str = "supervisor"
    programs: tuple[Program, ...] = ()
    keep_releases: int = 5
    health_timeout: int = 60
    allow_dirty: bool = True
    switch: str = "stopstart"          # stopstart | rolling (the default with a [front])
    front: Front | None = None
    backup_keep: int = 2
    backup_keep_blob_days: int = 14
    backup_before_deploy: bool = True
    backup_filestorage: str = "filestorage/Data.fs"     # relative to <root>/var
    backup_blobstorage: str = "blobstorage"             # empty: the site has no blobs
    backup_additional_filestorages: tuple[str, ...] = ()
    backup_locations: tuple[tuple[str, str], ...] = ()  # location keys given, relative to <root>/backups
    backup_pre_command: str | None = None
    backup_post_command: str | None = None
    backup_quick: bool = True
    backup_gzip: bool = True
    backup_verify: str = "full"
    backup_blob_archive: str | None = None              # tar or tar.gz instead of hard-linked copies
    backup_schedule_incremental: str | None = None      # hourly, daily, weekly, monthly or 5 cron fields
    backup_schedule_full: str | None = None
    backup_zeopack_before_full: bool = False
    backup_pack_days: int = 7
    backup_zeopack: str = "bin/zeopack"                 # relative to the release, or absolute
    offsite: offsites.Offsite | None = None             # [backup] offsite: where the copies go
    backup_only_blobs: bool = False                     # collective.recipe.backup's options, as crb.py says
    backup_debug: bool = False
    backup_full: bool = False
    backup_use_rsync: bool = True
    backup_rsync_options: tuple[str, ...] = ()
    backup_link_first_copy: bool = False
    backup_incremental_blobs: bool = False
    backup_enable_snapshotrestore: bool = True
    backup_enable_zipbackup: bool = True
    backup_alternative_source: tuple[tuple[str, str], ...] = ()  # (storage name or "blobstorage", path)
    backup_prefix: str | None = None                    # where the backups go (default <root>/backups)
    warnings: tuple[str, ...] = ()                      # options that mean nothing here, said at load time
    webhook: str | None = None
    syslog: str | None = None
    hooks: tuple[tuple[str, str], ...] = ()          # (name, shell command line) of the hooks given
    hook_timeout: int = 600
    overrides: tuple[tuple[str, str, str], ...] = ()
    green: tuple[tuple[str, str, str], ...] = ()     # buildout options of a release built as the green set
    secrets: frozenset[str] = frozenset()
    private_address: str = ""         # where a fleet's other hosts reach this one (default: address)
    member: str = ""                  # a fleet's name for this host ("" outside a fleet)
    roles: tuple[str, ...] = ()       # a fleet host's roles (outside a fleet: every role)
    firewall_from: tuple[tuple[int, tuple[str, ...]], ...] = ()  # a fleet host's ports only its peers reach

    @property
    def runs_front(self) -> bool:
        """Whether the site's front runs on this host: a fleet's app host has a ``[front]`` too, to take its
        instances out of the front host's and back (``front.admin``), and runs none."""
        return self.front is not None and not self.front.admin

    @property
    def label(self) -> str:
        """The config's name, with the fleet host's: ``prod/app1``."""
        return f"{self.name}/{self.member}" if self.member else self.name

    def path_on_host(self, *parts: str) -> str:
        """A path under the site's root on the host."""
        return str(PurePosixPath(self.root, *parts))

    @property
    def dists_path(self) -> str:
        """The distributions' directory on the host: the site's, or the host's store that sites share."""
        return str(PurePosixPath(self.store, "dists")) if self.store else self.path_on_host("dists")

    @property
    def incoming_path(self) -> str:
        """Where this site's uploads wait for their check, beside the distributions (one per site: a
        store's sites may push at the same time)."""
        if not self.store:
            return self.path_on_host("dists", ".incoming")
        return str(PurePosixPath(self.dists_path, ".incoming-" + hashlib.sha256(self.root.encode()).hexdigest()[:12]))

    @property
    def eggs_path(self) -> str:
        """buildout's eggs directory on the host: the site's, or the host's store that sites share."""
        return str(PurePosixPath(self.store, "eggs")) if self.store else self.path_on_host("eggs")

    @property
    def backup_options(self) -> dict:
        """The ``[backup]`` settings as ``repozo.layout`` takes them."""
        return dict(filestorage=self.backup_filestorage, blobstorage=self.backup_blobstorage or None,
                    additional=self.backup_additional_filestorages, **dict(self.backup_locations),
                    keep=self.backup_keep, keep_blob_days=self.backup_keep_blob_days, quick=self.backup_quick,
                    gzip=self.backup_gzip, verify=self.backup_verify, pre_command=self.backup_pre_command,
                    post_command=self.backup_post_command, blob_archive=self.backup_blob_archive,
                    only_blobs=self.backup_only_blobs, verbose=self.backup_debug, use_rsync=self.backup_use_rsync,
                    rsync_options=self.backup_rsync_options, link_first_copy=self.backup_link_first_copy,
                    incremental_blobs=self.backup_incremental_blobs)

    @property
    def backups_dir(self) -> str:
        """Where the backups go on the host: ``[backup] locationprefix``, else ``<root>/backups``."""
        return posixpath.join(self.root, self.backup_prefix or "backups")

    def hook(self, name: str) -> str | None:
        """The command line of the hook ``name`` (``before_switch``...), or None."""
        return dict(self.hooks).get(name)

    def redact(self, text: str) -> str:
        """``text`` with every secret value replaced by ``***``, in clear or in the escaped forms
        that errors and documents give it (JSON, Python repr, shell quoting, percent-encoding)."""
        return secret_pattern(self.secrets).sub("***", text) if self.secrets else text


@functools.lru_cache(maxsize=64)
def secret_pattern(secrets: frozenset[str]) -> re.Pattern:
    """A regular expression that finds any of ``secrets``, longest first, in clear or escaped.

    Error texts carry a value in whatever form the code that failed gave it: ``repr`` in a
    Python exception (``w\\'ord``, ``\\xe4``), JSON (``\\u00e4``, ``\\"``, and ``\\\\'`` for a
    repr inside JSON), shell quoting (``'"'"'``), percent-encoding (``%C3%A4``, ``+``) or HTML
    entities. Each character of a secret may appear in any of its forms, so mixed and nested
    escapes are found too."""
    alternatives = ["".join(map(_character_forms, secret)) for secret in sorted(secrets, key=len, reverse=True)
                    if secret]
    return re.compile("|".join(alternatives) or "(?!)")


_BACKSLASH_LETTERS = {"\n": "n", "\r": "r", "\t": "t", "\b": "b", "\f": "f", "\v": "v", "\0": "0"}
_HTML_ENTITIES = {"&": ("&amp;",), "<": ("&lt;",), ">": ("&gt;",), '"': ("&quot;",),
                  "'": ("&#39;", "&#x27;", "&apos;")}
_SHELL_QUOTES = ("'\"'\"'", "'\\''")  # shlex.quote's way with a quote inside quotes, and the other usual one


def _character_forms(character: str) -> str:
    """The regular expression for one character of a secret in each of its forms."""
    code = ord(character)
    escapes = []  # what follows one or more backslashes (JSON of a repr doubles them)
    if character in "'\"\\/" or character in _BACKSLASH_LETTERS:
        escapes.append(re.escape(_BACKSLASH_LETTERS.get(character, character)))
    if code <= 0xFF:
        escapes.append(f"(?i:x{code:02x})")
    if code <= 0xFFFF:
        escapes.append(f"(?i:u{code:04x})")
    else:  # JSON writes a character outside the BMP as a surrogate pair
        high, low = 0xD800 + ((code - 0x10000) >> 10), 0xDC00 + ((code - 0x10000) & 0x3FF)
        escapes.append(f"(?i:u{high:04x}\\\\+u{low:04x})")
    escapes.append(f"(?i:U{code:08x})")
    forms = [re.escape(character), f"\\\\+(?:{'|'.join(escapes)})"]
    utf8 = "".join(f"%{byte:02x}" for byte in character.encode("utf-8", "surrogatepass"))
    forms.append(f"(?i:{utf8})")
    if 0x80 <= code <= 0xFF:
        forms.append(f"(?i:%{code:02x})")  # percent-encoded as Latin-1
    if character == " ":
        forms.append("\\+")
    forms += [re.escape(form) for form in _HTML_ENTITIES.get(character, ())]
    if character == "'":
        forms += [re.escape(form) for form in _SHELL_QUOTES]
    forms.append(f"&#0*{code};|(?i:&#x0*{code:x};)")
    return f"(?:{'|'.join(forms)})"


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
    raw = _layered(path, ())
    if is_fleet(raw):
        hosts = raw.get("fleet", {}).get("hosts", ("",))[0].split()
        raise ConfigError(f"{path}: is a fleet of {len(hosts)} hosts ({' '.join(hosts)}): this task takes one "
                          f"host (the fleet's tasks: deploy, rollback, releases, status, logs, backup)")
    return from_raw(path, raw, environ)


def is_fleet(raw: dict) -> bool:
    """Whether layered sections describe a fleet (``[fleet]``, ``[host:NAME]`` or ``[role:NAME]``)."""
    return any(section == "fleet" or section.startswith(("host:", "role:")) for section in raw)


def read_layered(path: Path) -> dict[str, dict[str, tuple[str, Path]]]:
    """The sections of ``path`` and its bases, each value with the file it comes from."""
    return _layered(path.resolve(), ())


def from_raw(path: Path, raw, environ: dict | None = None, references: dict | None = None,
             **fields) -> HostConfig:
    """The HostConfig of layered sections; ``references`` are more sections that values may name
    (a fleet's ``${fleet:zeo_address}``), ``fields`` set after the build (a fleet host's name and roles)."""
    path = path.resolve()
    if environ is None:
        environ = {**_dotenv(path.parent.parent / ".env"), **os.environ}
        environ = {k: v for k, v in environ.items() if v is not None}
    lookup = {**raw, **(references or {})}
    secrets: set[str] = set()
    values: dict[str, dict[str, tuple[str, Path]]] = {}
    for section, options in raw.items():
        if not options:
            _check_known(section, None, f"{path}: [{section}]")
        values.setdefault(section, {})
        for key, (value, origin) in options.items():
            where = f"{origin}: [{section}] {key}"
            _check_known(section, key, where)
            expanded = _interpolate(value, lookup, origin, environ, secrets, where, ())
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
    warnings = _backup_from_crb(values)
    config = _build(path, values, frozenset(s for s in secrets if s), warnings)
    return dataclasses.replace(config, **fields) if fields else config


def _backup_from_crb(values) -> tuple[str, ...]:
    """``values["backup"]`` in our keys: collective.recipe.backup's names translated (``crb.py``), over
    the options of the buildout's CRB part; what means nothing here, in sentences."""
    backup = values.get("backup", {})
    said: list[str] = []
    merged: dict[str, tuple[str, Path]] = {}
    buildout = values.get("buildout", {})
    if "directory" in buildout:
        directory, origin = buildout["directory"]
        profile = _typed("localpath", directory, f"{origin}: [buildout] directory", origin) / \
            buildout.get("config", ("production.cfg",))[0]
        root_value, root_origin = values["host"]["root"]
        root = _typed("root", root_value, f"{root_origin}: [host] root", root_origin)
        shared_value, shared_origin = buildout.get("shared", ("var", origin))
        shared = _typed("release_paths", shared_value, f"{shared_origin}: [buildout] shared", shared_origin)
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


def _dotenv(path: Path) -> dict:
    """``.env`` beside ``hostconfigs/``, if there is one: UTF-8 text (a BOM is fine)."""
    try:
        return dotenv_values(path, encoding="utf-8-sig")
    except (UnicodeDecodeError, OSError) as error:
        raise ConfigError(f"{path}: cannot be read as UTF-8 text ({error}); save it as UTF-8") from None


def _layered(path: Path, seen: tuple[Path, ...]) -> dict[str, dict[str, tuple[str, Path]]]:
    if path in seen:
        chain = " -> ".join(str(p) for p in (*seen, path))
        raise ConfigError(f"{seen[-1]}: [hostconfig] extends loops: {chain}")
    where = f"{seen[-1]}: [hostconfig] extends" if seen else "host config"
    if path.is_dir():
        raise ConfigError(f"{where}: {path} is a directory, not a host config file")
    if not path.is_file():
        raise ConfigError(f"{where}: no such file {path}")
    parser = configparser.RawConfigParser(delimiters=("=",), comment_prefixes=("#", ";"),
                                          inline_comment_prefixes=(";", " #"),
                                          default_section="\0none")
    parser.optionxform = str  # keys keep their case: program names, override sections
    try:
        with open(path, encoding="utf-8-sig") as file:  # a BOM is fine
            parser.read_file(file, str(path))
    except UnicodeDecodeError as error:
        raise ConfigError(f"{path}: is not UTF-8 text (byte {error.start}); save it as UTF-8") from None
    except OSError as error:
        raise ConfigError(f"{path}: cannot be read: {error.strerror}") from None
    except configparser.Error as error:
        raise ConfigError(f"{path}: {error}") from None
    merged: dict[str, dict[str, tuple[str, Path]]] = {}
    if parser.has_option("hostconfig", "extends"):
        for base in parser.get("hostconfig", "extends").split():
            base_path = (path.parent / base).resolve()
            for section, options in _layered(base_path, (*seen, path)).items():
                merged.setdefault(section, {}).update(options)
    for section in parser.sections():
        merged.setdefault(section, {})  # an empty [front] means a front with its defaults
        for key, value in parser.items(section):
            merged.setdefault(section, {})[key] = (value.strip(), path)
    merged.get("hostconfig", {}).pop("extends", None)
    return merged


def _schema(section: str) -> dict[str, str] | None:
    """The keys a section takes: its own, or those of its kind (``[program:NAME]``, ``[host:NAME]``)."""
    return SCHEMA.get(section) or SCHEMA.get(section.split(":", 1)[0] + ":*") if ":" in section else SCHEMA.get(section)


def _check_known(section: str, key: str, where: str) -> None:
    schema = _schema(section)
    if schema is None:
        raise ConfigError(f"{where}: unknown section [{section}] (known: {', '.join(SCHEMA)})")
    if key is not None and key not in schema and "*" not in schema:
        raise ConfigError(f"{where}: unknown key (known in [{section}]: {', '.join(schema)})")
    if section in ("overrides", "green") and key is not None and not _OVERRIDE.fullmatch(key):
        raise ConfigError(f"{where}: an override is written 'section:option = value', with plain buildout "
                          f"names (letters, digits, _ . -)")


def _interpolate(value, raw, origin, environ, secrets, where, stack) -> str:
    def replace(match: re.Match) -> str:
        if match.group(1) == "$":
            return "$"
        section, key = match.group(2), match.group(3)
        if section is None and key == "here":
            return str(origin.parent)
        if section == "env":
            if key not in environ:
                raise ConfigError(f"{where}: ${{env:{key}}} is not set in .env or the environment")
            if 0 < len(environ[key]) < MIN_SECRET_LENGTH:
                raise ConfigError(f"{where}: ${{env:{key}}} is {len(environ[key])} character(s) long; values "
                                  f"from the environment are secrets, and one this short cannot be told apart "
                                  f"from other text when output is redacted: give it {MIN_SECRET_LENGTH} "
                                  f"characters or more, or write a value that is not secret in the file itself")
            secrets.add(environ[key])
            return environ[key]
        if section is None or key not in raw.get(section, {}):
            raise ConfigError(f"{where}: cannot resolve {match.group(0)}")
        if (section, key) in stack:
            raise ConfigError(f"{where}: {match.group(0)} refers to itself")
        other, other_origin = raw[section][key]
        return _interpolate(other, raw, other_origin, environ, secrets, where, (*stack, (section, key)))

    return _REFERENCE.sub(replace, value)


def _typed(kind: str, value: str, where: str, origin: Path):
    if "\0" in value or (kind not in LIST_KINDS and ("\n" in value or "\r" in value)):
        raise ConfigError(f"{where}: has a line break or a NUL character; write the value on one line "
                          f"(only lists may take an item a line)")
    if kind in ("int", "count", "positive"):
        try:
            number = int(value)
        except ValueError:
            raise ConfigError(f"{where}: {value!r} is not a whole number") from None
        minimum = {"count": 0, "positive": 1}.get(kind)
        if minimum is not None and number < minimum:
            raise ConfigError(f"{where}: {number} is out of range: {minimum} or more")
        return number
    if kind == "port":
        port = _typed("int", value, where, origin)
        if not 1 <= port <= 65535:
            raise ConfigError(f"{where}: {port} is not a TCP port (1-65535)")
        return port
    if kind == "ports":
        return _unique(tuple(_typed("port", port, where, origin) for port in value.split()), where)
    if kind == "swap":
        return _swap_size(value, where)
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
        return _unique(tuple(_plain(_NAME, name, where, "a program name: letters, digits, _ . - (not first: . -)")
                             for name in value.split()), where)
    if kind == "release_paths":
        paths = _unique(tuple(_inside(p, where, "the release", absolute=False) for p in value.split()), where)
        for path in paths:
            inner = next((p for p in paths if p.startswith(path + "/")), None)
            if inner:
                raise ConfigError(f"{where}: {inner!r} is inside {path!r}; linking both would delete the data")
        return paths
    if kind in ("var_path", "backup_path"):
        if value:  # empty: no blobstorage, or the default location
            _inside(value, where, "<root>/var" if kind == "var_path" else "<root>/backups")
        return value
    if kind == "var_paths":  # NAME, NAME:PATH or NAME:PATH:BLOBDIR (crb.py makes CRB's lines so)
        for entry in value.split():
            name, _, rest = entry.partition(":")
            _plain(_NAME, name, where, "NAME or NAME:PATH")
            for path in filter(None, rest.split(":", 1)):
                _inside(path, where, "<root>/var")
        return tuple(value.split())
    if kind == "alternative":  # collective.recipe.backup's "Data FSBACKUPS [BLOBBACKUPS]"
        lines = [line.split() for line in value.splitlines() if line.strip() and not line.strip().startswith("#")]
        if len(lines) != 1 or lines[0][0] not in ("Data", "1") or len(lines[0]) not in (2, 3):
            raise ConfigError(f"{where}: {value!r} is not one line 'Data FSBACKUPS [BLOBBACKUPS]' (the main "
                              f"filestorage's backups, and its blob backups)")
        for place in lines[0][1:]:
            if not place.startswith("/") or ".." in place.split("/"):
                raise ConfigError(f"{where}: {place!r} is not an absolute path without '..'")
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
        return _inside(value, where, "<root>")
    if kind == "root":
        return _root(value, where, origin)
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
        return _plain(_USER, value, where, "a user name: lower-case letters, digits, _ and -, at most 32 characters")
    if kind == "python":
        return _plain(_PYTHON, value, where, "a command (python3.11) or an absolute path, without spaces "
                                             "or shell characters")
    if kind == "address":
        try:
            ipaddress.ip_address(value)
        except ValueError:
            _plain(_HOSTNAME, value, where, "a hostname, an IPv4 or an IPv6 address")
        return value
    if kind == "url":
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


_SIZE = re.compile(r"(\d+)([MG])", re.I)
MIN_SWAP = 64 * 2**20


def _swap_size(value: str, where: str) -> str | int:
    """``auto``, ``off``, or a size in MiB or GiB (``512M``, ``2G``) as bytes."""
    if value.lower() in ("auto", "off"):
        return value.lower()
    found = _SIZE.fullmatch(value)
    if not found:
        raise ConfigError(f"{where}: {value!r} is not auto, off or a size such as 512M or 2G")
    size = int(found.group(1)) * 2 ** (20 if found.group(2).upper() == "M" else 30)
    if not MIN_SWAP <= size <= 2**40:
        raise ConfigError(f"{where}: {value!r} is out of range: 64M to 1024G")
    return size


def _plain(pattern: re.Pattern, value: str, where: str, what: str) -> str:
    if not pattern.fullmatch(value):
        raise ConfigError(f"{where}: {value!r} is not {what}")
    return value


def _unique(items: tuple[str, ...], where: str) -> tuple[str, ...]:
    for index, item in enumerate(items):
        if item in items[:index]:
            raise ConfigError(f"{where}: {item!r} is named twice")
    return items


def _inside(path: str, where: str, base: str, absolute: bool = True) -> str:
    """``path`` normalised: relative to ``base`` and under it, or (if ``absolute``) absolute without ``..``."""
    if path.startswith("/"):
        if not absolute:
            raise ConfigError(f"{where}: {path!r} is absolute; give a path relative to {base}")
        if ".." in path.split("/"):
            raise ConfigError(f"{where}: {path!r} has a '..'; write the path without it")
        return posixpath.normpath(path)
    normal = posixpath.normpath(path)
    if normal == ".." or normal.startswith("../"):
        raise ConfigError(f"{where}: {path!r} leaves {base} ('..'); give a path under it")
    if normal == ".":
        raise ConfigError(f"{where}: {path!r} is {base} itself; give a path under it")
    return normal


def _root(value: str, where: str, origin: Path) -> str:
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


def _build(path: Path, values, secrets: frozenset[str], warnings: tuple[str, ...] = ()) -> HostConfig:
    def get(section: str, key: str, default=None):
        if key not in values.get(section, {}):
            return default
        value, origin = values[section][key]
        schema = _schema(section)
        return _typed(schema.get(key) or schema["*"], value, f"{origin}: [{section}] {key}", origin)

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
    front = _front(path, values, get, programs) if "front" in values else None
    switch = get("deploy", "switch", "rolling" if front else "stopstart")
    if switch not in SWITCHES:
        raise ConfigError(f"{_origin(values, 'deploy', 'switch')}: [deploy] switch: {switch!r} is not one of "
                          f"{', '.join(SWITCHES)}")
    if switch != "stopstart" and not front:
        raise ConfigError(f"{_origin(values, 'deploy', 'switch')}: [deploy] switch = {switch} needs a [front] "
                          f"that can take instances out (without one: stopstart)")
    root = get("host", "root")
    socket = f"{root}/var/run/supervisor.sock"
    if manager == "supervisor" and len(socket.encode()) > MAX_SOCKET_PATH:
        raise ConfigError(f"{_origin(values, 'host', 'root')}: [host] root: too long: supervisor's socket "
                          f"{socket} would have {len(socket.encode())} bytes, a unix socket holds "
                          f"{MAX_SOCKET_PATH} (choose a shorter root)")
    admin = f"{root}/front/run/admin.sock"  # HAProxy run by the site (control = self): its runtime API
    if front and front.server == "haproxy" and front.control == "self" and len(admin.encode()) > MAX_HAPROXY_SOCKET:
        raise ConfigError(f"{_origin(values, 'host', 'root')}: [host] root: too long: HAProxy's admin socket "
                          f"{admin} would have {len(admin.encode())} bytes, HAProxy takes {MAX_HAPROXY_SOCKET} "
                          f"(choose a shorter root)")
    user = get("host", "user", getpass.getuser())
    overrides, green = (tuple(
        (*key.split(":", 1), get(section, key)) for key in sorted(values.get(section, {}))
    ) for section in ("overrides", "green"))
    if switch == "bluegreen":
        _check_bluegreen(values, manager, front, programs, green)
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
        health_timeout=get("deploy", "health_timeout", 60),
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
        warnings=warnings + ((f"{_origin(values, 'backup', 'incremental_blobs')}: [backup] incremental_blobs: "
                              f"ignored: it is used only with archive_blob = true (blob_archive = tar)",)
                             if get("backup", "incremental_blobs", False) and not get("backup", "blob_archive")
                             else ()),
        webhook=get("notify", "webhook"), syslog=get("notify", "syslog"),
        hooks=tuple((key, get("hooks", key)) for key in SCHEMA["hooks"] if key != "hook_timeout"
                    and key in values.get("hooks", {})),
        hook_timeout=get("hooks", "hook_timeout", 600),
        overrides=overrides, green=green, secrets=secrets,
    )


def _offsite(values, get) -> offsites.Offsite | None:
    """``[backup] offsite`` with the key and known_hosts it is reached with."""
    offsite = get("backup", "offsite")
    for key in ("offsite_identity", "offsite_known_hosts"):
        if get("backup", key) and not offsite:
            raise ConfigError(f"{_origin(values, 'backup', key)}: [backup] {key}: set only with [backup] offsite "
                              f"= ssh://user@host/path")
    if not offsite:
        return None
    return dataclasses.replace(offsite, identity=get("backup", "offsite_identity"),
                               known_hosts=get("backup", "offsite_known_hosts"))


def _origin(values, section: str, key: str) -> Path | str:
    """The file a key comes from; for a missing key, the file of its section."""
    options = values.get(section, {})
    if key in options:
        return options[key][1]
    return next((origin for _, origin in options.values()), "host config")


def _is_ip(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
        return True
    except ValueError:
        return False


def instance_address(program: Program) -> str | None:
    """Where the front reaches ``program``: its ``address``, else its health URL's host and port."""
    if program.address:
        return program.address
    if program.health_url:
        netloc = urlsplit(program.health_url)
        if netloc.hostname and netloc.port:
            return f"{netloc.hostname}:{netloc.port}"
    return None


def _front(path: Path, values, get, programs: tuple[Program, ...]) -> Front:
    """``[front]``, checked: kinds, hostnames, a plain site path, instances with addresses, free ports."""
    def fail(key: str, message: str):
        raise ConfigError(f"{_origin(values, 'front', key)}: [front] {key}: {message}")

    for key, allowed in (("server", FRONT_SERVERS), ("control", FRONT_CONTROLS)):
        if get("front", key, allowed[0]) not in allowed:
            fail(key, f"{get('front', key)!r} is not one of {', '.join(allowed)}")
    tls = get("front", "tls", "off")
    if tls not in FRONT_TLS:
        fail("tls", f"{tls!r} is not one of {', '.join(FRONT_TLS)}")
    email = get("front", "email")
    if tls == "acme" and not (email and _EMAIL.fullmatch(email)):
        fail("email", f"tls = acme needs an e-mail address for the ACME account (not {email!r})")
    domains = get("front", "domains", ())
    for domain in domains:
        if not _HOSTNAME.fullmatch(domain):
            fail("domains", f"{domain!r} is not a hostname")
    if tls != "off" and not domains:
        fail("tls", f"tls = {tls} needs [front] domains (the names on the certificate)")
    site_path = get("front", "site_path")
    if site_path is not None and (not _SITE_PATH.fullmatch(site_path) or
                                  any(part in (".", "..") for part in site_path.split("/"))):
        fail("site_path", f"{site_path!r} must be a path like /Plone: letters, digits, _ . ~ @ + -, no spaces, "
                          f"no '..'")
    bind = get("front", "bind", "*")
    if bind != "*" and not (_HOSTNAME.fullmatch(bind) or _is_ip(bind)):
        fail("bind", f"{bind!r} is not *, an IP address or a hostname")
    by_name = {p.name: p for p in programs}
    instances = get("front", "instances", None)
    if instances is None:
        instances = tuple(p.name for p in programs if p.health_url)
    if not instances:
        fail("instances", "no program to balance: name them, or give programs a health_url")
    for name in instances:
        if name not in by_name:
            fail("instances", f"{name!r} is not in [services] programs")
        address = instance_address(by_name[name])
        if address is None or not _ADDRESS.fullmatch(address):
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
    drain_timeout, keep_warm = get("front", "drain_timeout", 30), get("front", "keep_warm", 300)
    for key, value in (("drain_timeout", drain_timeout), ("keep_warm", keep_warm)):
        if value < 0:
            fail(key, "must not be negative")
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
    where = _origin(values, "deploy", "switch")
    if manager != "supervisor":
        raise ConfigError(f"{where}: [deploy] switch = bluegreen works with [services] manager = supervisor "
                          f"only (yet); with systemd use switch = rolling")
    if not green:
        raise ConfigError(f"{where}: [deploy] switch = bluegreen needs a [green] section: the buildout options "
                          f"that make a release listen on the green addresses (ports:instance1 = 18081)")
    by_name = {p.name: p for p in programs}
    used = {instance_address(by_name[n]) for n in front.instances}
    for name in front.instances:
        address = by_name[name].green_address
        if not address or not _ADDRESS.fullmatch(address):
            raise ConfigError(f"{where}: [program:{name}] green_address: switch = bluegreen needs the host:port "
                              f"the green {name} listens on")
        if address in used:
            raise ConfigError(f"{where}: [program:{name}] green_address: {address} is taken by another instance")
        used.add(address)
