"""The web server in front of the instances: HAProxy's config, its check, its reload, maintenance.

Why HAProxy: the switch needs to take one instance out, know when its last request
finished, and put it back, many times per deploy, without reloading anything. HAProxy's
runtime API does each of those with one line on its admin socket (``set server
... state maint``, ``show stat`` for the requests in flight, ``state ready``), its
reload hands the listening sockets to the new process (``expose-fd listeners``), and
``option redispatch`` with ``retry-on conn-failure`` sends a request that could not
reach an instance to another. Debian 12 ships 2.6 (LTS).

The site's files live in ``<root>/front/``: ``maintenance.html`` and ``maintenance.map``
(one line ``on`` while maintenance is on: read at start and kept in step through the
admin socket), ``certs/site.pem`` for ``tls = internal``.

``control = systemd`` (bootstrap-host): one HAProxy for every site on the host, Debian's
``haproxy.service`` (``sharedfront``): the site's deploy writes its backend
(``/etc/haproxy/sites.d/<site>.cfg``) and its names in the host's map, checked with
``haproxy -c`` before the running front reloads; its admin socket is
``/run/haproxy/admin.sock`` (group ``haproxy``, which the deploy user joins) and a sudo
rule lets the deploy user reload it. ``control = self``: the deploy login runs HAProxy
itself, a whole config of the site's own in ``<root>/front/conf/site.cfg`` (the sandbox:
high ports, no root).
"""
from __future__ import annotations

import shlex
from urllib.parse import urlsplit

from invoke import Exit

from .. import commands
from . import nginx, shared as sharedfront
from ..config.hostconfig import Front, HostConfig, instance_address
from ..remote.site import Site

SYSTEM_CONFIG = "/etc/haproxy/haproxy.cfg"
# HAProxy lives in /usr/sbin, which a deploy login's PATH lacks on Debian
HAPROXY = ("env", "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "haproxy")
SYSTEM_SOCKET = "/run/haproxy/admin.sock"
MAINTENANCE_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Maintenance</title></head>
<body><h1>Back in a moment</h1><p>This site is being maintained. Please try again shortly.</p></body></html>
"""


def front_dir(config: HostConfig, *parts: str) -> str:
    return config.path_on_host("front", *parts)


backend_name = sharedfront.backend_name


def config_path(config: HostConfig) -> str:
    """The file that holds the site's part of the front (the switch job rewrites it after a flip)."""
    if sharedfront.shared(config):
        return sharedfront.site_file(config)
    return front_dir(config, "conf", "site.cfg" if config.front.server == "haproxy" else "site.conf")


def admin_socket(config: HostConfig) -> str:
    return SYSTEM_SOCKET if config.front.control == "systemd" else front_dir(config, "run", "admin.sock")


_quote = sharedfront.quote


_bind = sharedfront.bind


def _maintenance(config: HostConfig) -> str:
    """The rule that answers 503 with the page while the site's maintenance map says ``on``."""
    front = config.front
    return (f"    http-request return status 503 content-type \"text/html; charset=utf-8\" "
            f"file {_quote(front_dir(config, 'maintenance.html'))} hdr Retry-After {front.retry_after} "
            f"if {{ str(on),map({_quote(front_dir(config, 'maintenance.map'))}) -m found }} "
            f"!{{ path_beg {sharedfront.ACME_PATH} }}")


def render_config(config: HostConfig, live: str = "blue") -> str:
    """The HAProxy config for the site: listeners, TLS, maintenance, virtual hosting, instances (under
    blue/green each twice, the set that does not serve ``disabled``); the shared front: its backend."""
    if sharedfront.shared(config):
        return render_site_backend(config, live)
    front = config.front
    name = backend_name(config)
    lines = [f"# Written by buildout-deploy from {config.path.name}; every deploy writes it again."]
    if front.control == "self":
        lines += ["global",
                  f"    stats socket {_quote(admin_socket(config))} mode 600 level admin expose-fd listeners",
                  "    stats timeout 30s", ""]
    lines += _fleet_admin(config)
    lines += [*sharedfront.DEFAULTS, "", f"frontend {name}", f"    bind {_bind(front, front.http_port)}"]
    if front.tls != "off":
        lines += [f"    bind {_bind(front, front.https_port)} ssl crt {_quote(front_dir(config, 'certs', 'site.pem'))}",
                  "    http-request redirect scheme https code 301 unless { ssl_fc } || { path_beg /.well-known/acme-challenge/ }"]
    if front.tls == "acme":  # the ACME client answers the CA's HTTP-01 requests, maintenance or not
        lines.append(f"    use_backend {name}-acme if {{ path_beg /.well-known/acme-challenge/ }}")
    lines.append(_maintenance(config))
    if front.hsts and front.tls != "off":
        lines.append('    http-response set-header Strict-Transport-Security "max-age=31536000" if { ssl_fc }')
    lines += [f"    default_backend {name}", "", *_backend(config, live)]
    return "\n".join(lines + _acme_backend(config)) + "\n"


def _fleet_admin(config: HostConfig) -> list[str]:
    """A fleet's front: its runtime API on the private address, for the app hosts' switches."""
    if not config.front.servers:
        return []
    return ["global", f"    stats socket ipv4@{config.private_address}:{config.front.admin_port} level admin", ""]


def render_site_backend(config: HostConfig, live: str = "blue") -> str:
    """The site's part of the host's shared front: its backend, which redirects to HTTPS, shows the
    maintenance page and sets HSTS for its own domains (the frontend, ``00-front.cfg``, routes)."""
    front = config.front
    rules = []
    if front.tls != "off":
        rules.append(f"    http-request redirect scheme https code 301 unless {{ ssl_fc }}")
    rules.append(_maintenance(config))
    if front.hsts and front.tls != "off":
        rules.append('    http-response set-header Strict-Transport-Security "max-age=31536000" if { ssl_fc }')
    lines = [f"# Written by buildout-deploy from {config.path.name}; every deploy writes it again. The host's "
             f"front ({sharedfront.FRONT_FILE}) sends it the requests for: {' '.join(sharedfront.names(config))}"]
    backend = _backend(config, live)
    return "\n".join(lines + _fleet_admin(config) + backend[:1] + rules + backend[1:] + _acme_backend(config)) + "\n"


def _backend(config: HostConfig, live: str) -> list[str]:
    """``backend <site>``: balancing, health checks, virtual hosting, the instances."""
    front, name = config.front, backend_name(config)
    lines = [f"backend {name}", "    balance roundrobin"]
    lines += ["    option httpchk", f"    http-check send meth GET uri {sharedfront.strong_quote(check_path(config))}",
              "    http-check expect status 200-399"]
    if front.site_path is not None:
        lines += _virtual_hosting(front)
    for server, address, off in servers(config, live):
        lines.append(f"    server {server} {address} check inter 1s fall 2 rise 1{' disabled' if off else ''}")
    return lines


def _acme_backend(config: HostConfig) -> list[str]:
    if config.front.tls != "acme":
        return []
    return ["", f"backend {backend_name(config)}-acme", f"    server lego 127.0.0.1:{config.front.acme_port}"]


def check_path(config: HostConfig) -> str:
    """The path the front checks its servers on: the first instance's health URL's."""
    if config.front.servers:
        return config.front.servers[0][2]
    health = urlsplit(next(p for p in config.programs if p.name == config.front.instances[0]).health_url)
    return (health.path or "/") + (f"?{health.query}" if health.query else "")


def servers(config: HostConfig, live: str = "blue") -> list[tuple[str, str, bool]]:
    """The front's servers: name, host:port, and whether it starts disabled (blue/green: the set that does
    not serve); a fleet's front: every app host's instances."""
    if config.front.servers:
        return [(name, address, False) for name, address, _ in config.front.servers]
    programs = {p.name: p for p in config.programs}
    found = []
    for instance in config.front.instances:
        program = programs[instance]
        if config.switch != "bluegreen":
            found.append((instance, instance_address(program), False))
            continue
        for color, address in (("blue", instance_address(program)), ("green", program.green_address)):
            found.append((f"{instance}-{color}", address, color != live))
    return found


def _virtual_hosting(front: Front) -> list[str]:
    """Requests rewritten for Zope's VirtualHostMonster: public scheme, name and port, then the site."""
    site = "" if front.site_path == "/" else front.site_path.rstrip("/")
    lines = []
    if front.domains:  # a Host header that is not ours never reaches a URL Zope writes
        lines += [f"    acl our_host req.hdr(host),field(1,:),lower -m str {' '.join(front.domains)}",
                  "    http-request set-var(txn.vhost) req.hdr(host),field(1,:),lower if our_host",
                  f"    http-request set-var(txn.vhost) str({front.domains[0]}) unless our_host"]
    else:
        lines.append("    http-request set-var(txn.vhost) req.hdr(host),field(1,:),lower,regsub([^a-z0-9.-],,g)")
    lines.append("    http-request set-path /VirtualHostBase/%[ssl_fc,iif(https,http)]/%[var(txn.vhost)]:%[dst_port]"
                 f"{site}/VirtualHostRoot%[path]")
    return lines


def config_check(config: HostConfig, *paths: str) -> str:
    """HAProxy's own check of the config in ``paths`` (with Debian's global part under systemd)."""
    files = (("-f", SYSTEM_CONFIG) if config.front.control == "systemd" else ()) + \
        tuple(token for path in paths for token in ("-f", path))
    return commands.join(*HAPROXY, "-c", *files)  # not -q: a refusal says why


def _pid_file(config: HostConfig) -> str:
    return front_dir(config, "run", "haproxy.pid")


def reload_command(config: HostConfig) -> str:
    """Load the config: a seamless reload when the front runs, a start when it does not."""
    if config.front.server == "nginx":
        return nginx.reload_command(config, settle=True)
    if config.front.control == "systemd":
        return commands.join("sudo", "-n", "/usr/bin/systemctl", "reload-or-restart", "haproxy.service")
    pid_file = _pid_file(config)
    start = commands.join(*HAPROXY, "-W", "-D", "-f", config_path(config), "-p", pid_file)
    running = f"kill -0 \"$(cat {shlex.quote(pid_file)} 2>/dev/null)\" 2>/dev/null"
    # the master re-executes itself and passes the listening sockets on: nothing is refused
    reload = f"kill -USR2 \"$(cat {shlex.quote(pid_file)})\""
    wait_socket = (f"i=0; until [ -S {shlex.quote(admin_socket(config))} ] || [ $i -ge 100 ]; do sleep 0.1; "
                   f"i=$((i+1)); done")
    return f"if {running}; then {reload}; else {start}; fi; sleep 0.3; {wait_socket}"


def internal_certificate(config: HostConfig) -> str:
    """A self-signed certificate for the domains, made on the host once (``tls = internal``)."""
    pem = front_dir(config, "certs", "site.pem")
    names = ",".join(f"DNS:{d}" for d in config.front.domains)
    make = commands.join("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "825",
                         "-subj", f"/CN={config.front.domains[0]}", "-addext", f"subjectAltName={names}",
                         "-keyout", f"{pem}.key", "-out", f"{pem}.crt")
    join = f"cat {shlex.quote(pem + '.crt')} {shlex.quote(pem + '.key')} > {shlex.quote(pem + '.new')}"
    return (f"[ -s {shlex.quote(pem)} ] || {{ umask 077 && {make} 2>/dev/null && {join} && "
            f"{commands.join('mv', pem + '.new', pem)} && {commands.remove(pem + '.crt', pem + '.key')}; }}")


def prepare_files(config: HostConfig) -> str:
    """The front's directory, maintenance page and map, and a certificate where one is needed."""
    steps = [commands.make_directories(front_dir(config, "run"), front_dir(config, "certs"), front_dir(config, "conf"),
                                       mode="0750"),
             commands.write_file(front_dir(config, "maintenance.html"), MAINTENANCE_PAGE),
             f"touch {shlex.quote(front_dir(config, 'maintenance.map'))}"]
    if config.front.server == "nginx":  # maintenance off unless it was on
        inc = front_dir(config, "maintenance.inc")
        steps.append(f"{{ [ -s {shlex.quote(inc)} ] || {{ {commands.write_file(inc, nginx.maintenance_text(False))}; }}; }}")
    if config.front.tls != "off":  # acme: a self-made one until the CA's arrives
        steps.append(internal_certificate(config))
    return commands.and_then(*steps)


def wanted_files(config: HostConfig, live: str) -> dict[str, str]:
    """The front's config files, by path: what the host must have."""
    if sharedfront.shared(config):
        return {sharedfront.FRONT_FILE: sharedfront.render_front(config.front),
                sharedfront.site_file(config): render_site_backend(config, live)}
    if config.front.server == "haproxy":
        return {config_path(config): render_config(config, live)}
    files = {config_path(config): nginx.render_site(config),
             front_dir(config, "conf", "upstream.inc"): nginx.render_upstream(config, live)}
    if config.front.control == "self":
        files[front_dir(config, "nginx.conf")] = nginx.render_main(config)
    return files


def candidate_check(config: HostConfig, live: str) -> tuple[dict[str, str], str]:
    """Candidate files outside ``conf/`` (never loaded unchecked) and the server's own check of them."""
    if sharedfront.shared(config):
        shared, own = front_dir(config, "front.cfg.checking"), front_dir(config, "site.cfg.checking")
        return ({shared: sharedfront.check_front(config), own: render_site_backend(config, live)},
                config_check(config, shared, own))
    if config.front.server == "haproxy":
        checking = front_dir(config, "site.cfg.checking")
        return {checking: render_config(config, live)}, config_check(config, checking)
    site, upstream, main = (front_dir(config, name) for name in ("site.conf.checking", "upstream.inc.checking",
                                                                 "check.conf"))
    files = {site: nginx.render_site(config, upstream), upstream: nginx.render_upstream(config, live),
             main: nginx.check_config(config, site)}
    return files, nginx.check_command(config, main)


def apply(site: Site, live: str = "blue", force: bool = False) -> str:
    """Write the front's config, check it with the server's own check, load it (``force``: even when the
    files and the process are as wanted: the runtime may not be); what happened, in words."""
    config = site.config
    wanted = wanted_files(config, live)
    routed = _check_shared(site) if sharedfront.shared(config) else True
    site.run(prepare_files(config))
    current = {path: site.run(commands.join("cat", path), changes=False, warn=True) for path in wanted}
    running = site.run(front_is_up(config), changes=False, warn=True)
    if not force and all(found and found.stdout == wanted[path] for path, found in current.items()) \
            and not running.exited and routed:
        return "front config unchanged"
    candidates, check = candidate_check(config, live)
    site.run(commands.and_then(*(commands.write_file(path, text) for path, text in candidates.items())))
    checked = site.run(check, warn=True)
    site.run(commands.remove(*candidates))
    if checked.exited:
        message = (checked.stdout + checked.stderr).strip()
        raise Exit(f"the front's config does not pass {config.front.server}'s check; the running front keeps "
                   f"its config:\n{site.config.redact(message)}", 1)
    # the names first: the claim refuses, under its lock, a name another site took meanwhile
    claim, link = ((sharedfront.claim_names(config),), (sharedfront.link_certificate(config),)) \
        if sharedfront.shared(config) else ((), ())
    site.run(commands.and_then(*claim, *(commands.write_file(path, text) for path, text in wanted.items()), *link,
                               reload_command(config)))
    existed = any(found and found.stdout for found in current.values())
    return "front config loaded" if existed else "front started"


def _check_shared(site: Site) -> bool:
    """The host's shared front: bootstrap-host made it, and no other site holds this site's names (exit 2
    before anything changes); whether the names and the certificate are routed as wanted already."""
    config = site.config
    if site.run(sharedfront.ready(), changes=False, warn=True).exited:
        raise Exit(f"{config.address} has no shared front ({sharedfront.SITES_DIR} writable by {config.user}, "
                   f"{sharedfront.DEFAULT_CERT}): run fab -H {config.name} bootstrap-host first", 2)
    claimed = site.run(sharedfront.claim_names(config, check=True), changes=False, warn=True)
    if claimed.exited:
        raise Exit(f"{config.path}: site {config.name}: {claimed.stderr.strip() or claimed.stdout.strip()}", 2)
    linked = site.run(sharedfront.certificate_linked(config), changes=False, warn=True)
    return claimed.stdout.strip() == "unchanged" and not linked.exited


def front_is_up(config: HostConfig) -> str:
    """Succeeds when the front runs (HAProxy: its admin socket answers)."""
    if config.front.server == "nginx":
        if config.front.control == "systemd":
            return commands.join("systemctl", "is-active", "--quiet", "nginx.service")
        return f"kill -0 \"$(cat {shlex.quote(nginx.pid_file(config))} 2>/dev/null)\" 2>/dev/null"
    return (f"printf 'show info\\n' | {commands.join('python3', '-c', _SOCKET_CLIENT, admin_socket(config))}"
            " >/dev/null 2>&1")


# stdin to the admin socket, the answer to stdout: the host needs no socat
_SOCKET_CLIENT = ("import socket,sys; s=socket.socket(socket.AF_UNIX); s.settimeout(10); s.connect(sys.argv[1]); "
                  "s.sendall(sys.stdin.buffer.read()); out=b''\n"
                  "while True:\n c=s.recv(65536)\n if not c: break\n out+=c\n"
                  "sys.stdout.write(out.decode())")


def runtime(config: HostConfig, *lines: str) -> str:
    """Send runtime API commands to the admin socket."""
    text = "; ".join(lines) + "\n"  # one connection takes one line: commands joined by ';' 
    return f"printf %s {shlex.quote(text)} | {commands.join('python3', '-c', _SOCKET_CLIENT, admin_socket(config))}"


def maintenance_command(config: HostConfig, on: bool) -> str:
    """Maintenance on or off, now (admin socket) and after a reload (the map file); nginx: a reload."""
    if config.front.server == "nginx":
        return commands.and_then(commands.write_file(front_dir(config, "maintenance.inc"),
                                                     nginx.maintenance_text(on)),
                                 nginx.reload_command(config, settle=True))
    map_file = front_dir(config, "maintenance.map")
    if on:
        return commands.and_then(commands.write_file(map_file, "on 1\n"),
                                 runtime(config, f"del map {map_file} on", f"add map {map_file} on 1"))
    return commands.and_then(commands.write_file(map_file, ""), runtime(config, f"del map {map_file} on"))


def set_maintenance(site: Site, on: bool) -> None:
    """Turn the maintenance page on or off (nothing to do without a front)."""
    if site.config.front is not None:
        site.run(maintenance_command(site.config, on))


def sudoers(config: HostConfig) -> str:
    """Let the deploy user reload the front, and nothing else."""
    return (f"# Written by bootstrap-host: {config.user} may reload the front of {config.root}.\n"
            f"{config.user} ALL=(root) NOPASSWD: /usr/bin/systemctl reload-or-restart haproxy.service\n")
