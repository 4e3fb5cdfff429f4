"""Start, stop and check the site's programs through its process manager."""
from __future__ import annotations

import json
import shlex
import signal
import threading

from fabric import task
from invoke import Exit

from . import commands, fleetconfig, jobs, onhost, output, supervisor, switch, systemd
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
    return _manager(site).status(site.config)


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


def _fleet(c):
    """The fleet ``-H`` names, or None for one host."""
    fleet = fleetconfig.for_host(c)
    return fleet if fleet.declared else None


@task
def start(c):
    """Start the site's programs, in order (a fleet: host by host, the ZEO host first)."""
    fleet = _fleet(c)
    if fleet:
        from . import fleettasks  # it builds on this module
        return fleettasks.in_order(c, fleet, start_site)
    start_site(open_site(c))


def start_site(site: Site) -> None:
    with output.step("start"):
        start_programs(site)
        failed = check_health(site)
    if failed:
        raise Exit(f"started, but not healthy: {failed}", 1)


@task
def stop(c):
    """Stop the site's programs, in reverse order (a fleet: host by host, the ZEO host last)."""
    fleet = _fleet(c)
    if fleet:
        from . import fleettasks  # it builds on this module
        return fleettasks.in_order(c, fleet, stop_site, reverse=True)
    stop_site(open_site(c))


def stop_site(site: Site) -> None:
    with output.step("stop"):
        stop_programs(site, shutdown=True)


@task(help={"everything": "with a front: also restart the programs outside it (the ZEO server: its "
                          "clients wait for it, requests may fail meanwhile)"})
def restart(c, everything=False):
    """Restart the site's programs one by one, each healthy before the next (with a front: drained)."""
    fleet = _fleet(c)
    if fleet:
        from . import fleettasks  # it builds on this module
        return fleettasks.in_order(c, fleet, lambda site: restart_site(site, everything))
    restart_site(open_site(c), everything)


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
    site.run(_manager(site).start(site.config, []))
    for program in site.config.programs:
        with output.step(f"restart {program.name}"):
            site.run(_manager(site).restart(site.config, program.name))
            failed = check_health(site, [program])
        if failed:
            raise Exit(f"{program.name} did not come back: {failed}", 1)


# ``fab status`` exit codes, for a monitor (README: "fab status for a monitor"); 2 is a config error
NOTHING_DEPLOYED, PROGRAM_DOWN, HEALTH_FAILING, LAST_RUN_FAILED = 1, 3, 4, 5


def last_backup_command(config) -> str:
    """The newest backup line of ``deploy.log`` (a verified backup, or a scheduled one that failed)."""
    return (commands.join("grep", "-E", '"event": "backup(-failed)?"', config.path_on_host("deploy.log"))
            + " 2>/dev/null | " + commands.join("tail", "-n", "1"))


def trouble_code(deployed: bool, programs_down: bool, health_failed: bool, last_switch: dict | None,
                 last_backup: dict | None) -> int:
    """The exit code of ``fab status``: the worst trouble found, 0 when there is none."""
    if not deployed:
        return NOTHING_DEPLOYED
    if programs_down:
        return PROGRAM_DOWN
    if health_failed:
        return HEALTH_FAILING
    if (last_switch and last_switch.get("result") not in (None, "ok")) or \
            (last_backup and last_backup.get("event") == "backup-failed"):
        return LAST_RUN_FAILED
    return 0


@task(help={"limit": "a fleet: only these hosts (host1,host2)"})
def status(c, limit=None):
    """Show what runs, and whether each health URL answers (exit 1, 3, 4 or 5 by kind of trouble)."""
    fleet = fleetconfig.for_host(c)
    if fleet.declared:
        from . import fleettasks  # it builds on this module
        return fleettasks.status(c, fleetconfig.limit(fleet, limit))
    site = open_site(c)
    facts = site.facts()
    output.say(f"current release: {facts.current or 'none'}"
               + (f" (the {facts.color} set serves)" if site.config.switch == "bluegreen" else ""))
    if facts.current is None:
        raise Exit(f"nothing is deployed on {site.config.name}", NOTHING_DEPLOYED)
    if facts.last_switch:
        last = facts.last_switch
        output.say(site.config.redact(f"last switch: to {last.get('release')} at {last.get('finished')}: "
                                      f"{last.get('result')}" + (f" ({last['error']})" if last.get("error") else "")))
    found = site.run(last_backup_command(site.config), changes=False, warn=True)
    last_backup = json.loads(found.stdout) if found.stdout.strip() else None
    if last_backup:
        output.say(site.config.redact(
            f"last backup: {last_backup.get('time')}: "
            + (f"failed ({last_backup.get('error')})" if last_backup["event"] == "backup-failed"
               else f"{last_backup.get('kind')} {last_backup.get('stamp')}, verified")))
    result = site.run(status_command(site), changes=False, warn=True)
    output.say(result.stdout.rstrip() or "the process manager is not running")
    urls = [url for _, url in live(site) if url]
    health = site.run(health_command(site, urls, 3), changes=False, warn=True)
    data = json.loads(health.stdout or "{}")
    rows = [[site.config.redact(url), site.config.redact(
        "ok" if url in data.get("answered", {}) else data.get("failed", {}).get(url, "?"))] for url in urls]
    output.table("health", ["url", "answer"], rows)
    code = trouble_code(True, bool(result.exited), bool(data.get("failed")) or (bool(urls) and not data),
                        facts.last_switch, last_backup)
    if code:
        raise Exit({PROGRAM_DOWN: "a program is not running", HEALTH_FAILING: "a health URL does not answer",
                    LAST_RUN_FAILED: "the site runs, but the last switch or the last backup failed"}[code], code)


class UntilInterrupted:
    """The remote command's stdin: nothing, then its end once Ctrl-C is pressed here.

    Invoke, without a pty, answers Ctrl-C by waiting for output that a follow never
    stops sending; closing the remote stdin instead lets the remote side end itself."""

    def __init__(self):
        self.interrupted = threading.Event()

    def interrupt(self, signum=None, frame=None) -> None:
        self.interrupted.set()

    def read(self, size: int = 1) -> str | None:
        return "" if self.interrupted.is_set() else None  # None: nothing yet; "": the end


def follow_command(config, names: list[str], lines: int) -> str:
    """Stream the programs' logs as they grow, until our SSH session ends.

    Nothing is forwarded to the remote stdin, so it reaches its end only when the
    session closes (Ctrl-C here): then ``kill 0`` ends the whole process group (sshd makes
    the shell its leader), so no ``tail`` is left behind on the host."""
    if config.manager == "systemd":
        streams = [commands.join("journalctl", "--no-pager", "-f", "-n", str(lines),
                                 *(token for name in names for token in ("-u", systemd.unit_name(config, name))))]
    else:  # supervisord reads the files as app_user, who may read var/; one stream per program, each line named
        streams = [f"{supervisor.follow(config, name)} | {commands.join('sed', '-u', f's|^|{name} |')}"
                   for name in names]
    return "".join(f"{stream} & " for stream in streams) + "cat >/dev/null; kill 0"


@task(help={"lines": "how many lines of each log (default 20)",
            "follow": "go on printing what the programs log, until Ctrl-C",
            "limit": "a fleet: only these hosts (host1,host2)"})
def logs(c, lines=None, follow=False, limit=None):
    """Show the last lines of each program's log (-f: follow them live until Ctrl-C)."""
    lines = "20" if lines is None else lines  # a string here: Invoke would refuse 'abc' with a traceback
    if not str(lines).isdigit() or not 0 < int(lines) <= 100000:
        raise Exit(f"logs --lines takes a whole number from 1 to 100000, not {lines!r}", 2)
    fleet = _fleet(c)
    if fleet:
        fleet = fleetconfig.limit(fleet, limit)
        if follow and len(fleet.members) > 1:
            raise Exit(f"logs --follow follows one host: add --limit HOST ({' '.join(fleet.names)})", 2)
        if not follow:
            from . import fleettasks  # it builds on this module
            return fleettasks.in_order(c, fleet, lambda site: show_logs(site, int(lines)))
        site = Site(c, fleet.members[0].config)
    else:
        site = open_site(c)
    names = [name for name, _ in live(site)]
    if follow:
        output.say(f"following the logs of {' '.join(names)} (Ctrl-C to stop)")
        until = UntilInterrupted()
        previous = signal.signal(signal.SIGINT, until.interrupt)
        try:
            site.connection.run(follow_command(site.config, names, int(lines)), hide=False, warn=True,
                                in_stream=until, out_stream=jobs.Redacted(site), err_stream=jobs.Redacted(site))
        finally:
            signal.signal(signal.SIGINT, previous)
        output.say("stopped following the logs")
        return
    show_logs(site, int(lines))


def show_logs(site: Site, lines: int) -> None:
    for name, _ in live(site):
        result = site.run(_manager(site).logs(site.config, name, lines), changes=False, warn=True)
        output.say(f"[bold]== {name}[/]\n{(result.stdout + result.stderr).rstrip()}")
