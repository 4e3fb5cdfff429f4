"""Integration: test hosts on one bridge reach each other and this machine, and leave nothing behind.

The rig for fleets (a front host, a data host, app hosts): three chroot hosts made
at once on one bridge. The last tests destroy them and look for what could remain:
namespaces, veths, the bridge, mounts, processes.
"""
from __future__ import annotations

import subprocess
import time
import urllib.error
import urllib.request

import paramiko
import pytest

import hosts
from support import require

PORT = 8000
FAST_HOST_KEYS = ("ed25519",)  # an RSA host key takes a second of CPU each and proves nothing here


@pytest.fixture(scope="module")
def bridge():
    """A bridge of our own, removed afterwards with whatever hosts are still on it."""
    require(not hosts.problems(), "; ".join(hosts.problems()))
    bridge = hosts.Bridge.create()
    yield bridge
    bridge.destroy()


@pytest.fixture(scope="module")
def fleet(bridge, tmp_path_factory):
    return hosts.create_many(tmp_path_factory.mktemp("fleet"), 3, bridge=bridge, host_keys=FAST_HOST_KEYS)


def namespaces_on(subnet: str) -> list[str]:
    """The network namespaces with an address in ``subnet`` (its first three bytes)."""
    names = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout.split()
    found = []
    for name in names:
        if name.startswith("fabhost"):
            addresses = subprocess.run(["ip", "-n", name, "-o", "-4", "addr"], capture_output=True, text=True).stdout
            if f" {subnet}." in addresses:
                found.append(name)
    return found


def links() -> str:
    return subprocess.run(["ip", "-o", "link"], capture_output=True, text=True, check=True).stdout


def ports_of(bridge: hosts.Bridge) -> str:
    return subprocess.run(["ip", "-o", "link", "show", "master", bridge.name], capture_output=True, text=True,
                          check=True).stdout


def mounts_under(path) -> list[str]:
    with open("/proc/mounts") as mounts:
        return [line for line in mounts if str(path) in line]


def serve_own_name(host: hosts.TestHost) -> None:
    """Start ``python3 -m http.server`` on the host's bridge address, serving a file with its name."""
    host.path("/srv/www").mkdir(parents=True, exist_ok=True)
    host.path("/srv/www/name").write_text(host.name)
    host.run("sh", "-c", 'python3 -m http.server --bind "$1" --directory /srv/www "$2" '
             '</dev/null >/dev/null 2>&1 &', "sh", host.address, str(PORT))
    for _ in range(100):  # bounded: 10 s
        try:
            with urllib.request.urlopen(f"http://{host.address}:{PORT}/name", timeout=2) as answer:
                assert answer.read().decode() == host.name
                return
        except OSError:
            time.sleep(0.1)
    raise AssertionError(f"http.server on {host.name} did not answer")


def test_each_host_reaches_the_others_directly_by_tcp(fleet):
    for host in fleet:
        serve_own_name(host)
    for client in fleet:
        for server in fleet:
            if server is not client:
                assert client.http_get(f"http://{server.address}:{PORT}/name") == server.name
                route = client.run("ip", "route", "get", server.address).stdout
                assert "dev eth0" in route and " via " not in route  # on the same link, not routed


def test_this_machine_reaches_each_host_by_ssh_with_roots_password(fleet, bridge):
    for host in fleet:
        client = paramiko.SSHClient()
        client.set_missing_host_key_policy(paramiko.AutoAddPolicy())
        try:
            client.connect(host.address, username="root", password=host.root_password, look_for_keys=False,
                           allow_agent=False, timeout=10, banner_timeout=10, auth_timeout=10)
            _, stdout, _ = client.exec_command("hostname; ip -4 route show default; cat /etc/hosts", timeout=10)
            name, route, *etc_hosts = stdout.read().decode().splitlines()
        finally:
            client.close()
        assert name == host.name
        assert route.startswith(f"default via {bridge.address} dev eth0")
        assert f"{host.address} {host.name}" in etc_hosts


def test_each_host_reaches_the_apt_proxy_on_the_bridge_address(fleet, bridge):
    # the proxy refuses what is not a Debian mirror: its 403 shows it is the one answering
    script = ("import sys, urllib.request, urllib.error\n"
              "try: urllib.request.urlopen(sys.argv[1], timeout=10)\n"
              "except urllib.error.HTTPError as error: print(error.code)\n")
    for host in fleet:
        assert host.run("python3", "-c", script, f"http://{bridge.address}:{hosts.PROXY_PORT}/").stdout == "403\n"


def test_destroy_leaves_no_namespace_veth_bridge_mount_or_process(fleet, bridge, tmp_path_factory):
    processes = [pid for host in fleet for pid in host.processes()]
    veths = [f"fh{host.index}o" for host in fleet]
    assert len(namespaces_on(bridge.subnet)) == 3 and len(processes) >= 3 * 3

    bridge.destroy()

    assert namespaces_on(bridge.subnet) == []
    assert not any(f" {name}@" in links() or f" {name}:" in links() for name in [*veths, bridge.name])
    assert not any(hosts.running(pid) for pid in processes)
    assert mounts_under(tmp_path_factory.getbasetemp()) == []
    assert not any(host.workdir.exists() for host in fleet)
    with pytest.raises(urllib.error.URLError):  # the apt proxy is closed
        urllib.request.urlopen(f"http://{bridge.address}:{hosts.PROXY_PORT}/", timeout=2)


def test_a_host_that_fails_half_way_leaves_nothing_behind_and_takes_the_others_down(tmp_path):
    require(not hosts.problems(), "; ".join(hosts.problems()))
    # the second host's disk holds an sshd option sshd refuses: it fails after its namespace,
    # veth and overlay are made
    broken = tmp_path / "host-1" / "upper" / "etc" / "ssh" / "sshd_config.d"
    broken.mkdir(parents=True)
    (broken / "broken.conf").write_text("NoSuchOption yes\n")
    with hosts.Bridge.create() as bridge:
        with pytest.raises(hosts.HostError, match=r"fabhost\d+ exited"):
            hosts.create_many(tmp_path, 2, bridge=bridge, host_keys=FAST_HOST_KEYS)
        assert bridge.hosts == []
        assert ports_of(bridge) == ""
        assert namespaces_on(bridge.subnet) == []
        assert mounts_under(tmp_path) == []
        assert list(tmp_path.iterdir()) == []
    assert f" {bridge.name}:" not in links()
