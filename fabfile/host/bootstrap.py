"""bootstrap-host: a fresh Debian or Ubuntu host, reached as root once, made ready to deploy to.

One read-only look at the host (``onhost/hostfacts.py``) gives the facts; each part
below compares what the config wants with them and returns what it checked and
the changes to make. A second run finds nothing to change and says what it checked.

``[host] harden = true`` turns off password logins and root's login in sshd, last,
and only after a second connection, as ``user`` with the deploy key alone, got in:
a drop-in ``/etc/ssh/sshd_config.d/00-bootstrap-host-harden.conf`` where the host's
sshd_config includes that directory (named to sort first: sshd keeps the first value
it reads, and providers' images set ``PasswordAuthentication yes`` in their own
drop-ins), else a marked block at the top of ``sshd_config``, checked with
``sshd -t`` and ``sshd -T`` before it takes effect. sshd is reloaded (systemd's
``try-reload-or-restart``, or SIGHUP to the pid in its PidFile where systemd does not
run); a third connection with the key must get in again, or the change is undone
over the root connection, which a reload leaves open.

Root cannot log in afterwards, so a later ``bootstrap-host`` cannot either. It does
not try to go round that (the deploy user has no sudo beyond its units, on purpose):
when root is refused, it logs in as ``user`` with the key, finds the hardening, and stops with exit code 1 and what to do: remove the
drop-in from the provider's console, run bootstrap-host again (it hardens again at
the end). The host is not touched.

The VPS parts have modules of their own: ``venv`` (``<root>/venv``, its distributions sent
from here), ``firewall`` (nftables), ``upgrades`` (unattended-upgrades) and ``swap``.
"""


from __future__ import annotations

import json
import time
from dataclasses import dataclass

from fabric import Connection
from invoke import Exit
from rich.markup import escape

from .. import commands, onhost, output
from ..build import dists, venv
from ..build.platforms import Target
from ..buildout import profile as buildoutfiles
from ..config.hostconfig import HostConfig
from ..front import shared as sharedfront
from ..paths import CACHE
from ..programs import systemd
from . import firewall, logrotate, swap, upgrades
from .frontplan import (FRONT_DEFAULTS, FRONT_PACKAGES, NGINX_DEFAULT_SITE, front_sudoers_path, nginx_include,
                        plan_front, renewal_units)
from .plan import Change, Plan
from .ssh import check_key_login, connect_as_root, deploy_public_key, plan_hardening, undo_hardening
from .units import JOURNAL_GROUP, data_sudoers_path, plan_services, shared_group, supervisord_unit

SYSTEM_PACKAGES = ("python3", "python3-venv", "python3-dev", "build-essential", "rsync", "sudo")


MIN_FREE_BYTES = 512 * 1024 * 1024


APT_ENV = ("env", "DEBIAN_FRONTEND=noninteractive", "APT_LISTCHANGES_FRONTEND=none")


@dataclass(frozen=True)
class Directory:
    path: str
    owner: str
    group: str
    mode: str


def layout(config: HostConfig) -> list[Directory]:
    """The site's directories with their owners and modes: code for ``user``, data for ``app_user``."""
    code = lambda *parts: Directory(config.path_on_host(*parts), config.user, shared_group(config), "0750")
    data = lambda *parts: Directory(config.path_on_host(*parts), config.app_user, config.app_user, "0700")
    # <root>/venv is the deploy's: it makes it again whenever the pinned tools change
    # supervisord, run as app_user, writes its socket, pid and logs there; the deploy user
    # cannot make them inside the 0700 var
    # [host] store: the dists and eggs the deploy user's sites share, readable by each app_user (its group)
    shared = [Directory(path, config.user, shared_group(config), "0750")
              for path in (config.store, config.dists_path, config.eggs_path)] if config.store else []
    return [code(), code("releases"), *([] if config.store else [code("dists"), code("eggs")]), *shared,
            data("var"), data("var", "run"), data("var", "log"), data("backups")]


def wanted_packages(config: HostConfig) -> list[str]:
    extra = (*FRONT_PACKAGES[config.front.server], *(("lego",) if config.front.tls == "acme" else ())) \
        if config.runs_front else ()
    care = (*((firewall.PACKAGE,) if config.firewall else ()),
            *((upgrades.PACKAGE,) if config.security_upgrades else ()))
    return list(dict.fromkeys((*SYSTEM_PACKAGES, *extra, *care, *config.packages)))


def fact_spec(config: HostConfig) -> dict:
    """What to read on the host for this config."""
    users = list(dict.fromkeys((config.user, config.app_user)))
    units = systemd.unit_names(config) + [supervisord_unit(config)]
    files = [authorized_keys(config, None), config.path_on_host("host.json"), systemd.sudoers_path(config),
             logrotate.rule_path(config),
             systemd.sudoers_path(config) + "-supervisor", data_sudoers_path(config), FRONT_DEFAULTS, front_sudoers_path(config),
             *(f"{systemd.UNIT_DIR}/{unit}" for unit in units)]
    paths = [d.path for d in layout(config)] + [config.path_on_host("front", "conf"), NGINX_DEFAULT_SITE,
                                                 sharedfront.SITES_DIR, sharedfront.CERTS_DIR, sharedfront.DEFAULT_CERT,
                                                 sharedfront.DOMAINS_MAP]
    if config.runs_front and config.front.server == "nginx":
        files.append(nginx_include(config))
    if config.runs_front and config.front.tls == "acme":
        files += [f"{systemd.UNIT_DIR}/{name}" for name in renewal_units(config)]
        paths += [f"{systemd.UNIT_DIR}/timers.target.wants/{systemd.site_slug(config)}-certificate.timer"]
    paths += [f"{systemd.UNIT_DIR}/multi-user.target.wants/{unit}" for unit in units]
    files += [config.path_on_host("venv", ".requirements"), f"{config.dists_path}/SHA256SUMS", swap.FSTAB,
              upgrades.CONFIG_PATH]
    wall = firewall.fact_spec(config)
    return {"users": users, "packages": wanted_packages(config), "files": files + wall["files"],
            "paths": paths + [swap.SWAP_FILE] + wall["paths"], "root": config.root,
            "nft_table": wall.get("nft_table")}


def authorized_keys(config: HostConfig, facts: dict | None) -> str:
    home = ((facts or {}).get("users", {}).get(config.user) or {}).get("home") or f"/home/{config.user}"
    return f"{home}/.ssh/authorized_keys"


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
    if config.manager == "systemd" and facts["systemd"]:
        # fab logs reads the units' lines with journalctl; the group reads the whole journal, no more
        plan.check(user is not None and JOURNAL_GROUP in user["groups"],
                   f"{config.user} is in group {JOURNAL_GROUP} (fab logs)",
                   f"add {config.user} to group {JOURNAL_GROUP} (fab logs reads the journal)",
                   commands.join("usermod", "-aG", JOURNAL_GROUP, config.user))
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


@dataclass(frozen=True)
class VenvTools:
    """The tools ``<root>/venv`` holds, as the site pins them, and the distributions (theirs and
    those they need) for the host."""
    tools: dict[str, str]
    files: tuple[dists.Dist, ...]


def venv_tools(config: HostConfig, facts: dict) -> VenvTools:
    """Read the pins from the production profile and fetch the tools for the host's Python (local cache)."""
    try:
        profile = buildoutfiles.read_profile(config.buildout_dir / config.buildout_config)
    except buildoutfiles.ProfileError as error:
        raise Exit(f"{config.path}: [buildout]: {error}", 2)
    tools = venv.pinned_tools(profile.versions)
    if venv.unpinned(tools):
        raise Exit(f"{config.buildout_config}: [versions] must pin {', '.join(venv.unpinned(tools))} "
                   f"(<root>/venv is made with them)", 2)
    target = Target(facts["python"], facts["machine"], facts["glibc"])
    try:
        # pip installs them with what they need (wheel needs packaging): those go along, as pinned
        files = dists.closure(tools, {**profile.versions, **tools}, CACHE / "dists", target)
    except dists.DistError as error:
        raise Exit(str(error), 1)
    return VenvTools(tools, tuple(dists.describe(files)))


def recorded_dists(config: HostConfig, facts: dict) -> dict[str, str]:
    """The distributions ``<root>/dists/SHA256SUMS`` records: name -> sha256."""
    sums = facts["files"].get(f"{config.dists_path}/SHA256SUMS") or ""
    return {name: digest for digest, name in (line.split(None, 1) for line in sums.splitlines() if line.strip())}


def plan_venv(config: HostConfig, facts: dict, plan: Plan, wanted: VenvTools | None) -> None:
    """``<root>/venv`` with the pinned tools, made as ``user`` from distributions sent to ``<root>/dists``."""
    if wanted is None:
        return
    stamp = venv.requirements(wanted.tools)
    pins = " ".join(stamp.split())
    if facts["files"].get(config.path_on_host("venv", ".requirements")) == stamp:
        plan.checked.append(f"{config.path_on_host('venv')} has {pins}")
        return
    recorded = recorded_dists(config, facts)
    sending = [d for d in wanted.files if recorded.get(d.name) != d.sha256]
    dists_dir, incoming = config.dists_path, config.incoming_path
    sums = "".join(f"{d.sha256}  {d.name}\n" for d in sending)
    owner = f"{config.user}:{shared_group(config)}"
    home = ((facts["users"].get(config.user) or {}).get("home")) or f"/home/{config.user}"
    steps = [commands.verify_checksums(incoming, {d.name: d.sha256 for d in sending}),
             commands.join("mv", "-f", "--", *(f"{incoming}/{d.name}" for d in sending), dists_dir),
             commands.append_text(f"{dists_dir}/SHA256SUMS", sums),
             commands.join("chown", owner, *(f"{dists_dir}/{d.name}" for d in sending), f"{dists_dir}/SHA256SUMS"),
             commands.remove(incoming)] if sending else []
    make = commands.and_then(commands.join("cd", "/"),  # root's cwd is not the deploy user's to read
                             commands.join("runuser", "-u", config.user, "--", "env", f"HOME={home}", "sh", "-c",
                                           venv.make(config, wanted.tools)))
    plan.changes.append(Change(f"make {config.path_on_host('venv')} with {pins}", commands.and_then(*steps, make),
                               uploads=tuple((d.path, f"{incoming}/{d.name}") for d in sending)))


def plan_host_record(config: HostConfig, facts: dict, plan: Plan) -> None:
    path = config.path_on_host("host.json")
    text = host_record(config, facts)
    plan.check(facts["files"].get(path) == text, f"{path} records the host", f"record the host in {path}",
               commands.write_file(path, text), commands.join("chmod", "0644", path))


def plan_logrotate(config: HostConfig, facts: dict, plan: Plan) -> None:
    """The rule that rotates the files the programs write under ``var/log`` (``fabfile/logrotate.py``)."""
    path, text = logrotate.rule_path(config), logrotate.render_rule(config)
    plan.check(facts["files"].get(path) == text, f"{path} rotates {config.path_on_host('var', 'log')}",
               f"rotate the logs under {config.path_on_host('var', 'log')} ({path})",
               commands.make_directories(logrotate.RULE_DIR), commands.write_file(path, text),
               commands.join("chmod", "0644", path))


def make_plan(config: HostConfig, facts: dict, public_key: str, tools: VenvTools | None = None) -> Plan:
    """Everything bootstrap-host would change on a host with these facts, and what it checked."""
    check_host(config, facts)
    plan = Plan([], [])
    plan_packages(config, facts, plan)
    plan_users(config, facts, plan)
    plan_key(config, facts, plan, public_key)
    plan_layout(config, facts, plan)
    plan_host_record(config, facts, plan)
    plan_venv(config, facts, plan, tools)
    plan_logrotate(config, facts, plan)
    plan_services(config, facts, plan)
    plan_front(config, facts, plan)
    upgrades.plan_security_upgrades(config, facts, plan)
    swap.plan_swap(config, facts, plan)
    firewall.plan_firewall(config, facts, plan)  # checks that SSH still gets in before the next
    plan_hardening(config, facts, plan)  # last: every change before it needs root
    return plan


def read_facts(connection: Connection, config: HostConfig) -> dict:
    script = commands.python("python3", onhost.source("hostfacts"), json.dumps(fact_spec(config)))
    result = connection.run(script, hide=True, warn=True, dry=False, in_stream=False)
    if result.exited == 127:
        raise Exit(f"{config.address} has no python3: install it (apt-get install python3), then run again", 1)
    if result.exited:
        raise Exit(f"reading the facts of {config.address} failed:\n{result.stderr}", 1)
    return json.loads(result.stdout)


def run_change(connection: Connection, config: HostConfig, change: Change) -> None:
    """Send the change's files, run its command; a failure stops the run, but one the change may have
    (``may_fail``) is said and the run goes on."""
    for parent in sorted({remote.rsplit("/", 1)[0] for _, remote in change.uploads}):
        connection.run(commands.make_directories(parent), hide=True, dry=False, in_stream=False)
    for local, remote in change.uploads:
        connection.put(str(local), remote)
    result = connection.run(change.command, hide=True, warn=True, dry=False, in_stream=False)
    if result.ok:
        return
    tail = config.redact("\n".join((result.stdout + result.stderr).strip().splitlines()[-15:]))
    if change.may_fail:
        output.say(f"  [yellow]![/] {escape(f'{change.may_fail}: {tail}')}")
        return
    raise Exit(f"{change.what} failed on {config.address}; fix it and run bootstrap-host again:\n{tail}", 1)


def bootstrap_one(c, config: HostConfig) -> None:
    """bootstrap-host on one host."""
    dry = bool(c.config.run.dry)
    started = time.monotonic()
    with output.step(f"connect to {config.root_user}@{config.address}"):
        connection = connect_as_root(c, config)
    try:
        with output.step("read the host"):
            facts = read_facts(connection, config)
            plan = make_plan(config, facts, deploy_public_key(config, dry), venv_tools(config, facts))
        for what in plan.checked:
            output.say(f"  [dim]ok[/] {escape(what)}")
        if not plan.changes:
            output.say(f"[bold green]nothing to change on {config.address}: {len(plan.checked)} checks passed "
                       f"({time.monotonic() - started:.1f}s)[/]")
            return
        for change in plan.changes:
            if dry:
                for local, remote in change.uploads:
                    output.say(escape(f"[dry] upload {local.name} -> {remote}"))
                output.say(escape(f"[dry] {change.what}: {config.redact(change.command)}"))
                continue
            if change.needs_key_login:
                with output.step(f"check that {config.user} logs in with the deploy key alone"):
                    why = check_key_login(c, config, attempts=3)
                if why:
                    raise Exit(f"{config.user}@{config.address} cannot log in with the deploy key ({why}); "
                               f"sshd was left as it was: {change.what} needs that first", 1)
            with output.step(change.what):
                run_change(connection, config, change)
            if change.needs_key_login:
                with output.step(f"check that {config.user} still logs in with the key"):
                    why = check_key_login(c, config, attempts=20)
                if why:  # the root session stays open (a reload, established traffic): undo over it
                    connection.run(change.undo or undo_hardening(facts), hide=True, warn=True, dry=False,
                                   in_stream=False)
                    raise Exit(f"after this change ({change.what}), {config.user}@{config.address} could not "
                               f"log in ({why}); it was undone", 1)
    finally:
        connection.close()
    if not dry:
        output.say(f"[bold green]{config.address} is ready: {len(plan.changes)} changes, "
                   f"{len(plan.checked)} checks passed ({time.monotonic() - started:.1f}s); "
                   f"next: fab -H {config.name} deploy[/]")
