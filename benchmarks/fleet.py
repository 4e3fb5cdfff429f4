"""Fleet benchmark: how long 1, 10 and 20 sshd-only test hosts take to come up, and their memory;
then how long ``fab -H fleet deploy`` takes to deploy to them.

    sudo .venv/bin/python -m benchmarks.fleet [--isolated] [--workers N] [--counts 1 10 20] [--host-keys ed25519]
        [--deploy-counts 1 10 20] [--no-deploy] [--no-up] [--logs DIR]

Needs root (network namespaces, mounts). Chroot hosts (sshd, no systemd) on one
bridge, made by ``hosts.create_many``; "up" is until every one answers SSH. Memory
per host: the proportional set size (PSS, shared pages split between their users)
and the resident size (RSS) of its processes.

The deploy part: N hosts (Ed25519 host keys) on one bridge, root's authorized_keys and
the known_hosts written straight into their files (bootstrap-host is not measured),
a fleet config with every host ``roles = app``, and a tiny buildout (no parts, no
develop eggs) whose one program is ``sleep`` under supervisor: the remote work is fixed
and small, so the numbers measure the tool. Three deploys per N: the first (the
distributions pushed, the venv made by pip, buildout run), then two code deploys (one byte
of a bundled file changed, buildout on the hosts replaced by ``sleep 1``), the app hosts
switched ``[fleet] batch = 1`` (the default) and ``100%``. ``[fleet] parallel`` is N. Per run: wall time; bytes sent and remote commands (the
deploy says them); CPU on this machine (``fab``'s user + sys, from
``RUSAGE_CHILDREN``); SSH connections (``Accepted publickey`` in each host's sshd log) and
sessions (``Starting session``: each command, and SFTP, sshd at ``LogLevel VERBOSE``).
"""
from __future__ import annotations

import argparse
import os
import re
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

import hosts  # noqa: E402


def kilobytes(path: str, key: str) -> int:
    """The ``key:`` line of a /proc file, in kB (0 when the file is gone)."""
    try:
        for line in Path(path).read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def measure(count: int, workers: int, isolated: bool, host_keys: tuple[str, ...]) -> list[str]:
    """Make ``count`` hosts, measure them, destroy them: one row of the table."""
    with tempfile.TemporaryDirectory(prefix="fleet-bench-") as tmp:
        bridge = None if isolated else hosts.Bridge.create()
        try:
            started = time.monotonic()
            fleet = hosts.create_many(Path(tmp), count, bridge=bridge, workers=workers, host_keys=host_keys)
            up = time.monotonic() - started
            try:
                time.sleep(1)  # sshd settled
                pids = [pid for host in fleet for pid in host.processes()]
                pss = sum(kilobytes(f"/proc/{pid}/smaps_rollup", "Pss") for pid in pids) / count
                rss = sum(kilobytes(f"/proc/{pid}/status", "VmRSS") for pid in pids) / count
            finally:
                started = time.monotonic()
                hosts.destroy_many(fleet)
                down = time.monotonic() - started
        finally:
            if bridge:
                bridge.destroy()
    return [str(count), f"{up:.1f}", f"{up / count:.2f}", f"{down:.1f}",
            f"{pss / 1024:.1f}", f"{rss / 1024:.1f}"]


# The tiny buildout: nothing to build, the tools pinned as example/versions.cfg pins them.
PRODUCTION_CFG = """# a fleet benchmark's buildout: no parts, no develop eggs
[buildout]
extends = versions.cfg
parts =
allow-picked-versions = false
"""
TOOL_PINS = ("zc.buildout", "setuptools", "pip", "wheel", "packaging", "platformdirs")
DEPLOYED = re.compile(r"deployed \S+ to (\d+) hosts? of \S+ in ([\d.]+)s \((\d+) bytes sent, (\d+) remote commands\)")


@dataclass
class Run:
    seconds: float          # fab's wall time, its start-up included
    said: float             # the time the deploy says it took (connected to done)
    sent: int
    commands: int           # as the deploy counts them
    cpu: float              # fab's user + sys on this machine
    connections: list[int]  # per host: "Accepted publickey" in its sshd log
    sessions: list[int]     # per host: "Starting session" (commands and SFTP) in its sshd log
    hosts: int


def tiny_buildout(directory: Path) -> None:
    """``production.cfg`` with no parts and ``versions.cfg`` pinning the tools as the example does."""
    directory.mkdir(parents=True)
    example = Path(__file__).resolve().parent.parent / "example" / "versions.cfg"
    pins = [line for line in example.read_text().splitlines()
            if line.split("=")[0].strip().lower() in TOOL_PINS]
    (directory / "versions.cfg").write_text("# pinned as example/versions.cfg pins them\n[versions]\n"
                                            + "\n".join(pins) + "\n")
    (directory / "production.cfg").write_text(PRODUCTION_CFG)


def fleet_config(configs: Path, fleet: list, key: Path, buildout: Path, batch: str = "1") -> Path:
    """``configs/fleet.cfg``: every host an app host running ``sleep``; root logs in with ``key``; app hosts
    switched ``batch`` at a time."""
    configs.mkdir(parents=True, exist_ok=True)
    known = configs / "known_hosts"
    host_keys = [host.path("/etc/ssh/ssh_host_ed25519_key.pub").read_text().split()[:2] for host in fleet]
    known.write_text("".join(f"{host.address} {' '.join(key)}\n" for host, key in zip(fleet, host_keys)))
    names = [f"h{n + 1:02d}" for n in range(len(fleet))]
    hosts = "".join(f"[host:{name}]\naddress = {host.address}\nroles = app\n" for name, host in zip(names, fleet))
    path = configs / "fleet.cfg"
    path.write_text(f"""[fleet]
hosts = {' '.join(names)}
parallel = {max(10, len(fleet))}
batch = {batch}
[host]
user = root
identity = {key}
known_hosts = {known}
root = /srv/site
firewall = false
{hosts}
[role:app]
programs = sleeper
[buildout]
directory = {buildout}
[services]
programs = sleeper
[program:sleeper]
command = /bin/sleep 1000
[deploy]
health_timeout = 30
""")
    return path


def authorize(host, public_key: str) -> None:
    """Root's authorized_keys on ``host``, written into its overlay (what bootstrap-host would do)."""
    ssh = host.path("/root/.ssh")
    ssh.mkdir(mode=0o700, exist_ok=True)
    os.chmod(ssh, 0o700)
    keys = ssh / "authorized_keys"
    keys.write_text(public_key)
    os.chmod(keys, 0o600)


LOGS: Path | None = None  # --logs DIR: each deploy's output kept there


def log_sessions(host) -> None:
    """sshd logs each session (a command, SFTP) at VERBOSE: set it and let sshd read its config again."""
    host.path("/etc/ssh/sshd_config.d/bench.conf").write_text("LogLevel VERBOSE\n")
    host.run("sh", "-c", 'kill -HUP "$(cat /run/sshd.pid)"')
    deadline = time.monotonic() + 30
    while not hosts._answers_ssh(host.address):  # sshd executes itself again on SIGHUP
        if time.monotonic() > deadline:
            raise hosts.HostError(f"{host.name}: sshd did not answer after SIGHUP")
        time.sleep(0.1)


def fab_deploy(configs: Path, fleet: list, label: str) -> Run:
    """``fab -H fleet deploy``, measured."""
    logs = [host.path("/var/log/sshd.log") for host in fleet]
    offsets = [log.stat().st_size if log.exists() else 0 for log in logs]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.monotonic()
    result = subprocess.run([hosts.FAB, "-H", "fleet", "deploy"], cwd=hosts.REPO, capture_output=True, text=True,
                            env={**os.environ, "DEPLOY_HOSTCONFIGS": str(configs)}, timeout=1800)
    seconds = time.monotonic() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if LOGS:
        LOGS.mkdir(parents=True, exist_ok=True)
        (LOGS / f"{len(fleet)}-{label}.log").write_text(result.stdout + result.stderr)
    if result.returncode:
        raise SystemExit(f"fab deploy exited {result.returncode}:\n{result.stdout[-6000:]}\n{result.stderr[-3000:]}")
    found = DEPLOYED.search(result.stdout.replace("\n", " "))
    if not found:
        raise SystemExit(f"no 'deployed ... bytes sent' line:\n{result.stdout[-3000:]}")
    connections, sessions = [], []
    for log, offset in zip(logs, offsets):
        with open(log, "rb") as handle:
            handle.seek(offset)
            text = handle.read().decode(errors="replace")
        connections.append(text.count("Accepted publickey"))
        sessions.append(text.count("Starting session:"))
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return Run(seconds, float(found.group(2)), int(found.group(3)), int(found.group(4)), cpu, connections,
               sessions, len(fleet))


# Buildout on the host replaced by a fixed sleep (after the first deploy made the venv): the code
# deploys' remote work is the same on 1 and on 20 hosts, not N buildouts on this machine's cores.
STUB_BUILDOUT = "#!/bin/sh\n# benchmarks/fleet.py: buildout replaced by a fixed remote sleep\nexec sleep 1\n"


def stub_buildout(host) -> None:
    buildout = host.path("/srv/site/venv/bin/buildout")
    buildout.write_text(STUB_BUILDOUT)
    os.chmod(buildout, 0o755)


def change_one_byte(buildout: Path) -> None:
    production = buildout / "production.cfg"
    production.write_text(production.read_text() + "#")


DEPLOYS = (("first", "first deploy: dists pushed, venv made by pip, tiny buildout"),
           ("code", "code deploy: one byte changed, buildout = sleep 1, batch = 1 (the default)"),
           ("code-all", "code deploy: one byte changed, buildout = sleep 1, batch = 100%"))


def measure_deploy(count: int, workers: int) -> dict[str, Run]:
    """``count`` hosts on a bridge; the first deploy, then code deploys, to them; destroyed after."""
    runs = {}
    with tempfile.TemporaryDirectory(prefix="fleet-deploy-bench-") as tmp:
        work = Path(tmp)
        bridge = hosts.Bridge.create()
        try:
            fleet = hosts.create_many(work / "hosts", count, bridge=bridge, workers=workers,
                                      host_keys=("ed25519",))
            try:
                key = work / "deploy_ed25519"
                subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "fleet bench", "-f", str(key)],
                               check=True)
                for host in fleet:
                    authorize(host, Path(f"{key}.pub").read_text())
                    log_sessions(host)
                buildout, configs = work / "buildout", work / "hostconfigs"
                tiny_buildout(buildout)
                fleet_config(configs, fleet, key, buildout)
                runs["first"] = fab_deploy(configs, fleet, "first")
                for host in fleet:
                    stub_buildout(host)
                change_one_byte(buildout)
                runs["code"] = fab_deploy(configs, fleet, "code")
                fleet_config(configs, fleet, key, buildout, batch="100%")
                change_one_byte(buildout)
                runs["code-all"] = fab_deploy(configs, fleet, "code-all")
            finally:
                hosts.destroy_many(fleet)
        finally:
            bridge.destroy()
    return runs


def spread(values: list[int]) -> str:
    return str(values[0]) if min(values) == max(values) else f"{min(values)}–{max(values)}"


def deploy_table(counts: list[int], workers: int) -> None:
    measured = {}
    for count in counts:
        measured[count] = measure_deploy(count, workers)
        print(f"fleet deploy, {count} hosts: {measured[count]}", flush=True)
    table = Table(title="fab -H fleet deploy to N sshd-only chroot hosts on one bridge (every host roles = app, "
                        "its program: sleep)")
    for column in ("deploy", "hosts", "s", "÷ 1 host", "it says s", "÷ 1 host", "bytes/host", "CPU s/host",
                   "SSH conn/host", "cmds/host", "sessions/host"):
        table.add_column(column, justify="right")
    for label, _ in DEPLOYS:
        one = measured.get(1, {}).get(label)
        for count, runs in measured.items():
            run, n = runs[label], runs[label].hosts
            table.add_row(label, str(count), f"{run.seconds:.1f}", f"{run.seconds / one.seconds:.2f}" if one else "",
                          f"{run.said:.1f}", f"{run.said / one.said:.2f}" if one else "",
                          f"{run.sent / n:,.0f}", f"{run.cpu / n:.2f}", spread(run.connections),
                          f"{run.commands / n:.1f}", spread(run.sessions))
    console = Console(width=160)
    console.print(table)
    console.print("s: fab's wall time, its start-up included; it says: the deploy's own 'in ...s'; CPU: fab's user + "
                  "sys here; sessions: sshd's (each command, and SFTP)")
    for label, meaning in DEPLOYS:
        console.print(f"{label}: {meaning}")


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.fleet")
    parser.add_argument("--isolated", action="store_true", help="each host on its own /30, not on one bridge")
    parser.add_argument("--workers", type=int, default=hosts.CREATE_WORKERS, help="hosts made at once")
    parser.add_argument("--counts", type=int, nargs="+", default=[1, 10, 20])
    parser.add_argument("--host-keys", nargs="+", default=list(hosts.HOST_KEYS), choices=hosts.HOST_KEYS,
                        help="the host keys each host makes")
    parser.add_argument("--deploy-counts", type=int, nargs="+", default=[1, 10, 20],
                        help="fleets deployed to (the first deploy and a code deploy each)")
    parser.add_argument("--no-deploy", action="store_true", help="only how long hosts take to come up")
    parser.add_argument("--no-up", action="store_true", help="only the deploys")
    parser.add_argument("--logs", type=Path, help="keep each deploy's output in this directory")
    options = parser.parse_args()
    global LOGS
    LOGS = options.logs
    missing = hosts.problems()
    if missing:
        sys.exit("benchmarks.fleet: " + "; ".join(missing))
    hosts.rootfs()
    table = Table(title=f"fleet of chroot hosts ({'isolated' if options.isolated else 'one bridge'}, "
                        f"{options.workers} made at once, host keys: {' '.join(options.host_keys)})")
    for column in ("hosts", "up (s)", "s per host", "destroy (s)", "PSS MiB/host", "RSS MiB/host"):
        table.add_column(column, justify="right")
    if not options.no_up:
        for count in options.counts:
            table.add_row(*measure(count, options.workers, options.isolated, tuple(options.host_keys)))
        Console(width=120).print(table)
    if not options.no_deploy:
        deploy_table(options.deploy_counts, options.workers)


if __name__ == "__main__":
    main()
