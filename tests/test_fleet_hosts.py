"""Integration: a fleet on four test hosts of their own (issue 9): a front host, a data host and two app
hosts, each a fresh Debian booted with systemd in its own network namespace, all on one bridge (so they
reach each other, and this machine reaches them at their addresses), bootstrapped by the tool with root's
password and the defaults: the front is HAProxy under systemd, as bootstrap-host installs it.
Each host has a private address too, in a /24 of its own on the same bridge, where this machine has
none: the fleet's hosts reach each other there (``private_address``), as on a provider's private
network; SSH and the load come to the public ``address``.

The same fleet as ``tests/test_fleet.py`` (``tests/fleets.py``), but every host is a host: its own sshd,
disk, processes and firewall. bootstrap-host loads an nftables table on each: ZEO listens on the data
host's private address, and only the app hosts reach it. Every switch runs under a bounded load sent from
this machine to the front host's address; each such test counts failed requests (none allowed) and finds
every accepted POST. The tests run in order on one fleet (its first build on four hosts is the cost).
"""
from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import subprocess
import time

import pytest

import fleets
import hosts
from fleets import DOMAIN
from sandbox.load import Load
from sites import BUILD_JUNK, REPO
from support import require

from fabfile.host import firewall

ROOT = "/srv/site"
PORTS = {"zeo": 8100, "instance1": 8081, "instance2": 8082, "front": 8080, "admin": 9999}
PRIVATE_SUBNET = "10.233"  # .N.slot: the bridge's index, the host's last byte on the bridge
FAST_HOST_KEYS = ("ed25519",)  # an RSA host key takes a second of CPU each and proves nothing here
# seconds: the first build on four hosts, on a machine the other tests share
SLOW = 1800

# prints "open", or the name of what stopped the connection (a firewall that drops: timeout)
CONNECT = ("import socket, sys\n"
           "try:\n"
           "    socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=3).close()\n"
           "    print('open')\n"
           "except OSError as error:\n"
           "    print(type(error).__name__)\n")


class Rig:
    """Four test hosts on a bridge, the fleet's files here, and ``fab -H fleet``."""

    def __init__(self, workdir, members: dict[str, hosts.TestHost], private: dict[str, str],
                 manager: str = "supervisor", tls: bool = False):
        self.workdir, self.hosts, self.private, self.manager, self.tls = workdir, members, private, manager, tls
        self.buildout, self.configs = workdir / "buildout", workdir / "hostconfigs"
        shutil.copytree(REPO / "example", self.buildout, ignore=BUILD_JUNK)
        self.configs.mkdir()
        key = workdir / "deploy_ed25519"
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "fleet deployer", "-f", str(key)],
                       check=True)
        # one root password for the fleet, as one prompt gives it to every host
        self.root_password = secrets.token_urlsafe(12)
        for host in members.values():
            host.run("sh", "-c", 'printf "root:%s\\n" "$1" | chpasswd', "sh", self.root_password)
            host.root_password = self.root_password
        own = {name: f"address = {host.address}\nprivate_address = {private[name]}\n" for name, host in members.items()}
        (self.configs / "fleet.cfg").write_text(fleets.config_text(
            host=f"user = deploy\nidentity = {key}\nroot = {ROOT}\nfirewall = true\n",
            members=own, buildout=self.buildout, ports=PORTS, bind="*", zeo_role=f"port = {PORTS['zeo']}\n",
            # the front as bootstrap-host installs it: HAProxy under systemd (tls: its own certificate, HTTPS)
            health_timeout=60, front="tls = internal\n" if tls else "",
            services=f"manager = {manager}\n"))
        self.env = {**os.environ, "DEPLOY_HOSTCONFIGS": str(self.configs)}
        self.bootstrapped: subprocess.CompletedProcess | None = None
        self.deployed: subprocess.CompletedProcess | None = None

    def fab(self, *args: str, check: bool = True, password: str | None = None) -> subprocess.CompletedProcess:
        return fleets.fab(self.env, *args, check=check, password=password, timeout=SLOW)

    def bootstrap(self) -> subprocess.CompletedProcess:
        """``bootstrap-host`` once for the module; a failure fails each test that needs it, at once."""
        if self.bootstrapped is None:
            self.bootstrapped = self.fab("bootstrap-host", password=self.root_password, check=False)
        if self.bootstrapped.returncode:
            pytest.fail(f"bootstrap-host exited {self.bootstrapped.returncode}:\n{self.bootstrapped.stdout}\n"
                        f"{self.bootstrapped.stderr}")
        return self.bootstrapped

    def first_deploy(self) -> subprocess.CompletedProcess:
        """The first ``deploy`` once for the module, after bootstrap-host."""
        self.bootstrap()
        if self.deployed is None:
            self.deployed = self.fab("deploy", check=False)
        if self.deployed.returncode:
            pytest.fail(f"the first deploy exited {self.deployed.returncode}:\n{self.deployed.stdout}\n"
                        f"{self.deployed.stderr}")
        return self.deployed

    def current(self, name: str) -> str | None:
        link = self.hosts[name].path(f"{ROOT}/current")
        return os.readlink(link).split("/")[-1] if link.is_symlink() else None

    def currents(self) -> set:
        return {self.current(name) for name in self.hosts}

    def releases(self) -> dict[str, list[str]]:
        """Each host's release directories."""
        return {name: sorted(p.name for p in host.path(f"{ROOT}/releases").iterdir())
                for name, host in self.hosts.items()}

    def zeo_pid(self) -> str:
        if self.manager == "systemd":
            return self.hosts["data"].run("systemctl", "show", "-p", "MainPID", "--value",
                                          "srv-site-zeoserver.service").stdout.strip()
        return self.hosts["data"].run(f"{ROOT}/venv/bin/supervisorctl", "-c", f"{ROOT}/current/etc/supervisord.conf",
                                      "pid", "zeoserver", user="deploy").stdout.strip()

    def objects(self) -> list[dict]:
        """What is stored, read on app1 from its own instance (the firewall lets only the front in from outside)."""
        app1 = self.hosts["app1"]
        return json.loads(app1.http_get(f"http://{self.private['app1']}:{PORTS['instance1']}/objects.json"))

    def load(self) -> Load:
        """The load from this machine, on the bridge, to the front host's address (over HTTPS with ``tls``)."""
        return Load(443 if self.tls else PORTS["front"], DOMAIN, address=self.hosts["front"].address, tls=self.tls,
                    max_seconds=SLOW)

    def connects(self, source: str, target: str, port: int, private: bool = True) -> str:
        """From inside host ``source``: "open", or why a TCP connection to host ``target`` (its private
        address, or its public one) failed."""
        address = self.private[target] if private else self.hosts[target].address
        return self.hosts[source].run("python3", "-c", CONNECT, address, str(port), timeout=30).stdout.strip()


@pytest.fixture(scope="module")
def rig(tmp_path_factory):
    """Four hosts booted with systemd on a bridge of their own, the programs under supervisor."""
    yield from made_rig(tmp_path_factory, "supervisor")


def made_rig(tmp_path_factory, manager: str, tls: bool = False):
    """Four hosts booted with systemd on a bridge of their own, the site's programs under ``manager``, the
    front on HTTPS with ``tls``; destroyed (their processes with them) afterwards."""
    require(not hosts.problems(booted=True), "; ".join(hosts.problems(booted=True)))
    workdir = tmp_path_factory.mktemp(f"fleet-hosts-{manager}")
    bridge = hosts.Bridge.create()
    try:
        made = hosts.create_many(workdir / "hosts", len(fleets.ROLES), booted=True, bridge=bridge,
                                 host_keys=FAST_HOST_KEYS)
        private = {}
        for name, host in zip(fleets.ROLES, made):
            private[name] = f"{PRIVATE_SUBNET}.{bridge.index}.{host.slot}"
            host.run("ip", "addr", "add", f"{private[name]}/24", "dev", "eth0")
        yield Rig(workdir, dict(zip(fleets.ROLES, made)), private, manager, tls)
    finally:
        bridge.destroy()


def nft_table(host: hosts.TestHost) -> str:
    return host.run("nft", "list", "table", "inet", firewall.TABLE, check=False).stdout


def test_bootstrap_host_readies_every_host_at_once_each_with_its_firewall(rig):
    result = rig.bootstrap()
    assert "every host of fleet is ready: fab -H fleet deploy" in result.stdout
    for name, host in rig.hosts.items():
        table = nft_table(host)
        assert firewall.marker_line(host.path(firewall.RULES_PATH).read_text()) in table, name
        # on the front host, deploy may use HAProxy's admin socket (the front runs under systemd, as haproxy)
        groups = ["deploy", "haproxy"] if name == "front" else ["deploy"]
        assert host.run("id", "-nG", "deploy").stdout.split() == groups, name
    apps = {rig.private["app1"], rig.private["app2"]}
    zeo_rule = next(line for line in nft_table(rig.hosts["data"]).splitlines() if f"dport {PORTS['zeo']}" in line)
    assert set(zeo_rule.split("{")[1].split("}")[0].replace(",", " ").split()) == apps, zeo_rule
    assert f"dport {PORTS['zeo']}" not in nft_table(rig.hosts["app1"])
    # the front runs on the front host only: the app hosts get neither HAProxy nor its open ports
    assert rig.hosts["front"].run("dpkg-query", "-W", "haproxy", check=False).returncode == 0
    for name in ("data", "app1", "app2"):
        host = rig.hosts[name]
        assert host.run("dpkg-query", "-W", "haproxy", check=False).returncode != 0, name
        assert firewall.accepted_ports(host.path(firewall.RULES_PATH).read_text()) == {22}, name


def test_a_first_deploy_serves_through_the_front_host(rig):
    result = rig.first_deploy()
    release = rig.current("app1")
    assert rig.currents() == {release} and release, rig.currents()
    assert f"deployed {release} to 4 hosts of fleet" in result.stdout
    with rig.load() as load:
        pass
    fleets.assert_no_request_failed(load, rig.objects())
    # the data lives on the data host; the app hosts get blobs through ZEO, into a cache of their own
    assert rig.hosts["data"].path(f"{ROOT}/var/filestorage/Data.fs").exists()
    for name in ("front", "app1", "app2"):
        assert not rig.hosts[name].path(f"{ROOT}/var/filestorage/Data.fs").exists(), name
    assert any(rig.hosts[name].path(f"{ROOT}/var/blobcache").is_dir() for name in ("app1", "app2"))
    status = rig.fab("status")
    assert all(name in status.stdout for name in rig.hosts) and "different releases" not in status.stdout


def test_a_second_bootstrap_host_changes_nothing_on_any_host(rig):
    rig.first_deploy()
    result = rig.fab("bootstrap-host", password=rig.root_password)
    for host in rig.hosts.values():
        assert f"nothing to change on {host.address}" in result.stdout, result.stdout
    assert rig.fab("status").returncode == 0


def test_zeo_listens_on_the_data_hosts_private_address_and_only_the_app_hosts_reach_it(rig):
    """And the front's runtime API only from the app hosts, an app host's instances only from the front."""
    rig.first_deploy()
    data = rig.hosts["data"]
    listening = data.run("ss", "-Hltn", f"sport = :{PORTS['zeo']}").stdout.split()
    assert [w for w in listening if w.endswith(f":{PORTS['zeo']}")] == [f"{rig.private['data']}:{PORTS['zeo']}"]
    assert rig.connects("app1", "data", PORTS["zeo"]) == "open"
    assert rig.connects("app2", "data", PORTS["zeo"]) == "open"
    # the front host is on the same private network, where ZEO listens: the firewall drops it (bounded: 3 s)
    assert rig.connects("front", "data", PORTS["zeo"]) == "TimeoutError"
    # on its public address nothing listens (seen from the data host itself, past its firewall), and this
    # machine, with no private address, gets nowhere
    assert rig.connects("data", "data", PORTS["zeo"], private=False) == "ConnectionRefusedError"
    started = time.monotonic()
    with pytest.raises(OSError):
        socket.create_connection((data.address, PORTS["zeo"]), timeout=3).close()
    assert time.monotonic() - started < 10
    # the front's runtime API (it takes servers out): on the front host's private address, for the app hosts
    listening = rig.hosts["front"].run("ss", "-Hltn", f"sport = :{PORTS['admin']}").stdout.split()
    admin = f"{rig.private['front']}:{PORTS['admin']}"
    assert [w for w in listening if w.endswith(f":{PORTS['admin']}")] == [admin]
    assert rig.connects("app2", "front", PORTS["admin"]) == "open"
    assert rig.connects("data", "front", PORTS["admin"]) == "TimeoutError"
    # an app host's instances: the front reaches them, another app host does not
    assert rig.connects("front", "app1", PORTS["instance1"]) == "open"
    assert rig.connects("app2", "app1", PORTS["instance1"]) == "TimeoutError"


def test_the_same_content_again_is_nothing_to_do_on_every_host(rig):
    rig.first_deploy()
    before, releases = rig.currents(), rig.releases()
    result = rig.fab("deploy")
    assert "nothing to deploy: every host of fleet runs" in result.stdout
    assert rig.currents() == before and rig.releases() == releases


def test_an_app_host_locked_at_the_start_refuses_the_deploy_before_any_change(rig):
    rig.first_deploy()
    app2, lock = rig.hosts["app2"], f"{ROOT}/.lock"
    before, releases = rig.currents(), rig.releases()
    fleets.change_code(rig.buildout, "# fleet on hosts: a change that waits for app2's lock")
    # held as a deploy holds it: the lock directory, the holder, a live keeper process on app2
    keeper = app2.run("sh", "-c", f'mkdir {lock} && {{ sleep 600 </dev/null >/dev/null 2>&1 & echo $! > {lock}/pid; }} '
                      f'&& echo "someone@elsewhere since now for deploy" > {lock}/holder && cat {lock}/pid',
                      user="deploy").stdout.strip()
    try:
        result = rig.fab("deploy", check=False)
        said = result.stdout + result.stderr
        assert result.returncode == 1, said
        assert "fleet/app2 is locked by someone@elsewhere since now for deploy" in said
        assert rig.releases() == releases and rig.currents() == before
        assert not any(rig.hosts[name].path(lock).exists() for name in ("front", "data", "app1"))
        assert app2.path(f"{lock}/pid").read_text().strip() == keeper  # app2's holder keeps its lock
    finally:
        app2.run("kill", keeper, check=False)
        app2.run("rm", "-rf", lock)


def test_a_code_change_then_a_rollback_under_load_drop_no_request_and_keep_the_zeo_server(rig):
    rig.first_deploy()
    zeo, leaving = rig.zeo_pid(), rig.current("app1")
    assert zeo.isdigit(), zeo
    fleets.change_code(rig.buildout, "# fleet on hosts: a code change")
    with rig.load() as load:
        rig.fab("deploy")
    new = rig.currents()
    assert len(new) == 1 and leaving not in new and None not in new, new
    assert rig.zeo_pid() == zeo
    fleets.assert_no_request_failed(load, rig.objects())
    with rig.load() as load:
        rig.fab("rollback")
    assert rig.currents() == {leaving}
    assert rig.zeo_pid() == zeo
    fleets.assert_no_request_failed(load, rig.objects())


def test_a_foreign_process_on_an_app_hosts_instance_port_stops_the_deploy_with_every_host_on_its_release(rig):
    """instance1 stopped on app2 and another program listening on its port: the change deploy is refused
    before anything changes on any host, the holder named; once it is gone, a plain deploy converges."""
    rig.first_deploy()
    app2, port = rig.hosts["app2"], PORTS["instance1"]
    before, releases = rig.currents(), rig.releases()
    app2.run(f"{ROOT}/venv/bin/supervisorctl", "-c", f"{ROOT}/current/etc/supervisord.conf", "stop", "instance1",
             user="deploy")
    holder = app2.run("sh", "-c", f"python3 -m http.server --bind {rig.private['app2']} {port} </dev/null "
                      f">/dev/null 2>&1 & echo $!").stdout.strip()
    try:
        deadline = time.monotonic() + 30
        while f":{port}" not in app2.run("ss", "-Hltn", f"sport = :{port}").stdout:
            assert time.monotonic() < deadline, "http.server never listened"
            time.sleep(0.2)
        fleets.change_code(rig.buildout, "# fleet on hosts: a change a foreign process on app2 stops")
        result = rig.fab("deploy", check=False)
        said = result.stdout + result.stderr
        assert result.returncode == 1, said
        assert "another process holds a port of the site; nothing was changed on any host" in said, said
        # the holder named: its pid and command where the deploy login may read them, else its uid (a
        # root process's open sockets are not readable by another user)
        assert f"app2: port {port}" in said, said
        assert f"pid {holder}: python3 -m http.server" in said or "held by a process of uid 0" in said, said
        assert rig.currents() == before and rig.releases() == releases
        assert not any(rig.hosts[name].path(f"{ROOT}/.lock").exists() for name in rig.hosts)
    finally:
        app2.run("kill", holder, check=False)
    deadline = time.monotonic() + 30
    while f":{port}" in app2.run("ss", "-Hltn", f"sport = :{port}").stdout and time.monotonic() < deadline:
        time.sleep(0.2)
    with rig.load() as load:
        result = rig.fab("deploy")  # no step by hand: instance1 back on app2, the change deployed
    after = rig.currents()
    assert len(after) == 1 and after != before, (after, result.stdout)
    fleets.assert_no_request_failed(load, rig.objects())
    assert rig.fab("status").returncode == 0


def test_backup_on_the_data_host_and_restore_with_the_app_hosts_stopped_behind_the_maintenance_page(rig):
    rig.first_deploy()
    before = sorted(o["title"] for o in rig.objects())
    assert "verified" in rig.fab("backup", "--full").stdout
    assert any(rig.hosts["data"].path(f"{ROOT}/backups").rglob("*.fs*"))
    assert not any(rig.hosts["app1"].path(f"{ROOT}/backups").rglob("*.fs*"))
    with rig.load():
        pass  # objects written after the backup: the restore takes them away
    said = rig.fab("restore", "--no-prompt").stdout
    assert "front maintenance page on" in said and "front maintenance page off" in said
    assert sorted(o["title"] for o in rig.objects()) == before
    assert len(rig.currents()) == 1
