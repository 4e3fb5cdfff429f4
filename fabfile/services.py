"""Start, stop and check the site's programs through its process manager."""
from __future__ import annotations

import json
import shlex

from fabric import task
from invoke import Exit

from . import commands, onhost, output, supervisor, switch, systemd
from .site import Site, open_site


def _manager(site: Site):
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
    site.run(_manager(site).start(site.config, [name for name, _ in live(site)]))


def stop_programs(site: Site, shutdown: bool = False) -> None:
    """Stop the programs in reverse order (and the process manager with ``shutdown``)."""
    names = [name for name, _, _ in supervisor.processes(site.config)] if site.config.manager == "supervisor" \
        else [p.name for p in site.config.programs]
    site.run(_manager(site).stop(site.config, list(reversed(names)), shutdown))


def _health(site: Site, urls: list[str], timeout: int) -> str:
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
    return _manager(site).status(site.config)


def check_health(site: Site, programs=None) -> dict:
    """Wait for the health URLs (bounded by ``health_timeout``), then check that every program
    still runs; the failures, if any."""
    urls = [p.health_url for p in programs if p.health_url] if programs else [url for _, url in live(site) if url]
    result = site.run(_health(site, urls, site.config.health_timeout), changes=False, warn=True)
    failed = json.loads(result.stdout)["failed"] if result.stdout.strip() else {url: "no answer" for url in urls}
    running = site.run(status_command(site), changes=False, warn=True)
    if running.exited:
        failed["programs"] = " ".join(running.stdout.split())
    return failed


@task
def start(c):
    """Start the site's programs, in order."""
    site = open_site(c)
    with output.step("start"):
        start_programs(site)
        failed = check_health(site)
    if failed:
        raise Exit(f"started, but not healthy: {failed}", 1)


@task
def stop(c):
    """Stop the site's programs, in reverse order."""
    site = open_site(c)
    with output.step("stop"):
        stop_programs(site, shutdown=True)


@task(help={"everything": "with a front: also restart the programs outside it (the ZEO server: its "
                          "clients wait for it, requests may fail meanwhile)"})
def restart(c, everything=False):
    """Restart the site's programs one by one, each healthy before the next (with a front: drained)."""
    site = open_site(c)
    if site.config.front:
        facts = site.facts()
        current = facts.current
        if current is None:
            raise Exit(f"nothing is deployed on {site.config.name}: nothing to restart", 1)
        with output.step("rolling restart through the front"):
            # one at a time through the front, whatever the deploys' switch (bluegreen: within the set)
            mode = "bluegreen" if site.config.switch == "bluegreen" else "rolling"
            verdict = switch.run_switch(site, current, current, restart_all=everything, live=facts.color,
                                        mode=mode)
        if verdict["result"] != "ok":
            raise Exit(f"restart failed: {site.config.redact(verdict.get('error', '?'))}", 1)
        return
    site.run(_manager(site).start(site.config, []))
    for program in site.config.programs:
        with output.step(f"restart {program.name}"):
            site.run(_manager(site).restart(site.config, program.name))
            failed = check_health(site, [program])
        if failed:
            raise Exit(f"{program.name} did not come back: {failed}", 1)


@task
def status(c):
    """Show what runs, and whether each health URL answers."""
    site = open_site(c)
    facts = site.facts()
    output.say(f"current release: {facts.current or 'none'}"
               + (f" (the {facts.color} set serves)" if site.config.switch == "bluegreen" else ""))
    if facts.last_switch:
        last = facts.last_switch
        output.say(site.config.redact(f"last switch: to {last.get('release')} at {last.get('finished')}: "
                                      f"{last.get('result')}" + (f" ({last['error']})" if last.get("error") else "")))
    result = site.run(status_command(site), changes=False, warn=True)
    output.say(result.stdout.rstrip() or "the process manager is not running")
    urls = [url for _, url in live(site) if url]
    health = site.run(_health(site, urls, 3), changes=False, warn=True)
    data = json.loads(health.stdout or "{}")
    rows = [[site.config.redact(url), site.config.redact(
        "ok" if url in data.get("answered", {}) else data.get("failed", {}).get(url, "?"))] for url in urls]
    output.table("health", ["url", "answer"], rows)
    if result.exited or data.get("failed"):
        raise Exit("the site is not fully up", 1)


@task(help={"lines": "how many lines of each log (default 20)"})
def logs(c, lines=None):
    """Show the last lines of each program's log."""
    lines = "20" if lines is None else lines  # a string here: Invoke would refuse 'abc' with a traceback
    if not str(lines).isdigit() or not 0 < int(lines) <= 100000:
        raise Exit(f"logs --lines takes a whole number from 1 to 100000, not {lines!r}", 2)
    site = open_site(c)
    for name, _ in live(site):
        result = site.run(_manager(site).logs(site.config, name, int(lines)), changes=False, warn=True)
        output.say(f"[bold]== {name}[/]\n{(result.stdout + result.stderr).rstrip()}")
