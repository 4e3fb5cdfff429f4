"""Start, stop and check the site's programs through its process manager."""
from __future__ import annotations

import json
import shlex

from invoke import Exit

from .. import commands, onhost, output
from ..programs import supervisor, systemd
from . import job as switch
from ..remote.site import Site


def process_manager(site: Site):
    return {"supervisor": supervisor, "systemd": systemd}[site.config.manager]


def live(site: Site) -> list[tuple[str, str | None]]:
    """``(name, health URL)`` of each program that serves: under blue/green, of the live set."""
    if site.config.switch != "bluegreen":
        return [(p.name, p.health_url) for p in site.config.programs]
    color = site.facts().color
    return [(name, p.green_health_url if link == "green" else p.health_url)
            for name, p, link in supervisor.live_processes(site.config, color)]


def start_programs(site: Site) -> None:
    """Start the programs in their order."""
    site.run(process_manager(site).start(site.config, [name for name, _ in live(site)]))


def stop_programs(site: Site, shutdown: bool = False) -> None:
    """Stop the programs in reverse order (and the process manager with ``shutdown``)."""
    names = [name for name, _, _ in supervisor.processes(site.config)] if site.config.manager == "supervisor" \
        else [p.name for p in site.config.programs]
    site.run(process_manager(site).stop(site.config, list(reversed(names)), shutdown))


def health_command(site: Site, urls: list[str], timeout: int) -> str:
    """The health script over ``urls``, which it reads from a 0600 file (a token in a URL never shows
    in the process list)."""
    directory = site.path(".switch")
    if not site.dry:
        site.run(commands.make_directories(directory, mode="0700"), changes=False)
        site.write_private(f"{directory}/health-urls", "".join(f"{url}\n" for url in urls))
    return (commands.python(site.config.python, onhost.source("health"), str(timeout)) + " < "
            + shlex.quote(f"{directory}/health-urls"))


def status_command(site: Site) -> str:
    """Fails unless every program that should serve runs."""
    if site.config.manager == "supervisor" and site.config.switch == "bluegreen":
        return supervisor.status(site.config, [name for name, _ in live(site)])
    return process_manager(site).status(site.config)


def check_health(site: Site, programs=None) -> dict:
    """Wait for the health URLs (bounded by ``health_timeout``), then check that every program
    still runs; the failures, if any."""
    urls = [p.health_url for p in programs if p.health_url] if programs else [url for _, url in live(site) if url]
    result = site.run(health_command(site, urls, site.config.health_timeout), changes=False, warn=True)
    failed = json.loads(result.stdout)["failed"] if result.stdout.strip() else {url: "no answer" for url in urls}
    running = site.run(status_command(site), changes=False, warn=True)
    if running.exited:
        failed["programs"] = " ".join(running.stdout.split())
    return failed


def start_site(site: Site) -> None:
    with output.step("start"):
        start_programs(site)
        failed = check_health(site)
    if failed:
        raise Exit(f"started, but not healthy: {failed}", 1)


def stop_site(site: Site) -> None:
    with output.step("stop"):
        stop_programs(site, shutdown=True)


def restart_site(site: Site, everything: bool) -> None:
    if site.config.member and not site.config.front and not everything:
        output.say("kept running: the ZEO server restarts with --everything (its clients wait for it)")
        return
    if site.config.front:
        facts = site.facts()
        current = facts.current
        if current is None:
            raise Exit(f"nothing is deployed on {site.config.label}: nothing to restart", 1)
        with output.step("rolling restart through the front"):
            # one at a time through the front, whatever the deploys' switch (bluegreen: within the set)
            mode = "bluegreen" if site.config.switch == "bluegreen" else "rolling"
            verdict = switch.run_switch(site, current, current, restart_all=everything, live=facts.color,
                                        mode=mode)
        if verdict["result"] != "ok":
            raise Exit(f"restart failed: {site.config.redact(verdict.get('error', '?'))}", 1)
        return
    site.run(process_manager(site).start(site.config, []))
    for program in site.config.programs:
        with output.step(f"restart {program.name}"):
            site.run(process_manager(site).restart(site.config, program.name))
            failed = check_health(site, [program])
        if failed:
            raise Exit(f"{program.name} did not come back: {failed}", 1)
