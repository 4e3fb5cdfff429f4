"""What a host config is once read and checked: the host, its programs, its front, as frozen data."""
from __future__ import annotations

import getpass
import hashlib
import posixpath
import re
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from urllib.parse import urlsplit

from ..backups import offsite as offsites
from .secrets import secret_pattern

LETS_ENCRYPT = "https://acme-v02.api.letsencrypt.org/directory"


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
    min_uptime: int = 3              # seconds a started program keeps its pid before its start counts
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


def instance_address(program: Program) -> str | None:
    """Where the front reaches ``program``: its ``address``, else its health URL's host and port."""
    if program.address:
        return program.address
    if program.health_url:
        netloc = urlsplit(program.health_url)
        if netloc.hostname and netloc.port:
            return f"{netloc.hostname}:{netloc.port}"
    return None


def port_of(address: str | None) -> str | None:
    """The port of ``host:port``, or None."""
    port = (address or "").rpartition(":")[2]
    return port if re.fullmatch(r"[0-9]{1,5}", port) else None  # isdigit() takes ² and other scripts' digits
