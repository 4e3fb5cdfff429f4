"""``certificate`` and ``maintenance``: the web server in front of the instances."""
from __future__ import annotations

from fabric import task
from invoke import Exit



@task(help={"renew": "renew now, whatever the expiry date"})
def certificate(c, renew=False):
    """Get or renew the front's certificate from the ACME CA (tls = acme)."""
    from .. import output
    from ..front import certificates
    from ..remote.site import open_site
    site = open_site(c)
    if site.config.front is None or site.config.front.tls != "acme":
        raise Exit(f"{site.config.path}: [front] tls is not acme: there is no certificate to ask for", 2)
    with output.step("certificate"):
        done, message = certificates.obtain(site, force=renew)
    output.say(message)
    if not done:
        raise Exit(message, 1)


@task(help={"state": "on or off"})
def maintenance(c, state):
    """Turn the front's maintenance page (503 with Retry-After) on or off."""
    from .. import output
    from ..front import haproxy
    from ..remote.site import open_site
    site = open_site(c, role="front")
    if state not in ("on", "off"):
        raise Exit(f"maintenance takes on or off, not {state!r}", 2)
    if site.config.front is None:
        raise Exit(f"{site.config.path}: no [front]: there is nothing to show a maintenance page", 2)
    haproxy.set_maintenance(site, state == "on")
    output.say(f"maintenance {state} on {site.config.name}")
