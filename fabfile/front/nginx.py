"""nginx as the front (``[front] server = nginx``), for sites that already run it.

The same ``[front]`` keys as HAProxy. nginx has no runtime API for its upstreams, so
the switch job writes ``<root>/front/conf/upstream.inc`` (an instance it takes out is
``down``) and reloads nginx; the old workers finish the requests they have and exit,
and an instance is drained when they are gone. Maintenance is a variable set in
``maintenance.inc`` and a reload; nginx's workers read no file of the site, so its
``www-data`` workers need no access to ``<root>``.

``control = systemd``: Debian's ``nginx.service`` includes ``<root>/front/conf/*.conf``
(a file in ``/etc/nginx/conf.d/`` that ``bootstrap-host`` writes), ``/run/nginx.pid``;
``control = self``: ``<root>/front/nginx.conf`` runs it as the deploy login.
"""
from __future__ import annotations

import hashlib
import shlex

from .. import commands
from ..config.hostconfig import HostConfig, instance_address
from ..programs.systemd import site_slug

SYSTEM_PID = "/run/nginx.pid"
SYSTEM_INCLUDE_DIR = "/etc/nginx/conf.d"
NGINX = ("env", "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "nginx")
MAINTENANCE_BODY = ("<!DOCTYPE html><html lang=en><head><meta charset=utf-8><title>Maintenance</title></head>"
                    "<body><h1>Back in a moment</h1><p>This site is being maintained. Please try again shortly."
                    "</p></body></html>")


def _dir(config: HostConfig, *parts: str) -> str:
    return config.path_on_host("front", *parts)


def pid_file(config: HostConfig) -> str:
    return SYSTEM_PID if config.front.control == "systemd" else _dir(config, "run", "nginx.pid")


def servers(config: HostConfig) -> dict[str, str]:
    """``{server name: address}``: the instances (both sets under blue/green)."""
    programs = {p.name: p for p in config.programs}
    found = {}
    for name in config.front.instances:
        if config.switch == "bluegreen":
            found[f"{name}-blue"] = instance_address(programs[name])
            found[f"{name}-green"] = programs[name].green_address
        else:
            found[name] = instance_address(programs[name])
    return found


def enabled(config: HostConfig, live: str) -> list[str]:
    return [name for name in servers(config) if config.switch != "bluegreen" or name.endswith(f"-{live}")]


def render_upstream(config: HostConfig, live: str = "blue") -> str:
    up = set(enabled(config, live))
    lines = [f"upstream {site_slug(config)} {{"]
    lines += [f"    server {address}{'' if name in up else ' down'};  # {name}"
              for name, address in servers(config).items()]
    return "# Written by the switch job: which instances the front sends requests to.\n" + "\n".join(
        lines + ["}", ""])


def maintenance_text(on: bool) -> str:
    return f"set $maintenance {1 if on else 0};\n"


def _quote(value: str) -> str:
    """A string for nginx's config (it has no ``$`` in it: nginx would read a variable)."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def render_site(config: HostConfig, upstream: str | None = None) -> str:
    """The site's part of nginx's ``http`` block: the listeners, TLS, maintenance and the proxy."""
    front, slug = config.front, site_slug(config)
    pem = _dir(config, "certs", "site.pem")
    site = "" if front.site_path in (None, "/") else front.site_path.rstrip("/")
    # one http block may hold several sites: a short name of this site's own (nginx limits their length)
    vhost = f"$vhost_{hashlib.sha256(slug.encode()).hexdigest()[:8]}"
    lines = [f"# Written by buildout-deploy from {config.path.name}; every deploy writes it again.",
             f"include {upstream or _dir(config, 'conf', 'upstream.inc')};"]
    if front.site_path is not None:
        domains = front.domains or ("localhost",)
        lines += [f"map $host {vhost} {{", f"    default {domains[0]};",
                  *(f"    {d} {d};" for d in domains), "}"]
    target = (f"http://{slug}/VirtualHostBase/$scheme/{vhost}:$server_port{site}/VirtualHostRoot$request_uri"
              if front.site_path is not None else f"http://{slug}")
    acme = ([f"    location /.well-known/acme-challenge/ {{ proxy_pass http://127.0.0.1:{front.acme_port}; }}"]
            if front.tls == "acme" else [])
    proxy = [
        f"    include {_dir(config, 'maintenance.inc')};",
        "    location / {",
        '        default_type "text/html; charset=utf-8";',
        "        if ($maintenance) {",
        f"            add_header Retry-After {front.retry_after} always;",
        f"            return 503 {_quote(MAINTENANCE_BODY)};",
        "        }",
        f"        proxy_pass {target};",
        "        proxy_set_header Host $host;",
        "        proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;",
        "        proxy_set_header X-Forwarded-Proto $scheme;",
        "        proxy_next_upstream error timeout;",
        "        proxy_read_timeout 300s;",
        "        client_max_body_size 100m;",
        "    }",
    ]
    bind = "" if front.bind == "*" else f"[{front.bind}]:" if ":" in front.bind else f"{front.bind}:"
    names = f"    server_name {' '.join(front.domains)};" if front.domains else "    server_name _;"
    lines += ["server {", f"    listen {bind}{front.http_port};", names, *acme]
    if front.tls == "off":
        lines += proxy + ["}"]
        return "\n".join(lines) + "\n"
    port = "" if front.https_port == 443 else f":{front.https_port}"
    lines += [f"    location / {{ return 301 https://$host{port}$request_uri; }}", "}",
              "server {", f"    listen {bind}{front.https_port} ssl;", names,
              f"    ssl_certificate {pem};", f"    ssl_certificate_key {pem};"]
    if front.hsts:
        lines.append('    add_header Strict-Transport-Security "max-age=31536000" always;')
    return "\n".join(lines + proxy + ["}"]) + "\n"


def render_main(config: HostConfig) -> str:
    """``control = self``: nginx's own config, everything it writes under ``<root>/front/run``."""
    run = lambda *parts: _dir(config, "run", *parts)
    return "\n".join([
        "# Written by buildout-deploy: nginx run by the deploy login (control = self).",
        f"user {config.user};" if config.user == "root" else "# runs as the deploy login",
        "worker_processes 2;", f"pid {run('nginx.pid')};", f"error_log {run('error.log')};",
        "events { worker_connections 512; }", "http {", "    access_log off;", "    default_type text/html;",
        f"    client_body_temp_path {run('body')};", f"    proxy_temp_path {run('proxy')};",
        f"    fastcgi_temp_path {run('fastcgi')};", f"    uwsgi_temp_path {run('uwsgi')};",
        f"    scgi_temp_path {run('scgi')};", f"    include {_dir(config, 'conf', '*.conf')};", "}", ""])


def check_config(config: HostConfig, site_file: str) -> str:
    """A config with only ``site_file`` in its ``http`` block, for ``nginx -t``."""
    run = lambda *parts: _dir(config, "run", *parts)
    return (f"pid {run('check.pid')};\nerror_log {run('check.log')};\nevents {{}}\n"
            f"http {{\n    include {site_file};\n}}\n")


def check_command(config: HostConfig, main_file: str) -> str:
    return commands.join(*NGINX, "-t", "-q", "-e", _dir(config, "run", "check.log"), "-c", main_file)


def reload_command(config: HostConfig, settle: bool = False) -> str:
    """Load the config: a graceful reload when nginx runs, a start when it does not. With ``settle``,
    return only when the workers of the old config are gone (at most 10 s): the next request then
    meets the new config (a maintenance page that was just turned on or off, say)."""
    if config.front.control == "systemd":
        reload = commands.join("sudo", "-n", "/usr/bin/systemctl", "reload-or-restart", "nginx.service")
    else:
        main = _dir(config, "nginx.conf")
        running = f"kill -0 \"$(cat {shlex.quote(pid_file(config))} 2>/dev/null)\" 2>/dev/null"
        start = commands.join(*NGINX, "-c", main, "-e", _dir(config, "run", "error.log"))
        signal = commands.join(*NGINX, "-c", main, "-e", _dir(config, "run", "error.log"), "-s", "reload")
        reload = f"if {running}; then {signal}; else {start}; fi"
    if not settle:
        return reload
    pid = shlex.quote(pid_file(config))
    old = (f"master=$(cat {pid} 2>/dev/null); old=$(for p in /proc/[0-9]*; do "
           f"[ -n \"$master\" ] && [ \"$(cut -d' ' -f4 \"$p/stat\" 2>/dev/null)\" = \"$master\" ] && "
           f"echo \"${{p#/proc/}}\"; done)")
    wait = ("i=0; while [ $i -lt 100 ]; do left=; for p in $old; do [ -d /proc/$p ] && left=1; done; "
            "[ -z \"$left\" ] && break; sleep 0.1; i=$((i+1)); done")
    return f"{{ {old}; {reload} && {{ {wait}; }}; }}"


def system_include(config: HostConfig) -> str:
    """``/etc/nginx/conf.d/<site>.conf``: Debian's nginx loads the site's front."""
    return (f"# Written by bootstrap-host: the front of the buildout site in {config.root}.\n"
            f"include {_dir(config, 'conf', '*.conf')};\n")


def sudoers(config: HostConfig) -> str:
    return (f"# Written by bootstrap-host: {config.user} may reload the front of {config.root}.\n"
            f"{config.user} ALL=(root) NOPASSWD: /usr/bin/systemctl reload-or-restart nginx.service\n")
