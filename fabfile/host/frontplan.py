"""bootstrap-host's part for the front: its packages, its sudo rule, the shared HAProxy or nginx, the
certificate's renewal timer."""
from __future__ import annotations

from invoke import Exit

from .. import commands
from ..config.hostconfig import HostConfig
from ..front import haproxy as front
from ..front import nginx
from ..front import shared as sharedfront
from ..programs import systemd
from .plan import Plan
from .units import install_sudoers


FRONT_PACKAGES = {"haproxy": ("haproxy", "openssl"), "nginx": ("nginx", "openssl")}
NGINX_DEFAULT_SITE = "/etc/nginx/sites-enabled/default"


FRONT_DEFAULTS = sharedfront.SYSTEM_DEFAULTS
FRONT_GROUP = "haproxy"  # Debian's admin socket, /run/haproxy/admin.sock, is for this group


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
