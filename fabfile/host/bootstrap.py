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
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import paramiko
from fabric import Connection
from invoke import Exit
from rich.markup import escape

from ..buildout import profile as buildoutfiles
from .. import commands, onhost, output
from ..build import datadirs, dists, venv
from . import firewall, logrotate, swap, upgrades
from ..front import haproxy as front, nginx, shared as sharedfront
from ..remote import hostkeys
from ..programs import systemd
from .plan import Change, Plan
from ..config.hostconfig import HostConfig
from ..build.platforms import Target
from ..paths import CACHE
from ..remote.site import connect, deploy_key, PROJECT_KEY

SYSTEM_PACKAGES = ("python3", "python3-venv", "python3-dev", "build-essential", "rsync", "sudo")
MIN_FREE_BYTES = 512 * 1024 * 1024
APT_ENV = ("env", "DEBIAN_FRONTEND=noninteractive", "APT_LISTCHANGES_FRONTEND=none")


HARDEN_DROPIN = "/etc/ssh/sshd_config.d/00-bootstrap-host-harden.conf"
SSHD_CONFIG = "/etc/ssh/sshd_config"
HARDEN_MARK = "# bootstrap-host: harden"
HARDEN_SETTINGS = (("PasswordAuthentication", "no"), ("KbdInteractiveAuthentication", "no"),
                   ("PermitRootLogin", "no"))
JOURNAL_GROUP = "systemd-journal"


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
    # supervisord, run as app_user, writes its socket, pid and logs there; the deploy user
    # cannot make them inside the 0700 var
    # [host] store: the dists and eggs the deploy user's sites share, readable by each app_user (its group)
    shared = [Directory(path, config.user, shared_group(config), "0750")
              for path in (config.store, config.dists_path, config.eggs_path)] if config.store else []
    return [code(), code("releases"), *([] if config.store else [code("dists"), code("eggs")]), *shared,
            data("var"), data("var", "run"), data("var", "log"), data("backups")]


FRONT_PACKAGES = {"haproxy": ("haproxy", "openssl"), "nginx": ("nginx", "openssl")}
NGINX_DEFAULT_SITE = "/etc/nginx/sites-enabled/default"
FRONT_DEFAULTS = sharedfront.SYSTEM_DEFAULTS
FRONT_GROUP = "haproxy"  # Debian's admin socket, /run/haproxy/admin.sock, is for this group


def wanted_packages(config: HostConfig) -> list[str]:
    extra = (*FRONT_PACKAGES[config.front.server], *(("lego",) if config.front.tls == "acme" else ())) \
        if config.runs_front else ()
    care = (*((firewall.PACKAGE,) if config.firewall else ()),
            *((upgrades.PACKAGE,) if config.security_upgrades else ()))
    return list(dict.fromkeys((*SYSTEM_PACKAGES, *extra, *care, *config.packages)))


def front_sudoers_path(config: HostConfig) -> str:
    return systemd.sudoers_path(config) + "-front"


def plan_front(config: HostConfig, facts: dict, plan: Plan) -> None:
    """Debian's haproxy.service loads the site's front; the deploy user may reload it and use its socket."""
    if not config.runs_front or config.front.control != "systemd":
        return
    if not facts["systemd"]:
        raise Exit(f"{config.path}: [front] control = systemd, but systemd does not run on {config.address}; "
                   f"use control = self", 2)
    conf_dir = front.front_dir(config, "conf")
    plan.check(facts["paths"].get(conf_dir) is not None, f"{conf_dir} exists", f"make {conf_dir}",
               commands.make_directories(conf_dir), commands.join("chown", "-R", f"{config.user}:{config.user}",
                                                                  front.front_dir(config)))
    if config.front.server == "nginx":
        plan_nginx(config, facts, plan)
    else:
        plan_shared_front(facts, plan)
        user = facts["users"].get(config.user)
        plan.check(user is not None and FRONT_GROUP in user["groups"], f"{config.user} is in group {FRONT_GROUP}",
                   f"add {config.user} to group {FRONT_GROUP} (the front's admin socket)",
                   commands.join("usermod", "-aG", FRONT_GROUP, config.user))
    path = front_sudoers_path(config)
    rule = nginx.sudoers(config) if config.front.server == "nginx" else front.sudoers(config)
    plan.check(facts["files"].get(path) == rule, f"{path} lets {config.user} reload the front",
               f"let {config.user} reload the front ({path})", *install_sudoers(path, rule))
    if config.front.tls == "acme":
        plan_renewal_timer(config, facts, plan)


def plan_shared_front(facts: dict, plan: Plan) -> None:
    """The HAProxy the host's sites share: its directory, a default certificate, Debian's unit loading it
    (the same for every site: a second site's bootstrap finds it made)."""
    wanted = {"owner": "root", "group": FRONT_GROUP, "mode": "2770", "kind": "dir"}
    for path in (sharedfront.SITES_DIR, sharedfront.CERTS_DIR):
        found = facts["paths"].get(path) or {}
        plan.check({key: found.get(key) for key in wanted} == wanted, f"{path} is root:{FRONT_GROUP} 2770",
                   f"make {path} (root:{FRONT_GROUP} 2770: each site's deploy user writes its part there)",
                   commands.join("install", "-d", "-o", "root", "-g", FRONT_GROUP, "-m", "2770", path))
    plan.check(facts["paths"].get(sharedfront.DEFAULT_CERT) is not None, f"{sharedfront.DEFAULT_CERT} exists",
               f"make {sharedfront.DEFAULT_CERT} (the front's certificate for names without one)",
               sharedfront.make_default_certificate())
    plan.check(facts["paths"].get(sharedfront.DOMAINS_MAP) is not None, f"{sharedfront.DOMAINS_MAP} exists",
               f"make {sharedfront.DOMAINS_MAP} (no site in it yet)",
               commands.join("install", "-m", "0660", "-o", "root", "-g", FRONT_GROUP, "/dev/null",
                             sharedfront.DOMAINS_MAP))
    text = sharedfront.system_defaults()
    plan.check(facts["files"].get(FRONT_DEFAULTS) == text, f"{FRONT_DEFAULTS} loads {sharedfront.SITES_DIR}",
               f"let haproxy.service load {sharedfront.SITES_DIR} ({FRONT_DEFAULTS})",
               commands.write_file(FRONT_DEFAULTS, text), commands.join("systemctl", "restart", "haproxy.service"))


def nginx_include(config: HostConfig) -> str:
    return f"{nginx.SYSTEM_INCLUDE_DIR}/{systemd.site_slug(config)}.conf"


def plan_nginx(config: HostConfig, facts: dict, plan: Plan) -> None:
    """Debian's nginx includes the site's front; Debian's default site (port 80) gives way to it."""
    path, text = nginx_include(config), nginx.system_include(config)
    plan.check(facts["files"].get(path) == text, f"{path} includes the site's front",
               f"let nginx include the site's front ({path})", commands.write_file(path, text))
    default = facts["paths"].get(NGINX_DEFAULT_SITE)
    plan.check(default is None, f"{NGINX_DEFAULT_SITE} is off", f"turn off Debian's default site on port 80",
               commands.remove(NGINX_DEFAULT_SITE), commands.join("systemctl", "reload-or-restart", "nginx.service"))


def renewal_units(config: HostConfig) -> dict[str, str]:
    """A timer that runs the certificate's renew script twice a day, as the deploy user."""
    slug = systemd.site_slug(config)
    script = front.front_dir(config, "acme", "renew")
    service = "\n".join([
        "# Written by bootstrap-host: renews the front's certificate (tls = acme).", "[Unit]",
        f"Description=renew the certificate of the site in {systemd._escape(config.root)}",
        f"ConditionPathExists={systemd._escape(script)}", "", "[Service]", "Type=oneshot", f"User={config.user}",
        f"ExecStart={systemd._escape(commands.join('/bin/sh', script))}", ""])
    timer = "\n".join([
        "# Written by bootstrap-host: renews the front's certificate (tls = acme).", "[Unit]",
        f"Description=renew the certificate of the site in {systemd._escape(config.root)} twice a day", "",
        "[Timer]", "OnCalendar=*-*-* 00,12:00:00", "RandomizedDelaySec=1h", "Persistent=true", "",
        "[Install]", "WantedBy=timers.target", ""])
    return {f"{slug}-certificate.service": service, f"{slug}-certificate.timer": timer}


def plan_renewal_timer(config: HostConfig, facts: dict, plan: Plan) -> None:
    units = renewal_units(config)
    written = [name for name, text in units.items() if facts["files"].get(f"{systemd.UNIT_DIR}/{name}") != text]
    plan.check(not written, "the certificate's renewal timer is as wanted", f"write {' '.join(written)}",
               *(commands.write_file(f"{systemd.UNIT_DIR}/{name}", units[name]) for name in written),
               commands.join("systemctl", "daemon-reload"))
    timer = next(name for name in units if name.endswith(".timer"))
    enabled = facts["paths"].get(f"{systemd.UNIT_DIR}/timers.target.wants/{timer}") is not None
    plan.check(enabled, f"{timer} enabled", f"enable {timer}", commands.join("systemctl", "enable", "--now", timer))


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


def plan_services(config: HostConfig, facts: dict, plan: Plan) -> None:
    """systemd units and the sudo rule for them; or supervisord's unit where systemd runs."""
    if config.manager == "supervisor" and config.app_user != config.user:
        plan_supervisor_sudo(config, facts, plan)
    plan_data_sudo(config, facts, plan)
    if not facts["systemd"]:
        plan.checked.append("no systemd: the deploy starts supervisord (nothing starts it at boot)")
        return
    group = shared_group(config) if config.app_user == config.user else config.app_user
    if config.manager == "systemd":
        units = systemd.render_units(config, group)
        if not units:  # a fleet's front host: no program of the site runs here (an empty sudo rule is refused)
            plan.checked.append("no program of the site runs on this host: no units, no sudo rule for them")
            return
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


def data_sudoers_path(config: HostConfig) -> str:
    return systemd.sudoers_path(config) + "-data"


def plan_data_sudo(config: HostConfig, facts: dict, plan: Plan) -> None:
    """With a separate ``app_user``: the deploy user makes the directories a build wants in var/ as it."""
    if config.app_user == config.user:
        return
    path, text = data_sudoers_path(config), datadirs.sudoers(config)
    plan.check(facts["files"].get(path) == text,
               f"{path} lets {config.user} make directories in var/ and back up as {config.app_user}",
               f"let {config.user} make directories in var/ and back up as {config.app_user} ({path})",
               *install_sudoers(path, text))


def install_sudoers(path: str, text: str) -> tuple[str, ...]:
    """Commands that check a sudoers file with visudo before it takes effect."""
    return (commands.write_file(path + ".check", text), commands.join("visudo", "-q", "-c", "-f", path + ".check"),
            commands.join("chmod", "0440", path + ".check"), commands.join("mv", "-f", path + ".check", path))


def supervisord_unit_text(config: HostConfig, group: str) -> str:
    supervisord = config.path_on_host("venv", "bin", "supervisord")
    conf = config.path_on_host("current", "etc", "supervisord.conf")
    return "\n".join([
        "# Written by bootstrap-host; run it again rather than editing this file.",
        "[Unit]", f"Description=supervisord of the buildout site in {config.root.replace('%', '%%')}",
        "After=network.target", f"ConditionPathExists={conf.replace('%', '%%').replace('$', '$$')}", "",
        "[Service]", "Type=simple", f"User={config.app_user}", f"Group={group}",
        f"ExecStart={systemd._escape(commands.join(supervisord, '-n', '-c', conf))}",
        "Restart=on-failure", "", "[Install]", "WantedBy=multi-user.target", "",
    ])


def hardening_text() -> str:
    return "\n".join([HARDEN_MARK + " (run bootstrap-host again rather than editing this)",
                      *(f"{key} {value}" for key, value in HARDEN_SETTINGS), ""])


def hardened(facts: dict) -> bool:
    """Whether the running sshd config already refuses passwords and root."""
    sshd = facts.get("sshd") or {}
    return all(sshd.get(key.lower()) == value for key, value in HARDEN_SETTINGS)


def _effective_check(sshd: str, *options: str) -> str:
    """Fails unless ``sshd -T`` (with ``options``) shows every hardening setting."""
    wanted = "|".join(f"{key.lower()} {value}" for key, value in HARDEN_SETTINGS)
    return (f"test \"$({commands.join(sshd, '-T', *options)} | grep -cxE {commands.join(wanted)})\" "
            f"= {len(HARDEN_SETTINGS)}")


def reload_sshd(facts: dict) -> str:
    """Make the listening sshd read its config again; sessions already open stay."""
    if facts["systemd"]:
        return commands.join("systemctl", "try-reload-or-restart", "ssh.service")
    pidfile = (facts.get("sshd") or {}).get("pidfile") or "/run/sshd.pid"
    return commands.join("sh", "-c", 'kill -HUP "$(cat "$1")"', "sh", pidfile)


def undo_hardening(facts: dict) -> str:
    """Take the hardening out again: the drop-in, or sshd_config as it was before."""
    if (facts.get("sshd") or {}).get("includes_d"):
        return commands.and_then(commands.join("rm", "-f", HARDEN_DROPIN), reload_sshd(facts))
    return commands.and_then(commands.join("mv", "-f", SSHD_CONFIG + ".before-harden", SSHD_CONFIG),
                             reload_sshd(facts))


def plan_hardening(config: HostConfig, facts: dict, plan: Plan) -> None:
    """With ``harden``: no passwords and no root over SSH, checked by sshd before it takes effect."""
    if not config.harden:
        return
    sshd = facts.get("sshd")
    if not sshd or not sshd["valid"]:
        raise Exit(f"{config.address}: cannot read sshd's config (sshd -T: {(sshd or {}).get('error') or 'no sshd'}); "
                   f"fix it, or set harden = false in {config.path} [host]", 1)
    if hardened(facts):
        plan.checked.append("sshd refuses passwords and root's login")
        return
    binary, text = sshd["binary"], hardening_text()
    if sshd["includes_d"]:
        failed = commands.and_then(commands.join("rm", "-f", HARDEN_DROPIN),
                                   "echo 'sshd rejects the hardening (or an earlier setting wins): left as it was' >&2",
                                   "false")
        command = commands.and_then(
            commands.write_file(HARDEN_DROPIN, text), commands.join("chmod", "0644", HARDEN_DROPIN),
            f"{{ {commands.and_then(commands.join(binary, '-t'), _effective_check(binary))} || {{ {failed}; }}; }}")
    else:  # an old or hand-made sshd_config: the block goes first, where its values win
        candidate = SSHD_CONFIG + ".bootstrap-host"
        command = commands.and_then(
            f"{{ printf %s {commands.join(text)}; cat {commands.join(SSHD_CONFIG)}; }} > {commands.join(candidate)}",
            commands.join(binary, "-t", "-f", candidate), _effective_check(binary, "-f", candidate),
            commands.join("cp", "-p", SSHD_CONFIG, SSHD_CONFIG + ".before-harden"),
            commands.join("chmod", "0644", candidate), commands.join("mv", "-f", candidate, SSHD_CONFIG))
    where = HARDEN_DROPIN if sshd["includes_d"] else SSHD_CONFIG
    plan.changes.append(Change(f"turn off password and root logins in sshd ({where})",
                               commands.and_then(command, reload_sshd(facts)), needs_key_login=True))


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


# --- this machine's side ---------------------------------------------------------------

def deploy_public_key(config: HostConfig, dry: bool) -> str:
    """The public half of ``site.deploy_key``; this project's key pair is made when it is the one and missing."""
    key = deploy_key(config)
    public = Path(f"{key}.pub")
    if public.is_file():
        return public.read_text().strip()
    if key != PROJECT_KEY:
        raise Exit(f"{config.path}: [host] identity = {config.identity}: no public key {public}", 2)
    if dry:
        return "ssh-ed25519 (a key pair this run would make) dry-run"
    PROJECT_KEY.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"deploy key for {config.name}",
                    "-f", str(PROJECT_KEY)], check=True)
    output.say(f"made a key pair for this project: {PROJECT_KEY} (every login as {config.user} uses it)")
    return public.read_text().strip()


def connect_as_root(c, config: HostConfig) -> Connection:
    try:
        return connect(c, config, config.root_user,
                       f"(fab --prompt-for-login-password -H {config.name} bootstrap-host)")
    except Exit as refused:
        if "refused the login" not in str(refused.message):
            raise
        how = hardened_by_us(c, config)
        if not how:
            raise
        raise Exit(f"{config.root_user} may not log in to {config.address}: bootstrap-host turned off root and "
                   f"password logins there ({how}); deploys go on as {config.user} with its "
                   f"key. To run bootstrap-host again, from the provider's console: "
                   f"{HARDEN_UNDO_HINT.get(how, '')}, then run it again (it hardens again at the end). "
                   f"Nothing was changed.", 1) from None


HARDEN_UNDO_HINT = {
    HARDEN_DROPIN: f"rm {HARDEN_DROPIN} && systemctl reload ssh (without systemd: kill -HUP $(cat /run/sshd.pid))",
    SSHD_CONFIG: f"cp -p {SSHD_CONFIG}.before-harden {SSHD_CONFIG} && systemctl reload ssh",
}


def key_login(c, config: HostConfig, attempts: int = 1) -> Connection:
    """A new connection as ``user`` with the deploy key and nothing else (no password, no root);
    up to ``attempts`` tries while sshd does not answer (a refused key is final)."""
    key = deploy_key(config)
    kwargs = {name: value for name, value in (c.connect_kwargs or {}).items() if name != "password"}
    if key.is_file():
        kwargs["key_filename"] = str(key)
    kwargs.update(look_for_keys=False, timeout=20)
    attempt = 1
    while True:
        connection = Connection(config.address, user=config.user, port=config.port, connect_kwargs=kwargs,
                                config=c.config)
        hostkeys.check_host_keys(connection, config.known_hosts, output.say)
        try:
            connection.open()
            return connection
        except (paramiko.SSHException, OSError) as error:
            connection.close()
            if isinstance(error, paramiko.AuthenticationException) or attempt >= attempts:
                raise
        attempt += 1
        time.sleep(0.5)  # sshd re-reading its config closes its listener for a moment


def check_key_login(c, config: HostConfig, attempts: int = 1) -> str | None:
    """None when ``user`` gets in with the deploy key alone, else why not."""
    try:
        connection = key_login(c, config, attempts)
    except (paramiko.SSHException, OSError) as error:
        return f"{type(error).__name__}: {error}"
    try:
        result = connection.run("true", hide=True, warn=True, dry=False, in_stream=False)
        return None if result.ok else f"'true' exited {result.exited}"
    finally:
        connection.close()


def hardened_by_us(c, config: HostConfig) -> str | None:
    """Where bootstrap-host hardened sshd on the host, seen as ``user`` with the key; None if not."""
    try:
        connection = key_login(c, config)
    except (paramiko.SSHException, OSError):
        return None
    try:
        script = (f"if test -e {commands.join(HARDEN_DROPIN)}; then echo {commands.join(HARDEN_DROPIN)}; "
                  f"elif grep -qs {commands.join('^' + HARDEN_MARK)} {commands.join(SSHD_CONFIG)}; "
                  f"then echo {commands.join(SSHD_CONFIG)}; fi")
        found = connection.run(script, hide=True, warn=True, dry=False, in_stream=False).stdout.strip()
        return found or None
    finally:
        connection.close()


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
                    why = check_key_login(c, config)
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
