"""bootstrap-host: a fresh Debian or Ubuntu host, reached as root once, made ready to deploy to.

One read-only look at the host (``onhost/hostfacts.py``) gives the facts; each part
below compares what the config wants with them and returns what it checked and
the changes to make. A second run finds nothing to change and says what it checked.
"""
from __future__ import annotations

import json
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import paramiko
from fabric import Connection, task
from invoke import Exit, UnexpectedExit

from . import commands, hostconfig, hostkeys, onhost, output, systemd
from .hostconfig import ConfigError, HostConfig
from .platforms import Target
from .site import connect

SYSTEM_PACKAGES = ("python3", "python3-venv", "python3-dev", "build-essential", "rsync", "sudo")
MIN_FREE_BYTES = 512 * 1024 * 1024
PROJECT_KEY = hostconfig.CONFIG_DIR.parent / ".deploy-keys" / "id_ed25519"
APT_ENV = ("env", "DEBIAN_FRONTEND=noninteractive", "APT_LISTCHANGES_FRONTEND=none")


@dataclass(frozen=True)
class Change:
    what: str
    command: str


@dataclass
class Plan:
    checked: list[str]
    changes: list[Change]

    def check(self, ok: bool, what: str, change: str, *command: str) -> None:
        """Record ``what`` as checked when ``ok``, else the ``change`` and its commands."""
        if ok:
            self.checked.append(what)
        else:
            self.changes.append(Change(change, commands.and_then(*command)))


@dataclass(frozen=True)
class Directory:
    path: str
    owner: str
    group: str
    mode: str


def shared_group(config: HostConfig) -> str:
    """The group of the deploy user, which ``app_user`` joins to read the code."""
    return config.user


def layout(config: HostConfig) -> list[Directory]:
    """The site's directories with their owners and modes: code for ``user``, data for ``app_user``."""
    code = lambda *parts: Directory(config.path_on_host(*parts), config.user, shared_group(config), "0750")
    data = lambda *parts: Directory(config.path_on_host(*parts), config.app_user, config.app_user, "0700")
    # <root>/venv is the deploy's: it makes it again whenever the pinned tools change
    return [code(), code("releases"), code("dists"), code("eggs"), data("var"), data("backups")]


def wanted_packages(config: HostConfig) -> list[str]:
    return list(dict.fromkeys((*SYSTEM_PACKAGES, *config.packages)))


def fact_spec(config: HostConfig) -> dict:
    """What to read on the host for this config."""
    users = list(dict.fromkeys((config.user, config.app_user)))
    units = systemd.unit_names(config) + [supervisord_unit(config)]
    files = [authorized_keys(config, None), config.path_on_host("host.json"), systemd.sudoers_path(config),
             systemd.sudoers_path(config) + "-supervisor",
             *(f"{systemd.UNIT_DIR}/{unit}" for unit in units)]
    paths = [d.path for d in layout(config)]
    paths += [f"{systemd.UNIT_DIR}/multi-user.target.wants/{unit}" for unit in units]
    return {"users": users, "packages": wanted_packages(config), "files": files, "paths": paths,
            "root": config.root}


def authorized_keys(config: HostConfig, facts: dict | None) -> str:
    home = ((facts or {}).get("users", {}).get(config.user) or {}).get("home") or f"/home/{config.user}"
    return f"{home}/.ssh/authorized_keys"


def supervisord_unit(config: HostConfig) -> str:
    return f"{systemd.site_slug(config)}-supervisord.service"


# --- the parts: each compares the config with the facts ---------------------------------

def check_host(config: HostConfig, facts: dict) -> None:
    """Stop before changing anything when the host cannot take this site."""
    where = f"{config.root_user}@{config.address}"
    missing = [name for name, ok in facts["packages"].items() if not ok]
    if missing and not facts["apt"]:
        raise Exit(f"{where} has no apt-get (this needs Debian or Ubuntu); install {' '.join(missing)} "
                   f"by hand, then run bootstrap-host again", 1)
    if config.manager == "systemd" and not facts["systemd"]:
        raise Exit(f"{config.path}: [services] manager = systemd, but systemd does not run on {where}; "
                   f"use manager = supervisor", 2)
    space = facts["root_space"]
    if not space["writable"]:
        raise Exit(f"{config.path}: [host] root = {config.root}: {space['path']} on {where} is not writable "
                   f"(a read-only filesystem?); choose a root on a writable one", 2)
    for found, what in ((space, "the site's root"), (facts["apt_space"], "apt")):
        if found["free"] < MIN_FREE_BYTES:
            raise Exit(f"{where}: only {found['free'] // 2**20} MiB free in {found['path']} for {what}; "
                       f"{MIN_FREE_BYTES // 2**20} MiB needed", 1)
    for name in dict.fromkeys((config.user, config.app_user)):
        user = facts["users"].get(name)
        if user and user["home"] != f"/home/{name}":
            raise Exit(f"{where}: the user {name} exists with another home ({user['home']}, not /home/{name}); "
                       f"name another user in {config.path} [host], or move that one", 1)


def plan_packages(config: HostConfig, facts: dict, plan: Plan) -> None:
    missing = [name for name, ok in facts["packages"].items() if not ok]
    plan.check(not missing, f"packages installed: {' '.join(facts['packages'])}", f"install {' '.join(missing)}",
               commands.join(*APT_ENV, "apt-get", "update", "-q"),
               commands.join(*APT_ENV, "apt-get", "install", "-y", "-q", "--no-install-recommends",
                             "-o", "Dpkg::Options::=--force-confold", *missing))


def plan_users(config: HostConfig, facts: dict, plan: Plan) -> None:
    group = shared_group(config)
    user = facts["users"].get(config.user)
    plan.check(user is not None, f"user {config.user} exists", f"create user {config.user}",
               commands.join("useradd", "--create-home", "--shell", "/bin/bash", "--user-group", config.user))
    # a locked account ('!') may not log in even with a key where sshd does not use PAM
    plan.check(user is not None and not user["locked"], f"{config.user} may log in with a key",
               f"unlock {config.user} for key logins (no password)", commands.join("usermod", "-p", "*", config.user))
    if config.app_user == config.user:
        return
    app = facts["users"].get(config.app_user)
    plan.check(app is not None, f"user {config.app_user} exists", f"create user {config.app_user}",
               commands.join("useradd", "--create-home", "--shell", "/usr/sbin/nologin", "--user-group",
                             config.app_user))
    plan.check(app is not None and group in app["groups"], f"{config.app_user} is in group {group}",
               f"add {config.app_user} to group {group}", commands.join("usermod", "-aG", group, config.app_user))


def plan_key(config: HostConfig, facts: dict, plan: Plan, public_key: str) -> None:
    path = authorized_keys(config, facts)
    key = " ".join(public_key.split()[:2])
    present = key in (facts["files"].get(path) or "") if facts["users"].get(config.user) else False
    ssh_dir, group = path.rsplit("/", 1)[0], shared_group(config)
    plan.check(present, f"{config.user} has the deploy key ({key.split()[0]} ...{key[-12:]})",
               f"authorize the deploy key for {config.user}",
               commands.join("install", "-d", "-m", "0700", "-o", config.user, "-g", group, ssh_dir),
               commands.append_line(path, public_key.strip()),
               commands.join("chown", f"{config.user}:{group}", path), commands.join("chmod", "0600", path))


def plan_layout(config: HostConfig, facts: dict, plan: Plan) -> None:
    for directory in layout(config):
        found = facts["paths"].get(directory.path)
        ok = found is not None and found["kind"] == "dir" and \
            (found["owner"], found["group"], found["mode"]) == (directory.owner, directory.group, directory.mode)
        plan.check(ok, f"{directory.path} {directory.owner}:{directory.group} {directory.mode}",
                   f"make {directory.path} {directory.owner}:{directory.group} {directory.mode}",
                   commands.make_directories(directory.path),
                   commands.join("chown", f"{directory.owner}:{directory.group}", directory.path),
                   commands.join("chmod", directory.mode, directory.path))


def host_record(config: HostConfig, facts: dict) -> str:
    """``<root>/host.json``: what the release step needs to know of the host."""
    target = Target(facts["python"], facts["machine"], facts["glibc"])
    record = {"distribution": facts["os"]["id"], "version": facts["os"]["version"], "name": facts["os"]["name"],
              "python": facts["python"], "machine": facts["machine"], "glibc": facts["glibc"],
              "platforms": target.platforms, "abi": target.abi, "systemd": facts["systemd"],
              "manager": config.manager, "user": config.user, "app_user": config.app_user}
    return json.dumps(record, indent=2, sort_keys=True) + "\n"


def plan_host_record(config: HostConfig, facts: dict, plan: Plan) -> None:
    path = config.path_on_host("host.json")
    text = host_record(config, facts)
    plan.check(facts["files"].get(path) == text, f"{path} records the host", f"record the host in {path}",
               commands.write_file(path, text), commands.join("chmod", "0644", path))


def plan_services(config: HostConfig, facts: dict, plan: Plan) -> None:
    """systemd units and the sudo rule for them; or supervisord's unit where systemd runs."""
    if config.manager == "supervisor" and config.app_user != config.user:
        plan_supervisor_sudo(config, facts, plan)
    if not facts["systemd"]:
        plan.checked.append("no systemd: the deploy starts supervisord (nothing starts it at boot)")
        return
    group = shared_group(config) if config.app_user == config.user else config.app_user
    if config.manager == "systemd":
        units = systemd.render_units(config, group)
    else:
        units = {supervisord_unit(config): supervisord_unit_text(config, group)}
    written = []
    for name, text in units.items():
        path = f"{systemd.UNIT_DIR}/{name}"
        if facts["files"].get(path) == text:
            plan.checked.append(f"unit {name} is as wanted")
        else:
            written.append(name)
            plan.changes.append(Change(f"write unit {name}", commands.write_file(path, text)))
    if written:
        plan.changes.append(Change("reload systemd", commands.join("systemctl", "daemon-reload")))
    disabled = [n for n in units if not facts["paths"].get(f"{systemd.UNIT_DIR}/multi-user.target.wants/{n}")]
    plan.check(not disabled, f"units enabled: {' '.join(units)}", f"enable {' '.join(disabled)}",
               commands.join("systemctl", "enable", "--quiet", *disabled))
    sudoers = systemd.render_sudoers(config, list(units))
    path = systemd.sudoers_path(config)
    plan.check(facts["files"].get(path) == sudoers, f"{path} lets {config.user} start, stop, restart the units",
               f"let {config.user} start, stop and restart the units ({path})", *install_sudoers(path, sudoers))


def supervisor_sudoers(config: HostConfig) -> str:
    """Let the deploy user run supervisord and supervisorctl as ``app_user``, who owns the data.

    The deploy user owns the code app_user runs, so this gives it nothing it had not;
    it still cannot read var/ or backups/ itself."""
    tools = ", ".join(config.path_on_host("venv", "bin", tool) for tool in ("supervisord", "supervisorctl"))
    return (f"# Written by bootstrap-host: {config.user} runs supervisor for {config.root} as {config.app_user}.\n"
            f"{config.user} ALL=({config.app_user}) NOPASSWD: {tools}\n")


def plan_supervisor_sudo(config: HostConfig, facts: dict, plan: Plan) -> None:
    path = systemd.sudoers_path(config) + "-supervisor"
    text = supervisor_sudoers(config)
    plan.check(facts["files"].get(path) == text, f"{path} lets {config.user} run supervisor as {config.app_user}",
               f"let {config.user} run supervisor as {config.app_user} ({path})", *install_sudoers(path, text))


def install_sudoers(path: str, text: str) -> tuple[str, ...]:
    """Commands that check a sudoers file with visudo before it takes effect."""
    return (commands.write_file(path + ".check", text), commands.join("visudo", "-q", "-c", "-f", path + ".check"),
            commands.join("chmod", "0440", path + ".check"), commands.join("mv", "-f", path + ".check", path))


def supervisord_unit_text(config: HostConfig, group: str) -> str:
    venv = config.path_on_host("venv", "bin", "supervisord")
    conf = config.path_on_host("current", "etc", "supervisord.conf")
    return "\n".join([
        "# Written by bootstrap-host; run it again rather than editing this file.",
        "[Unit]", f"Description=supervisord of the buildout site in {config.root.replace('%', '%%')}",
        "After=network.target", f"ConditionPathExists={conf.replace('%', '%%').replace('$', '$$')}", "",
        "[Service]", "Type=simple", f"User={config.app_user}", f"Group={group}",
        f"ExecStart={systemd._escape(commands.join(venv, '-n', '-c', conf))}",
        "Restart=on-failure", "", "[Install]", "WantedBy=multi-user.target", "",
    ])


def make_plan(config: HostConfig, facts: dict, public_key: str) -> Plan:
    """Everything bootstrap-host would change on a host with these facts, and what it checked."""
    check_host(config, facts)
    plan = Plan([], [])
    plan_packages(config, facts, plan)
    plan_users(config, facts, plan)
    plan_key(config, facts, plan, public_key)
    plan_layout(config, facts, plan)
    plan_host_record(config, facts, plan)
    plan_services(config, facts, plan)
    return plan


# --- this machine's side ---------------------------------------------------------------

def deploy_public_key(config: HostConfig, dry: bool) -> str:
    """The deployer's public key: the config's identity, ~/.ssh/id_ed25519, or one made for this project."""
    candidates = [Path(f"{config.identity}.pub")] if config.identity else []
    candidates += [Path.home() / ".ssh" / "id_ed25519.pub", Path(f"{PROJECT_KEY}.pub")]
    for candidate in candidates:
        if candidate.is_file():
            return candidate.read_text().strip()
    if config.identity:
        raise Exit(f"{config.path}: [host] identity = {config.identity}: no public key {config.identity}.pub", 2)
    if dry:
        return "ssh-ed25519 (a key pair this run would make) dry-run"
    PROJECT_KEY.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"deploy key for {config.name}",
                    "-f", str(PROJECT_KEY)], check=True)
    output.say(f"made a key pair for this project: {PROJECT_KEY} (add 'identity = {PROJECT_KEY}' "
               f"to [host] in {config.path})")
    return Path(f"{PROJECT_KEY}.pub").read_text().strip()


def connect_as_root(c, config: HostConfig) -> Connection:
    return connect(c, config, config.root_user, f"(fab --prompt-for-login-password -H {config.name} bootstrap-host)")


def read_facts(connection: Connection, config: HostConfig) -> dict:
    script = commands.python("python3", onhost.source("hostfacts"), json.dumps(fact_spec(config)))
    result = connection.run(script, hide=True, warn=True, dry=False, in_stream=False)
    if result.exited == 127:
        raise Exit(f"{config.address} has no python3: install it (apt-get install python3), then run again", 1)
    if result.exited:
        raise Exit(f"reading the facts of {config.address} failed:\n{result.stderr}", 1)
    return json.loads(result.stdout)


@task(name="bootstrap-host")
def bootstrap_host(c):
    """Make a fresh host ready (as root, once): users, key, packages, layout, units; safe to run again."""
    name = getattr(c, "host", None)
    if not name:
        raise Exit(f"name the host: fab -H NAME bootstrap-host (configs: {', '.join(hostconfig.available())})", 2)
    try:
        config = hostconfig.resolve(name)
    except ConfigError as error:
        raise Exit(str(error), 2)
    dry = bool(c.config.run.dry)
    started = time.monotonic()
    with output.step(f"connect to {config.root_user}@{config.address}"):
        connection = connect_as_root(c, config)
    try:
        with output.step("read the host"):
            facts = read_facts(connection, config)
            plan = make_plan(config, facts, deploy_public_key(config, dry))
        for what in plan.checked:
            output.say(f"  [dim]ok[/] {what}")
        if not plan.changes:
            output.say(f"[bold green]nothing to change on {config.address}: {len(plan.checked)} checks passed "
                       f"({time.monotonic() - started:.1f}s)[/]")
            return
        for change in plan.changes:
            if dry:
                output.say(f"[dry] {change.what}: {config.redact(change.command)}")
                continue
            with output.step(change.what):
                try:
                    connection.run(change.command, hide=True, dry=False, in_stream=False)
                except UnexpectedExit as failure:
                    tail = (failure.result.stdout + failure.result.stderr).strip().splitlines()[-15:]
                    raise Exit(f"{change.what} failed on {config.address}; fix it and run bootstrap-host "
                               f"again:\n" + config.redact("\n".join(tail)), 1)
    finally:
        connection.close()
    if not dry:
        output.say(f"[bold green]{config.address} is ready: {len(plan.changes)} changes, "
                   f"{len(plan.checked)} checks passed ({time.monotonic() - started:.1f}s); "
                   f"next: fab -H {config.name} deploy[/]")
