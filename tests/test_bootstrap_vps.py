"""Integration: a fresh Debian VPS (booted with systemd) made fit to live on by ``bootstrap-host``.

From this machine, the host's neighbour on its veth pair: after bootstrap-host, SSH still
gets in and the front's ports answer, while a server listening on another port of the
host (reachable before) is cut off; the rules are back after a reboot; a ruleset that
would shut SSH out is never loaded. Also: the venv made by bootstrap is what the first
deploy uses, security updates are on, and the swap file is made (this kernel refuses
``swapon`` inside the container: bootstrap says so and goes on). A second bootstrap
changes nothing. The tests run in order on one host.
"""
from __future__ import annotations

import http.client
import socket
import ssl
import time

import pytest

import hosts
from support import require

from fabfile.host import firewall
from fabfile import onhost

DOMAIN = "www.example.test"
OTHER_PORT = 8000


@pytest.fixture(scope="module")
def host(tmp_path_factory):
    """A fresh host booted with systemd-nspawn, removed afterwards."""
    require(not hosts.problems(booted=True), "; ".join(hosts.problems(booted=True)))
    host = hosts.create(tmp_path_factory.mktemp("vps-host"), booted=True)
    yield host
    hosts.destroy(host)


@pytest.fixture(scope="module")
def site(host, tmp_path_factory):
    return hosts.host_site(host, tmp_path_factory.mktemp("vps-site"),
                           extra=f"[front]\ndomains = {DOMAIN}\ntls = internal\nsite_path = /\n")


@pytest.fixture(scope="module")
def other_server(host):
    """``python3 -m http.server`` on every address of the host, stopped by its pid afterwards."""
    pid = host.run("sh", "-c", f"python3 -m http.server {OTHER_PORT} >/dev/null 2>&1 & echo $!").stdout.strip()
    deadline = time.monotonic() + 20
    while not reachable(host.address, OTHER_PORT) and time.monotonic() < deadline:
        time.sleep(0.2)
    yield int(pid)
    host.run("kill", pid, check=False)


def reachable(address: str, port: int, timeout: float = 3) -> bool:
    """Whether a TCP connection from this machine gets in (a drop times out, a reject is refused)."""
    try:
        socket.create_connection((address, port), timeout=timeout).close()
        return True
    except OSError:
        return False


def front_get(host, tls=True):
    context = ssl.create_default_context()
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE  # tls = internal
    connection = (http.client.HTTPSConnection(host.address, 443, timeout=10, context=context) if tls
                  else http.client.HTTPConnection(host.address, 80, timeout=10))
    try:
        connection.request("GET", "/", headers={"Host": DOMAIN})
        return connection.getresponse().status
    finally:
        connection.close()


def deploy_logs_in(site) -> bool:
    """Whether ``fab status`` got in as the deploy user with its key (whatever it found)."""
    return "current release:" in site.fab("status", check=False).stdout


def nft_table(host) -> str:
    return host.run("nft", "list", "table", "inet", firewall.TABLE, check=False).stdout


def test_the_dry_run_shows_each_part_and_changes_nothing(site, host):
    result = site.fab("--dry", "bootstrap-host", password=host.root_password)
    for line in ("[dry] turn on the firewall: TCP 22, 80, 443 in, everything else dropped",
                 "[dry] install security updates daily (unattended-upgrades",
                 "[dry] make /srv/site/venv with pip==", "[dry] upload zc_buildout-"):
        assert line in result.stdout, line
    assert "no swap file needed" in result.stdout  # this machine's memory, as the container sees it
    assert nft_table(host) == "" and not host.path("/srv/site").exists()


def test_before_bootstrap_another_port_of_the_host_is_reachable(site, host, other_server):
    assert reachable(host.address, OTHER_PORT)


def test_bootstrap_turns_on_the_firewall_updates_swap_and_makes_the_venv(site, host, other_server):
    site.set_host_option("swap", "64M")  # auto makes none here: the container sees this machine's memory
    result = site.fab("bootstrap-host", password=host.root_password)
    assert "turn on the firewall: TCP 22, 80, 443 in" in result.stdout
    assert "check that deploy still logs in with the key" in result.stdout
    assert "make a swap file /swapfile of 64 MiB (no swap; in /etc/fstab)" in result.stdout
    assert "swapon was refused" in result.stdout  # nspawn's seccomp filter: the container may not
    assert "is ready" in result.stdout
    assert firewall.marker_line(host.path(firewall.RULES_PATH).read_text()) in nft_table(host)


def test_ssh_still_gets_in_and_another_port_is_cut_off(site, host, other_server):
    assert deploy_logs_in(site)
    assert hosts.password_login_works(host, "root", host.root_password)
    assert not reachable(host.address, OTHER_PORT)
    assert host.http_get(f"http://127.0.0.1:{OTHER_PORT}/")  # it still listens: loopback is let in


def test_the_first_deploy_uses_the_venv_bootstrap_made_and_the_front_ports_answer(site, host):
    made = host.run("stat", "-c", "%i %Y", "/srv/site/venv/bin/python").stdout
    result = site.fab("deploy")
    assert "ok <root>/venv as pinned" in result.stdout
    assert host.run("stat", "-c", "%i %Y", "/srv/site/venv/bin/python").stdout == made
    assert front_get(host) == 200 and front_get(host, tls=False) == 301


def test_security_updates_run_daily(site, host):
    assert host.run("dpkg-query", "-W", "-f", "${db:Status-Status}", "unattended-upgrades").stdout == "installed"
    periodic = host.run("apt-config", "dump", "APT::Periodic").stdout
    assert 'APT::Periodic::Unattended-Upgrade "1";' in periodic
    assert host.run("systemctl", "is-enabled", "apt-daily-upgrade.timer").stdout.strip() == "enabled"


def test_the_swap_file_is_made_and_listed_in_fstab_but_not_turned_on_here(site, host):
    assert host.run("stat", "-c", "%a %s", "/swapfile").stdout.split() == ["600", str(64 * 2**20)]
    assert host.path("/swapfile").read_bytes()[4086:4096] == b"SWAPSPACE2"  # mkswap's signature
    assert "/swapfile none swap sw 0 0" in host.path("/etc/fstab").read_text().splitlines()
    assert "/swapfile" not in open("/proc/swaps").read()  # the kernel is this machine's


def test_a_second_bootstrap_changes_nothing(site, host):
    result = site.fab("bootstrap-host", password=host.root_password)
    assert "nothing to change" in result.stdout, result.stdout
    for line in ("ok firewall: TCP 22, 80, 443 in", f"ok {firewall.UNIT} loads the firewall at boot",
                 "ok security updates installed daily", "ok swap file /swapfile (64 MiB) in /etc/fstab, not on",
                 "ok /srv/site/venv has pip=="):
        assert line in result.stdout, line


def test_a_ruleset_that_would_shut_ssh_out_is_never_loaded(site, host):
    loaded = nft_table(host)
    candidate = firewall.RULES_PATH + ".candidate"
    host.path(candidate).write_text(firewall.ruleset([80, 443]))
    session = f"{host.gateway} 50000 {host.address} 22"  # as sshd sets it for a session on port 22
    result = host.run("env", f"SSH_CONNECTION={session}", "python3", "-c", onhost.source("firewall"), candidate,
                      firewall.RULES_PATH, "", check=False)
    assert result.returncode == 3 and "would shut SSH out (port 22)" in result.stderr
    assert nft_table(host) == loaded and not host.path(candidate).exists()
    assert deploy_logs_in(site)


def test_the_firewall_is_back_after_a_reboot(site, host):
    hosts.reboot(host)
    deadline = time.monotonic() + 30
    while firewall.TABLE not in nft_table(host) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert firewall.marker_line(host.path(firewall.RULES_PATH).read_text()) in nft_table(host)
    assert host.run("systemctl", "is-active", firewall.UNIT).stdout.strip() == "active"
    pid = host.run("sh", "-c", f"python3 -m http.server {OTHER_PORT} >/dev/null 2>&1 & echo $!").stdout.strip()
    try:
        deadline = time.monotonic() + 20
        while "LISTEN" not in host.run("ss", "-Htln", f"sport = :{OTHER_PORT}", check=False).stdout \
                and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not reachable(host.address, OTHER_PORT)
    finally:
        host.run("kill", pid, check=False)
    assert deploy_logs_in(site)
