"""The host's one HAProxy front, shared by every site on it (``[front] control = systemd``).

Debian's ``haproxy.service`` loads ``/etc/haproxy/sites.d`` (``-f`` in ``/etc/default/haproxy``,
after Debian's own ``haproxy.cfg``; HAProxy reads the ``*.cfg`` files of a directory in name
order). ``bootstrap-host`` makes it, ``root:haproxy`` 2770, so every site's deploy user (each in
group ``haproxy`` for the admin socket already) writes there, and nobody else reads it:

- ``00-front.cfg``: the defaults and the one ``frontend`` on ports 80 and 443. It names no site:
  the ``Host`` header, looked up in ``domains.map``, gives the backend; a site without
  ``domains`` claims ``*`` (every name no other site claims); a name nobody claims gets 404.
  TLS: ``default.pem`` (self-signed, made by bootstrap-host) and, chosen by SNI, every
  certificate linked in ``certs/``. Each deploy writes it again; it is the same for every site.
- ``<site>.cfg``: a site's backend (written by its deploy, and by its switch job after a
  blue/green flip): its instances, health checks, HTTPS redirect, maintenance page, Zope
  virtual hosting; ``<site>-acme`` under ``tls = acme``.
- ``domains.map``: ``<domain> <site>`` lines. A deploy replaces its own lines
  (``onhost/frontnames.py``) under a lock on the directory, and refuses a name another
  site holds (before anything is written).
- ``certs/<site>.pem``: a link to the site's ``<root>/front/certs/site.pem`` (0600, the deploy
  user's; HAProxy reads certificates as root).

So a site needs to know nothing of the others, a deploy of one reloads HAProxy without
dropping the others' connections, and maintenance is per site (its own map in its root).
The deploy users of one host trust each other with the front: the admin socket lets each of
them steer every backend already.
"""
from __future__ import annotations

import re
import shlex

from .. import commands, onhost
from ..config.hostconfig import Front, HostConfig
from ..programs.systemd import site_slug

SITES_DIR = "/etc/haproxy/sites.d"
FRONT_FILE = f"{SITES_DIR}/00-front.cfg"
DOMAINS_MAP = f"{SITES_DIR}/domains.map"
CERTS_DIR = f"{SITES_DIR}/certs"
DEFAULT_CERT = f"{SITES_DIR}/default.pem"
SYSTEM_DEFAULTS = "/etc/default/haproxy"
GROUP = "haproxy"
ANY_NAME = "*"
NO_SITE = "_no_site"  # a site's backend is its slug, which never starts with "_"
ACME_PATH = "/.well-known/acme-challenge/"
DEFAULTS = ["defaults", "    mode http", "    timeout connect 5s", "    timeout client 60s", "    timeout server 300s",
            "    timeout http-request 30s", "    timeout queue 30s", "    retries 3", "    option redispatch 1",
            "    retry-on conn-failure empty-response"]


def shared(config: HostConfig) -> bool:
    """Whether the site's front is the host's shared HAProxy."""
    return bool(config.front) and config.front.server == "haproxy" and config.front.control == "systemd"


def quote(value: str) -> str:
    """A value as HAProxy reads it between double quotes (ours only: HAProxy expands ``$NAME`` there)."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def strong_quote(value: str) -> str:
    """A value from the config as HAProxy reads it literally: between single quotes, where nothing is
    expanded (no ``$NAME``, no escapes, ``#`` is no comment); a ``'`` closes, is escaped, and reopens."""
    return "'" + value.replace("'", "'\\''") + "'"


def backend_name(config: HostConfig) -> str:
    """The site's backend in the front: from its root, or a fleet's from its name (one on every host). The
    host's map routes the site's names to it."""
    return f"fleet-{re.sub(r'[^A-Za-z0-9_-]', '_', config.name)}" if config.member else site_slug(config)


def site_file(config: HostConfig) -> str:
    return f"{SITES_DIR}/{site_slug(config)}.cfg"


def certificate_link(config: HostConfig) -> str:
    return f"{CERTS_DIR}/{site_slug(config)}.pem"


def names(config: HostConfig) -> tuple[str, ...]:
    """The names the front routes to the site: its domains, or every name nobody claims."""
    return config.front.domains or (ANY_NAME,)


def bind(front: Front, port: int) -> str:
    """``address:port`` as HAProxy's ``bind`` takes it."""
    return f"{'' if front.bind == '*' else front.bind}:{port}"


def render_front(front: Front, certificates: tuple[str, ...] = (DEFAULT_CERT, CERTS_DIR + "/")) -> str:
    """``00-front.cfg``: the listeners, TLS by SNI, and the backend each ``Host`` goes to."""
    crt = " ".join(f"crt {quote(path)}" for path in certificates)
    lookup = f"map({quote(DOMAINS_MAP)})"
    return "\n".join([
        "# Written by buildout-deploy: the host's front, the same for every site; each site's part is "
        "<site>.cfg beside it.", *DEFAULTS, "",
        "frontend sites",
        f"    bind {bind(front, front.http_port)}",
        f"    bind {bind(front, front.https_port)} ssl {crt}",
        f"    http-request set-var(txn.site) req.hdr(host),field(1,:),lower,{lookup}",
        f"    http-request set-var(txn.site) str({ANY_NAME}),{lookup} unless {{ var(txn.site) -m found }}",
        # a site without tls = acme has no <site>-acme: HAProxy then takes the default backend
        f"    use_backend %[var(txn.site)]-acme if {{ path_beg {ACME_PATH} }} {{ var(txn.site) -m found }}",
        "    use_backend %[var(txn.site)] if { var(txn.site) -m found }",
        f"    default_backend {NO_SITE}", "",
        f"backend {NO_SITE}",
        '    http-request return status 404 content-type "text/plain; charset=utf-8" '
        'string "No site on this host has that name."', ""])


def check_front(config: HostConfig) -> str:
    """The front as ``haproxy -c`` run by the deploy user checks it: with this site's certificate only
    (the others' are theirs alone)."""
    own = (config.path_on_host("front", "certs", "site.pem"),) if config.front.tls != "off" else ()
    return render_front(config.front, (DEFAULT_CERT, *own))


def claim_names(config: HostConfig, check: bool = False, map_file: str = DOMAINS_MAP) -> str:
    """Put the site's names in the host's map (``check``: only say whether that changes it); exit 3 when
    another site holds one."""
    return commands.python("python3", onhost.source("frontnames"), "--check" if check else "--write", map_file,
                           backend_name(config), *names(config))


def link_certificate(config: HostConfig) -> str:
    """``certs/<site>.pem`` points at the site's certificate (``tls = off``: no link)."""
    link = certificate_link(config)
    if config.front.tls == "off":
        return commands.join("rm", "-f", link)
    return commands.join("ln", "-sfn", config.path_on_host("front", "certs", "site.pem"), link)


def certificate_linked(config: HostConfig) -> str:
    """Succeeds when ``certs/<site>.pem`` is as ``link_certificate`` makes it."""
    link = shlex.quote(certificate_link(config))
    if config.front.tls == "off":
        return f"! [ -e {link} ] && ! [ -L {link} ]"
    target = shlex.quote(config.path_on_host("front", "certs", "site.pem"))
    return f"[ \"$(readlink {link})\" = {target} ]"


def ready() -> str:
    """Succeeds when bootstrap-host made the shared front (its directories, certificate and map) and the
    deploy user may write there."""
    return " && ".join(f"[ {test} {shlex.quote(path)} ]" for test, path in
                       (("-w", SITES_DIR), ("-w", CERTS_DIR), ("-r", DEFAULT_CERT), ("-r", DOMAINS_MAP)))


def system_defaults() -> str:
    """``/etc/default/haproxy`` for Debian's unit: its own config, then every site's."""
    return ("# Written by bootstrap-host: Debian's haproxy.service loads the front the sites share too.\n"
            f"EXTRAOPTS={quote('-S /run/haproxy-master.sock -f ' + SITES_DIR)}\n")


def make_default_certificate() -> str:
    """The certificate for names no site has a certificate for (root's, readable by group haproxy)."""
    key, crt = DEFAULT_CERT + ".key", DEFAULT_CERT + ".crt"
    make = commands.join("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "3650",
                         "-subj", "/CN=localhost", "-keyout", key, "-out", crt)
    join = f"cat {shlex.quote(crt)} {shlex.quote(key)} > {shlex.quote(DEFAULT_CERT + '.new')}"
    return commands.and_then("umask 077", f"{make} 2>/dev/null", join, commands.remove(key, crt),
                             commands.join("chown", f"root:{GROUP}", DEFAULT_CERT + ".new"),
                             commands.join("chmod", "0640", DEFAULT_CERT + ".new"),
                             commands.join("mv", "-f", DEFAULT_CERT + ".new", DEFAULT_CERT))
