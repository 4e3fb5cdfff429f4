"""Certificates from an ACME CA (``tls = acme``): lego on the host, HTTP-01 through the front.

The front sends ``/.well-known/acme-challenge/`` to ``127.0.0.1:<acme_port>``, where
lego (Debian's ``lego``) answers while it asks the CA; everything else is the site's.
Until a certificate is issued the front serves a self-made one, so it starts and
answers at once. ``<root>/front/acme/renew`` (written by each deploy, built from
quoted tokens) gets a certificate when there is none and renews one that expires
within 30 days; when the certificate changed it installs it (``certs/site.pem``) and
reloads the front, which drops no connection. Deploys and ``fab certificate`` run it;
with ``control = systemd`` a timer written by ``bootstrap-host`` runs it twice a day.
A CA that cannot be reached changes nothing: the front keeps the certificate it has,
and the task says so.
"""
from __future__ import annotations

import shlex


from .. import commands
from . import haproxy as front
from ..config.hostconfig import HostConfig
from ..remote.site import Site

RENEW_DAYS = 30
LEGO_TIMEOUT = 180


def acme_dir(config: HostConfig, *parts: str) -> str:
    return front.front_dir(config, "acme", *parts)


def lego(config: HostConfig, action: str, *options: str) -> str:
    """lego's command line for this site's domains, answering HTTP-01 behind the front."""
    f = config.front
    env = ["env"] + ([f"LEGO_CA_CERTIFICATES={acme_dir(config, 'ca.pem')}"] if f.acme_ca_bundle else [])
    domains = [token for domain in f.domains for token in ("--domains", domain)]
    return commands.join("timeout", str(LEGO_TIMEOUT), *env, "lego", "--accept-tos", "--email", f.email,
                         "--server", f.acme_directory, "--path", acme_dir(config), "--http",
                         "--http.port", f"127.0.0.1:{f.acme_port}", *domains, action, *options)


def renew_script(config: HostConfig, force: bool = False) -> str:
    """The script that gets, renews and installs the certificate (``force``: renew now)."""
    crt = acme_dir(config, "certificates", f"{config.front.domains[0]}.crt")
    key = acme_dir(config, "certificates", f"{config.front.domains[0]}.key")
    pem = front.front_dir(config, "certs", "site.pem")
    days = "100000" if force else str(RENEW_DAYS)
    return "\n".join([
        "#!/bin/sh",
        "# Written by fab deploy (tls = acme): get or renew the front's certificate, install it when it changed.",
        "set -e",
        "umask 077",
        f"if [ -s {shlex.quote(crt)} ]; then {lego(config, 'renew', '--days', days, '--no-random-sleep')}; "
        f"else {lego(config, 'run')}; fi",
        f"cat {shlex.quote(crt)} {shlex.quote(key)} > {shlex.quote(pem + '.new')}",
        f"if cmp -s {shlex.quote(pem + '.new')} {shlex.quote(pem)}; then rm -f {shlex.quote(pem + '.new')}; "
        f"echo 'certificate unchanged'; exit 0; fi",
        commands.join("mv", "-f", pem + ".new", pem),
        front.reload_command(config),
        "echo 'certificate installed'",
        "",
    ])


def obtain(site: Site, force: bool = False) -> tuple[bool, str]:
    """Get or renew the certificate on the host now; (done, what happened in words)."""
    config = site.config
    steps = [commands.make_directories(acme_dir(config), mode="0700"),
             commands.write_file(acme_dir(config, "renew"), renew_script(config)),
             commands.join("chmod", "0700", acme_dir(config, "renew"))]
    if config.front.acme_ca_bundle:
        steps.append(commands.write_file(acme_dir(config, "ca.pem"), config.front.acme_ca_bundle.read_text()))
    site.run(commands.and_then(*steps))
    run = renew_script(config, force) if force else None
    command = commands.join("sh", "-c", run) if run else commands.join("sh", acme_dir(config, "renew"))
    result = site.run(command, warn=True)
    if result is None:  # --dry
        return True, "certificate: not asked for (dry run)"
    said = (result.stdout + result.stderr).strip().splitlines()
    if result.exited:
        tail = " / ".join(line for line in said[-4:] if line.strip())
        return False, (f"could not get a certificate from {config.front.acme_directory}: {tail}; "
                       f"the front keeps serving with the certificate it has")
    stdout = result.stdout.strip().splitlines()  # lego logs to stderr; the script says what it did on stdout
    return True, stdout[-1] if stdout else "certificate unchanged"


