"""Integration: a fleet on the sandbox host: a front, a data host and two app hosts, each its own root and
its own loopback address (127.0.0.10-13: Linux routes all of 127/8 to lo), deployed as one.

The hosts share one sshd, so this measures the tool's phases, not the network; tests/test_fleet_hosts.py
runs the same fleet on test hosts in network namespaces on one bridge. Every switch runs under a bounded
load through the front; each test counts failed requests (none allowed) and finds every accepted POST.
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
from pathlib import Path

import pytest

import fleets
from fleets import DOMAIN, FAB
from sandbox.load import Load
from sites import BUILD_JUNK, REPO
from support import free_port, require

HOSTS = {"front": "127.0.0.13", "data": "127.0.0.10", "app1": "127.0.0.11", "app2": "127.0.0.12"}


class Fleet:
    """The fleet's files here, its roots there, and ``fab -H fleet``."""

    def __init__(self, workdir: Path, sandbox):
        self.workdir, self.buildout, self.configs = workdir, workdir / "buildout", workdir / "hostconfigs"
        shutil.copytree(REPO / "example", self.buildout, ignore=BUILD_JUNK)
        self.configs.mkdir()
        self.ports = {name: free_port() for name in ("zeo", "instance1", "instance2", "front", "admin")}
        self.roots = {name: workdir / name for name in HOSTS}
        members = {name: f"root = {self.roots[name]}\nprivate_address = {address}\n" for name, address in HOSTS.items()}
        (self.configs / "fleet.cfg").write_text(fleets.config_text(
            host=f"address = 127.0.0.1\nport = {sandbox.port}\nidentity = {sandbox.key_file}\n"
                 f"known_hosts = {sandbox.known_hosts}\n",
            members=members, buildout=self.buildout, ports=self.ports, bind="127.0.0.1"))
        self.env = {**os.environ, "DEPLOY_HOSTCONFIGS": str(self.configs)}

    def fab(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return fleets.fab(self.env, *args, check=check)

    def current(self, name: str) -> str | None:
        link = self.roots[name] / "current"
        return os.readlink(link).split("/")[-1] if link.is_symlink() else None

    def currents(self) -> set:
        return {self.current(name) for name in HOSTS}

    def is_bad(self, name: str, release: str) -> bool:
        return (self.roots[name] / "releases" / release / ".deploy" / "bad.json").exists()

    def change_code(self, line: str) -> None:
        fleets.change_code(self.buildout, line)

    def zeo_pid(self) -> str:
        root = self.roots["data"]
        return subprocess.run([str(root / "venv" / "bin" / "supervisorctl"), "-c",
                               str(root / "current" / "etc" / "supervisord.conf"), "pid", "zeoserver"],
                              capture_output=True, text=True).stdout.strip()

    def load(self) -> Load:
        return Load(self.ports["front"], DOMAIN, tls=False)

    def objects(self) -> list[dict]:
        import json
        import urllib.request
        url = f"http://{HOSTS['app1']}:{self.ports['instance1']}/objects.json"
        with urllib.request.urlopen(url, timeout=10) as response:
            return json.loads(response.read())

    def stop(self) -> None:
        for root in self.roots.values():
            for pid_file in (root / "var" / "run" / "supervisord.pid", root / "front" / "run" / "haproxy.pid"):
                if pid_file.exists():
                    try:
                        os.kill(int(pid_file.read_text().split()[0]), signal.SIGTERM)
                    except (ProcessLookupError, ValueError):
                        pass


def assert_no_request_failed(fleet: Fleet, load: Load) -> None:
    fleets.assert_no_request_failed(load, fleet.objects())


@pytest.fixture(scope="module")
def fleet(sandbox_host, tmp_path_factory):
    require(shutil.which("haproxy") or os.path.exists("/usr/sbin/haproxy"), "haproxy not found: apt-get install haproxy")
    made = Fleet(tmp_path_factory.mktemp("fl"), sandbox_host)
    try:
        yield made
    finally:
        made.stop()


def test_a_fleet_deploys_as_one_release_and_serves_through_the_front(fleet):
    result = fleet.fab("deploy")
    assert len(fleet.currents()) == 1 and None not in fleet.currents(), fleet.currents()
    release = fleet.current("app1")
    assert f"deployed {release} to 4 hosts of fleet" in result.stdout
    with fleet.load() as load:
        pass
    assert_no_request_failed(fleet, load)
    # blobs through ZEO: an app host's blob cache, never the ZEO host's directory
    assert (fleet.roots["app2"] / "var" / "blobcache").is_dir() or (fleet.roots["app1"] / "var" / "blobcache").is_dir()
    assert not (fleet.roots["app1"] / "var" / "filestorage" / "Data.fs").exists()
    assert (fleet.roots["data"] / "var" / "filestorage" / "Data.fs").exists()


def test_the_same_content_again_is_nothing_to_do_on_every_host(fleet):
    before = fleet.currents()
    result = fleet.fab("deploy")
    assert "nothing to deploy: every host of fleet runs" in result.stdout
    assert fleet.currents() == before


def test_a_code_change_then_a_rollback_drop_no_request_and_keep_the_zeo_server(fleet):
    zeo, leaving = fleet.zeo_pid(), fleet.current("app1")
    fleet.change_code("# fleet: a code change")
    with fleet.load() as load:
        fleet.fab("deploy")
    new = fleet.currents()
    assert len(new) == 1 and leaving not in new
    assert fleet.zeo_pid() == zeo and zeo
    assert_no_request_failed(fleet, load)
    with fleet.load() as load:
        fleet.fab("rollback")
    assert fleet.currents() == {leaving}
    assert fleet.zeo_pid() == zeo
    assert_no_request_failed(fleet, load)
    releases = fleet.fab("releases").stdout
    assert all(name in releases for name in HOSTS)


def test_a_buildout_that_fails_on_one_host_switches_nothing_and_the_next_deploy_reuses_the_others(fleet):
    leaving = fleet.current("app1")
    buildout = fleet.roots["app2"] / "venv" / "bin" / "buildout"
    working = buildout.read_bytes()
    fleet.change_code("# fleet: app2 cannot build this")
    buildout.write_text("#!/bin/sh\necho 'While:\n  Installing instance1.\nError: app2 cannot build' >&2\nexit 1\n")
    try:
        with fleet.load() as load:
            result = fleet.fab("deploy", check=False)
    finally:
        buildout.write_bytes(working)
    assert result.returncode == 1, result.stdout
    said = result.stdout + result.stderr
    assert "nothing was switched on any host" in said and "app2: buildout failed" in said
    assert fleet.currents() == {leaving}
    assert_no_request_failed(fleet, load)
    built = {name: sorted(p.name for p in (fleet.roots[name] / "releases").iterdir()) for name in ("app1", "data")}
    again = fleet.fab("deploy")
    assert "is built already" in again.stdout
    release = fleet.current("app1")
    assert fleet.currents() == {release} and release in built["app1"] and release in built["data"]


def test_an_instance_that_fails_its_health_check_on_one_host_puts_every_host_back(fleet):
    leaving = fleet.current("app1")
    module = fleet.buildout / "src" / "demoapp" / "demoapp" / "__init__.py"
    working = module.read_text()
    # one code, every host: it fails where it runs from app2's root (the hosts share this machine's disk)
    fleet.change_code(f"import sys as _sys\nif _sys.argv[0].startswith({str(fleet.roots['app2']) + '/'!r}): "
                      f"raise SystemExit('app2 cannot start')")
    try:
        with fleet.load() as load:
            result = fleet.fab("deploy", check=False)
    finally:
        module.write_text(working + "\n# fleet: fixed again\n")
    assert result.returncode == 1, result.stdout
    said = result.stdout + result.stderr
    assert "app2: deploy of" in said and "every host is on the release it left" in said
    assert fleet.currents() == {leaving}
    bad = [p.name for p in (fleet.roots["app1"] / "releases").iterdir() if fleet.is_bad("app1", p.name)]
    assert len(bad) == 1 and all(fleet.is_bad(name, bad[0]) for name in HOSTS)
    assert_no_request_failed(fleet, load)


def test_an_unreachable_host_stops_the_deploy_before_any_change(fleet):
    config = fleet.configs / "fleet.cfg"
    text = config.read_text()
    dead = free_port()
    config.write_text(text.replace("[host:app2]\n", f"[host:app2]\nport = {dead}\n"))
    try:
        fleet.change_code("# fleet: never deployed")
        before = {name: sorted(p.name for p in (fleet.roots[name] / "releases").iterdir()) for name in HOSTS}
        result = fleet.fab("deploy", check=False)
    finally:
        config.write_text(text)
    assert result.returncode == 1
    assert f"cannot reach every host of fleet; nothing was changed on any host" in result.stdout + result.stderr
    assert f"app2: cannot reach" in result.stdout + result.stderr
    after = {name: sorted(p.name for p in (fleet.roots[name] / "releases").iterdir()) for name in HOSTS}
    assert after == before
    assert not any((root / ".lock").exists() for root in fleet.roots.values())


def test_status_shows_every_host_and_a_down_one_as_unreachable(fleet):
    result = fleet.fab("status")
    assert result.returncode == 0, result.stdout + result.stderr
    assert all(name in result.stdout for name in HOSTS)
    config = fleet.configs / "fleet.cfg"
    text = config.read_text()
    config.write_text(text.replace("[host:app1]\n", f"[host:app1]\nport = {free_port()}\n"))
    try:
        down = fleet.fab("status", check=False)
    finally:
        config.write_text(text)
    assert down.returncode == 1
    assert "unreachable" in down.stdout and "Traceback" not in down.stderr
    limited = fleet.fab("status", "--limit", "data")
    assert "data" in limited.stdout and "app2" not in limited.stdout


def test_ctrl_c_during_the_switch_leaves_every_host_on_one_release_and_the_next_deploy_works(fleet):
    import time
    leaving = fleet.current("app1")
    fleet.change_code("# fleet: interrupted")
    process = subprocess.Popen([FAB, "-H", "fleet", "deploy"], cwd=REPO, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True, env=fleet.env)
    seen, sent, deadline = [], False, time.monotonic() + 600
    with fleet.load() as load:
        for line in process.stdout:  # bounded: the deploy ends (killed at the deadline below)
            seen.append(line)
            if not sent and ("app1 ▸ switch and check" in line or time.monotonic() > deadline):
                process.send_signal(signal.SIGINT)
                sent = True
            if time.monotonic() > deadline + 300:
                process.kill()
        process.wait(timeout=60)
    said = "".join(seen)
    assert process.returncode == 130, said
    assert "interrupted during the switch" in said
    assert fleet.currents() == {leaving}, said
    assert_no_request_failed(fleet, load)
    assert not any((root / ".lock").exists() for root in fleet.roots.values())
    fleet.fab("deploy")
    assert len(fleet.currents()) == 1 and fleet.currents() != {leaving}


def test_backup_and_restore_run_on_the_data_host_with_the_clients_stopped_behind_the_maintenance_page(fleet):
    before = sorted(o["title"] for o in fleet.objects())
    result = fleet.fab("backup", "--full")
    assert "verified" in result.stdout
    assert any((fleet.roots["data"] / "backups").rglob("*.fsz")) or any((fleet.roots["data"] / "backups").rglob("*.fs"))
    assert not (fleet.roots["app1"] / "backups").exists()
    with fleet.load():
        pass  # objects written after the backup: the restore takes them away
    restored = fleet.fab("restore", "--no-prompt")
    said = restored.stdout
    assert "front maintenance page on" in said and "front maintenance page off" in said
    assert sorted(o["title"] for o in fleet.objects()) == before
    assert len(fleet.currents()) == 1


def test_logs_and_restart_go_host_by_host_and_limit_is_refused_where_it_would_split_the_release(fleet):
    logs = fleet.fab("logs", "--lines", "3").stdout
    assert "app1 == instance1" in logs and "app2 == instance2" in logs and "data == zeoserver" in logs
    only = fleet.fab("logs", "--lines", "3", "--limit", "app2").stdout
    assert "app2 == instance1" in only and "app1" not in only
    zeo = fleet.zeo_pid()
    with fleet.load() as load:
        restarted = fleet.fab("restart")
    assert restarted.stdout.count(": back in the front") == 4  # two instances on each app host, one by one
    assert fleet.zeo_pid() == zeo
    assert_no_request_failed(fleet, load)
    refused = fleet.fab("deploy", "--limit", "app1", check=False)
    assert refused.returncode == 2 and "refused: deploy moves every host of fleet to one release" in refused.stderr
