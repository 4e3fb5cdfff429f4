"""The site on a host: its config, one SSH connection, and what we know of its root."""
from __future__ import annotations

import getpass
import json
import socket
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path

import paramiko
from fabric import Connection
from invoke import Exit, UnexpectedExit

from .. import commands, onhost, output
from ..config import fleet as fleetconfig, hostconfig
from . import hostkeys
from ..build import platforms
from ..config.hostconfig import ConfigError, HostConfig
from ..build.platforms import Target
from ..paths import CACHE

# The key pair bootstrap-host makes when the deployer has none of its own: beside hostconfigs/
# (git-ignored), so DEPLOY_HOSTCONFIGS=DIR moves it too and a test never writes into the checkout.
PROJECT_KEY = hostconfig.CONFIG_DIR.parent / ".deploy-keys" / "id_ed25519"
HOME_KEYS = ("id_ed25519", "id_rsa")  # ~/.ssh/NAME, with NAME.pub beside it


@dataclass(frozen=True)
class Release:
    id: str
    built: dict | None
    bad: dict | None

    @property
    def good(self) -> bool:
        return self.built is not None and self.bad is None


@dataclass(frozen=True)
class Facts:
    root_exists: bool
    current: str | None
    releases: tuple[Release, ...]
    lock: str | None
    dists: dict[str, str]           # name -> sha256, as pushed and checked
    manifest: dict | None           # the current release's manifest.json
    venv: str | None
    target: Target
    color: str = "blue"             # the set the current release runs as (switch = bluegreen)
    last_switch: dict | None = None  # the newest switch job's verdict
    sets: dict = field(default_factory=dict)  # blue/green: {color: the release its instances run}
    observed: dict | None = None    # what runs (onhost/observe.py), when the read asked for it

    @classmethod
    def parse(cls, text: str) -> "Facts":
        data = json.loads(text)
        releases = tuple(Release(r["id"], r["built"], r["bad"]) for r in data["releases"])
        return cls(data["root_exists"], data["current"], releases, data["lock"], data["dists"],
                   data["manifest"], data["venv"], platforms.from_facts(data), data.get("color", "blue"),
                   data.get("last_switch"), data.get("sets", {}))

    @property
    def current_eggs(self) -> dict[str, str]:
        """The develop eggs' versions in the current release."""
        return (self.manifest or {}).get("eggs", {})

    def release(self, release_id: str) -> Release | None:
        return next((r for r in self.releases if r.id == release_id), None)


class RemoteFailure(UnexpectedExit):
    """A command on the host failed: said in a few lines (the command's start and its own error), not
    with the whole command (a script of ours can be long), secrets redacted."""

    def __init__(self, result, config: HostConfig):
        super().__init__(result)
        self.config = config

    def __str__(self) -> str:
        first = self.result.command.strip().splitlines()[0] if self.result.command.strip() else ""
        command = first if len(first) <= 120 else first[:117] + "..."
        said = (self.result.stderr.strip() or self.result.stdout.strip()).splitlines()[-5:]
        return self.config.redact(f"on {self.config.address}: `{command}` exited {self.result.exited}"
                                  + (":\n  " + "\n  ".join(said) if said else "") + "\n")


class Site:
    """A host config and the connection to its host; every remote command goes through ``run``."""

    def __init__(self, c, config: HostConfig):
        self.config = config
        self.dry = bool(c.config.run.dry)
        self.connection = connect(c, config, config.user, "(bootstrap-host authorizes it)")
        self.commands_run = 0

    def path(self, *parts: str) -> str:
        return self.config.path_on_host(*parts)

    def run(self, command: str, *, changes: bool = True, warn: bool = False, hide: bool = True):
        """Run ``command`` on the host; under ``--dry`` only commands that change nothing run."""
        if self.dry and changes:
            print(f"[dry] {self.config.redact(command)}")
            return None
        self.commands_run += 1
        try:
            return self.connection.run(command, hide=hide, warn=warn, dry=False, in_stream=False)
        except UnexpectedExit as error:
            raise RemoteFailure(error.result, self.config) from None

    def write_private(self, remote: str, text: str) -> None:
        """Write ``text`` to a file only our login may read, over SFTP: a secret in it never shows in a
        command line (and Invoke's ``in_stream`` sends a byte per 10 ms)."""
        if self.dry:
            print(f"[dry] write {remote}")
            return
        sftp = self.connection.sftp()
        with sftp.open(remote + ".new", "w") as handle:
            handle.chmod(0o600)
            handle.write(text.encode())
        sftp.posix_rename(remote + ".new", remote)

    def put(self, local: Path, remote: str) -> None:
        """Upload a file over the same connection (SFTP)."""
        if self.dry:
            print(f"[dry] upload {local.name} -> {remote}")
            return
        try:
            self.connection.put(str(local), remote)
        except OSError as error:  # paramiko's "size mismatch in put!": the file did not arrive whole
            directory = remote.rsplit("/", 1)[0] or "/"
            free = self.run(commands.join("df", "-Pk", directory), changes=False, warn=True).stdout.split()
            room = f"{free[-3]} kB free in {directory}" if len(free) > 3 and free[-3].isdigit() else directory
            self.run(commands.remove(remote), warn=True)
            raise Exit(f"uploading {local.name} to {self.config.address} failed ({error}): disk full? {room}", 1) \
                from None

    def facts(self, observe: str | None = None) -> Facts:
        """What the root holds now, in one read-only command; with ``observe`` (a command that prints one
        JSON line), what it printed too, in the same command."""
        read = commands.python(self.config.python, onhost.source("facts"), self.config.root, self.config.dists_path)
        result = self.run(f"{read}; {observe}" if observe else read, changes=False)
        lines = result.stdout.strip().splitlines()
        facts = Facts.parse(lines[0])
        if observe:
            facts = replace(facts, observed=json.loads(lines[-1]))
        platforms.remember(self.config.name, facts.target, CACHE)
        return facts

    def close(self) -> None:
        self.connection.close()


def deploy_key(config: HostConfig) -> Path:
    """The private key every login uses and bootstrap-host authorizes for ``user``: ``[host] identity``,
    else ``~/.ssh/id_ed25519`` or ``~/.ssh/id_rsa`` (with its ``.pub``), else this project's own
    (``PROJECT_KEY``, which bootstrap-host makes when it is missing)."""
    if config.identity:
        return config.identity
    home = [Path.home() / ".ssh" / name for name in HOME_KEYS]
    return next((key for key in home if key.is_file() and Path(f"{key}.pub").is_file()), PROJECT_KEY)


def connect(c, config: HostConfig, user: str, login_hint: str) -> Connection:
    """An open connection to the host as ``user``, with the deploy key, its host key checked against the
    known hosts."""
    if config.identity and not config.identity.is_file():
        raise Exit(f"{config.path}: [host] identity = {config.identity}: no such key file "
                   f"(make one with ssh-keygen, or leave identity out)", 2)
    if config.known_hosts.is_dir():
        raise Exit(f"{config.path}: [host] known_hosts = {config.known_hosts} is a directory, not a file", 2)
    kwargs = dict(c.connect_kwargs or {})
    key = deploy_key(config)
    if key.is_file():
        kwargs.setdefault("key_filename", str(key))
    kwargs.setdefault("timeout", 20)
    # a config of its own: connections made at once in threads must not share one (Fabric's is not
    # thread-safe: "No attribute or config key found for 'gateway'" was seen, one host in four)
    connection = Connection(config.address, user=user, port=config.port, connect_kwargs=kwargs,
                            config=c.config.clone())
    hostkeys.check_host_keys(connection, config.known_hosts, output.say)
    where = f"{user}@{config.address}:{config.port}"
    try:
        connection.open()
    except paramiko.BadHostKeyException as error:
        raise Exit(hostkeys.changed_key_message(error, config.known_hosts), 1)
    except paramiko.AuthenticationException:
        tried = f"key {key}" if key.is_file() else f"no key: none in [host] identity, ~/.ssh or {PROJECT_KEY}"
        raise Exit(f"{where} refused the login: wrong password or key ({tried}) {login_hint}", 1)
    except (OSError, paramiko.SSHException) as error:
        raise Exit(f"cannot reach {where}: {error}", 1)
    return connection


def host_config(c) -> HostConfig:
    """The host config that ``fab -H NAME`` names, or a clear error listing the configs there are."""
    name = getattr(c, "host", None)
    if not name:
        raise Exit(f"name the host: fab -H NAME TASK (configs: {', '.join(hostconfig.available())})", 2)
    try:
        config = hostconfig.resolve(name)
    except ConfigError as error:
        raise Exit(str(error), 2)
    warn(config)
    return config


def warn(config: HostConfig) -> None:
    """Say on stderr, once per command, the config's options that mean nothing here (``crb.py``)."""
    for line in config.warnings:
        print(f"warning: {line}", file=sys.stderr)


def open_site(c, role: str | None = None) -> Site:
    """The Site that ``fab -H NAME`` names, connected; a fleet's host with ``role`` (``backup``: the
    backup tasks run where the data is)."""
    if role is not None:
        fleet = fleetconfig.for_host(c)
        if fleet.declared:
            for line in fleet.members[0].config.warnings:
                print(f"warning: {line}", file=sys.stderr)
            return Site(c, fleet.having(role)[0].config)
    return Site(c, host_config(c))


def who() -> str:
    """Who deploys: ``user@machine`` on this side."""
    return f"{getpass.getuser()}@{socket.gethostname()}"
