"""Integration: a fresh Debian host booted with systemd becomes a serving site, and stays one.

root's password once: ``bootstrap-host`` with ``[services] manager = systemd`` and a
separate ``app_user``; then ``deploy``. The programs run as systemd units, survive a
reboot, and the deploy user may drive exactly those units. The tests run in order.
"""
from __future__ import annotations

import http.client
import json
import ssl
from collections import Counter

import pytest

import hosts
from sandbox.load import Load
from support import require

DOMAIN = "www.example.test"
UNITS = ["srv-site-zeoserver.service", "srv-site-instance1.service", "srv-site-instance2.service"]


@pytest.fixture(scope="module")
def host(tmp_path_factory):
    """A fresh host booted with systemd-nspawn, removed afterwards."""
    require(not hosts.problems(booted=True), "; ".join(hosts.problems(booted=True)))
    host = hosts.create(tmp_path_factory.mktemp("booted-host"), booted=True)
    yield host
    hosts.destroy(host)


@pytest.fixture(scope="module")
def site(host, tmp_path_factory):
    return hosts.host_site(host, tmp_path_factory.mktemp("booted-site"), manager="systemd", app_user="plone",
                           extra=f"[front]\ndomains = {DOMAIN}\ntls = internal\nsite_path = /\n"
                                 # backups as a separate app_user need its rights: not here yet
                                 "[backup]\nbefore_deploy = false\n")


def test_bootstrap_writes_one_enabled_unit_per_program_and_the_sudo_rule(site, host):
    site.fab("bootstrap-host", password=host.root_password)
    for unit in UNITS:
        assert host.run("systemctl", "is-enabled", unit).stdout.strip() == "enabled"
    unit = host.path("/etc/systemd/system/srv-site-instance1.service").read_text()
    assert "User=plone" in unit and "WorkingDirectory=/srv/site/current" in unit and "Restart=on-failure" in unit
    assert host.run("id", "-nG", "plone").stdout.split() == ["plone", "deploy"]


def test_deploy_serves_both_instances_from_units(site, host):
    site.fab("deploy")
    assert site.get(8081, "version") == site.get(8082, "version")
    for unit in UNITS:
        assert host.run("systemctl", "is-active", unit).stdout.strip() == "active"
    owners = set(host.run("sh", "-c", "ps -eo user=,args= | grep '[/]srv/site' | cut -d' ' -f1").stdout.split())
    assert owners == {"plone"}


def front_get(host, path="/", tls=True):
    context = ssl.create_default_context()
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE  # tls = internal
    connection = (http.client.HTTPSConnection(host.address, 443, timeout=10, context=context) if tls
                  else http.client.HTTPConnection(host.address, 80, timeout=10))
    try:
        connection.request("GET", path, headers={"Host": DOMAIN})
        response = connection.getresponse()
        return response.status, dict(response.getheaders()), response.read().decode()
    finally:
        connection.close()


def test_bootstrap_installs_the_front_and_it_serves_https_with_public_urls(site, host):
    assert host.run("systemctl", "is-active", "haproxy.service").stdout.strip() == "active"
    status, _, page = front_get(host)
    assert status == 200 and f'action="https://{DOMAIN}/add"' in page
    status, headers, _ = front_get(host, tls=False)
    assert status == 301 and headers["location"] == f"https://{DOMAIN}/"


def test_a_code_change_through_the_front_drops_no_request(site, host):
    module = site.workdir / "buildout" / "src" / "demoapp" / "demoapp" / "__init__.py"
    module.write_text(module.read_text() + "\n# a change under load\n")
    with Load(443, DOMAIN, address=host.address) as load:
        result = site.fab("deploy")
    assert "zeoserver: unchanged, kept running" in result.stdout
    assert load.total > 20 and load.failures == [], f"{len(load.failures)} of {load.total} failed: {load.failures[:5]}"
    assert_stored_once(host, load)


def assert_stored_once(host, load: Load) -> None:
    titles = Counter(o["title"] for o in json.loads(front_get(host, "/objects.json")[2]))
    assert all(titles[t] == 1 for t in load.stored)


def test_a_rollback_and_a_restart_through_the_front_drop_no_request(site, host):
    for args in (("rollback",), ("restart",)):
        with Load(443, DOMAIN, address=host.address) as load:
            site.fab(*args)
        assert load.total > 20 and load.failures == [], f"{args}: {len(load.failures)} of {load.total} failed"
        assert_stored_once(host, load)


def test_a_deploy_whose_health_check_fails_goes_back_without_a_failed_request(site, host):
    module = site.workdir / "buildout" / "src" / "demoapp" / "demoapp" / "__init__.py"
    before = host.run("readlink", "/srv/site/current").stdout.strip()
    module.write_text(module.read_text() + "\nimport demoapp.app as _app\n"
                      "_app.DemoApp.health = lambda self, environ: _app.text('503 Service Unavailable', 'broken')\n")
    try:
        with Load(443, DOMAIN, address=host.address) as load:
            result = site.fab("deploy", check=False)
    finally:
        module.write_text(module.read_text() + "\n# health fixed again\n")
    assert result.returncode == 1 and "health check failed" in result.stdout + result.stderr
    assert host.run("readlink", "/srv/site/current").stdout.strip() == before
    assert load.total > 20 and load.failures == [], f"{len(load.failures)} of {load.total} failed"
    assert_stored_once(host, load)


def test_the_deploy_user_restarts_its_units_and_nothing_else(site, host):
    result = site.fab("restart")
    assert result.returncode == 0
    assert site.get(8081)
    refused = host.run("sudo", "-n", "/usr/bin/systemctl", "restart", "ssh.service", user="deploy", check=False)
    assert refused.returncode != 0


def test_the_deploy_user_cannot_read_the_data(site, host):
    assert host.run("ls", "/srv/site/var", user="deploy", check=False).returncode != 0
    assert host.run("ls", "/srv/site/var", user="plone").stdout.split()


def test_the_app_user_cannot_write_to_the_releases(site, host):
    release = host.run("readlink", "/srv/site/current").stdout.strip()
    for path in ("/srv/site/releases", f"/srv/site/{release}", f"/srv/site/{release}/bin"):
        assert host.run("touch", f"{path}/intruder", user="plone", check=False).returncode != 0, path


def test_a_second_bootstrap_changes_nothing(site, host):
    result = site.fab("bootstrap-host", password=host.root_password)
    assert "nothing to change" in result.stdout, result.stdout
    assert "ok unit srv-site-instance1.service is as wanted" in result.stdout


def test_the_units_start_the_site_again_after_a_reboot(site, host):
    before = site.get(8081, "version")
    hosts.reboot(host)
    answer = host.run("python3", "-c", WAIT_FOR_SITE, timeout=90)
    assert answer.returncode == 0
    assert site.get(8081, "version") == before == site.get(8082, "version")


def test_fab_logs_reads_the_units_journal(site, host):
    assert "systemd-journal" in host.run("id", "-nG", "deploy").stdout.split()
    result = site.fab("logs")
    assert "== instance1" in result.stdout and "srv-site-instance1" in result.stdout
    assert "Started srv-site-instance1.service" in result.stdout or "Started instance1" in result.stdout, result.stdout
    assert "not seeing messages from other users and the system" not in result.stdout + result.stderr


def test_harden_reloads_sshd_through_systemd_and_refuses_passwords(site, host):
    site.set_host_option("harden", "true")
    result = site.fab("bootstrap-host", password=host.root_password)
    assert "turn off password and root logins in sshd" in result.stdout
    assert not hosts.password_login_works(host, "root", host.root_password)
    assert site.fab("status").returncode == 0
    refused = site.fab("bootstrap-host", password=host.root_password, check=False)
    assert refused.returncode == 1 and "turned off root and password logins" in refused.stderr


def test_a_changed_host_key_is_refused(site, host):
    host.run("sh", "-c", "rm /etc/ssh/ssh_host_* && ssh-keygen -A >/dev/null && systemctl restart ssh")
    result = site.fab("bootstrap-host", password=host.root_password, check=False)
    assert result.returncode == 1
    assert "host key of" in result.stderr and "has changed" in result.stderr


WAIT_FOR_SITE = """
import time, urllib.request
for _ in range(300):
    try:
        urllib.request.urlopen("http://127.0.0.1:8082/health", timeout=2).close()
        break
    except Exception:
        time.sleep(0.2)
"""
