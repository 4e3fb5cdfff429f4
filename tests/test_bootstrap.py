"""Integration: a fresh Debian host without systemd (a chroot running sshd) becomes a serving site.

First what a fresh host may get wrong (no apt, a user with another home, a read-only or
full filesystem): each stops bootstrap-host with a clear message before it changes
anything, and once put right the same command succeeds. Then root's password once:
``bootstrap-host``, then ``deploy`` as the deploy user with its key; the programs run
under supervisor as a separate ``app_user``. Last, ``harden``. The tests run in order
on one host.
"""
from __future__ import annotations

import json
import time

import pytest

import hosts
from support import require

from fabfile.config import hostconfig
from fabfile.programs import supervisor
from fabfile.host.ssh import HARDEN_DROPIN


@pytest.fixture(scope="module")
def host(tmp_path_factory):
    """A fresh chroot host, removed afterwards."""
    require(not hosts.problems(), "; ".join(hosts.problems()))
    host = hosts.create(tmp_path_factory.mktemp("chroot-host"))
    yield host
    hosts.destroy(host)


@pytest.fixture(scope="module")
def site(host, tmp_path_factory):
    return hosts.host_site(host, tmp_path_factory.mktemp("chroot-site"), app_user="plone")


def assert_untouched(host, *users: str) -> None:
    """Nothing of the site on the host: no root, no users of ours, no new packages."""
    assert not host.path("/srv/site").exists()
    for user in users:
        assert host.run("id", user, check=False).returncode != 0, user
    assert host.run("dpkg-query", "-W", "rsync", check=False).returncode != 0


def test_a_host_without_apt_stops_before_any_change(site, host):
    apt_get = host.path("/usr/bin/apt-get")
    apt_get.rename(apt_get.with_name("apt-get.away"))
    try:
        result = site.fab("bootstrap-host", password=host.root_password, check=False)
        assert result.returncode == 1
        assert "has no apt-get (this needs Debian or Ubuntu)" in result.stderr
        assert_untouched(host, "deploy", "plone")
    finally:
        apt_get.with_name("apt-get.away").rename(apt_get)


def test_a_user_with_another_home_stops_before_any_change(site, host):
    host.run("useradd", "--create-home", "--home-dir", "/var/lib/deploy", "deploy")
    try:
        result = site.fab("bootstrap-host", password=host.root_password, check=False)
        assert result.returncode == 1
        assert "the user deploy exists with another home (/var/lib/deploy" in result.stderr
        assert_untouched(host, "plone")
    finally:
        host.run("userdel", "--remove", "deploy")


@pytest.mark.parametrize("mount_point, options, code, message", [
    ("/srv", "ro,size=1m", 2, "root = /srv/site: /srv on root@"),
    ("/srv", "size=64m", 1, "only 64 MiB free in /srv for the site's root"),
    ("/var/cache/apt/archives", "size=32m", 1, "only 32 MiB free in /var/cache/apt/archives for apt"),
], ids=["read-only root", "full root", "full apt cache"])
def test_a_read_only_or_full_filesystem_stops_before_any_change(site, host, mount_point, options, code, message):
    host.run("mount", "-t", "tmpfs", "-o", options, "tmpfs", mount_point)
    try:
        result = site.fab("bootstrap-host", password=host.root_password, check=False)
        assert result.returncode == code
        assert message in result.stderr
        if options.startswith("ro"):
            assert "is not writable (a read-only filesystem?)" in result.stderr
        assert_untouched(host, "deploy", "plone")
    finally:
        host.run("umount", mount_point)


def test_once_put_right_bootstrap_makes_the_users_the_layout_and_the_facts(site, host):
    result = site.fab("bootstrap-host", password=host.root_password)
    assert "is ready" in result.stdout
    assert host.run("id", "-nG", "deploy").stdout.split() == ["deploy"]
    assert host.run("id", "-nG", "plone").stdout.split() == ["plone", "deploy"]
    assert host.run("stat", "-c", "%U:%G %a", "/srv/site/releases").stdout.strip() == "deploy:deploy 750"
    for path in ("/srv/site/var", "/srv/site/var/run", "/srv/site/var/log", "/srv/site/backups"):
        assert host.run("stat", "-c", "%U %a", path).stdout.strip() == "plone 700", path
    facts = json.loads(host.path("/srv/site/host.json").read_text())
    assert facts["distribution"] == "debian" and facts["version"] == "12"
    assert facts["python"].startswith("3.11") and facts["manager"] == "supervisor"
    assert host.run("dpkg-query", "-W", "rsync", "python3-dev", "build-essential").returncode == 0


def test_the_host_key_is_recorded_on_first_contact(site, host):
    known = (site.configs / "known_hosts").read_text()
    assert known.startswith(host.address + " ")


def test_the_deploy_user_logs_in_with_its_key(site, host):
    result = site.fab("status", check=False)
    assert "current release: none" in result.stdout


def test_deploy_after_bootstrap_serves_the_site_from_supervisor_run_as_the_app_user(site, host):
    site.fab("deploy")
    assert site.get(8081) and site.get(8082)
    assert site.get(8081, "version") == site.get(8082, "version")
    owners = set(host.run("sh", "-c", "ps -eo user=,args= | grep '[/]srv/site' | cut -d' ' -f1").stdout.split())
    assert owners == {"plone"}
    assert host.path("/srv/site/var/run/supervisor.sock").exists()


def test_the_deploy_user_drives_supervisor_but_cannot_read_the_data(site, host):
    assert host.run("ls", "/srv/site/var", user="deploy", check=False).returncode != 0
    config = hostconfig.load(site.configs / "test.cfg", environ={})
    log = host.run("sh", "-c", supervisor.logs(config, "instance1", 5), user="deploy").stdout
    assert 0 < len(log.splitlines()) <= 5
    assert site.fab("restart").returncode == 0
    assert "RUNNING" in site.fab("status").stdout


def test_a_second_bootstrap_changes_nothing_and_says_what_it_checked(site, host):
    result = site.fab("bootstrap-host", password=host.root_password)
    assert "nothing to change" in result.stdout, result.stdout
    assert "ok /srv/site/var plone:plone 0700" in result.stdout
    assert site.get(8081)


def test_a_wrong_root_password_is_refused_with_a_clear_message(site, host):
    result = site.fab("bootstrap-host", password="not-the-password", check=False)
    assert result.returncode == 1
    assert "refused the login: wrong password or key" in result.stderr


def test_harden_refuses_passwords_and_root_and_keeps_the_key_login(site, host):
    host.run("sh", "-c", "echo deploy:a-password | chpasswd")
    assert hosts.password_login_works(host, "root", host.root_password)
    assert hosts.password_login_works(host, "deploy", "a-password")
    site.set_host_option("harden", "true")
    result = site.fab("bootstrap-host", password=host.root_password)
    assert "check that deploy logs in with the deploy key alone" in result.stdout
    assert "check that deploy still logs in with the key" in result.stdout
    assert "PermitRootLogin no" in host.path(HARDEN_DROPIN).read_text()
    assert not hosts.password_login_works(host, "root", host.root_password)
    assert not hosts.password_login_works(host, "deploy", "a-password")
    assert "RUNNING" in site.fab("status").stdout  # the deploy user, with its key
    assert site.get(8081)


def test_bootstrap_on_a_hardened_host_says_why_root_cannot_log_in_and_changes_nothing(site, host):
    before = host.run("find", "/srv/site", "/etc/ssh", "/etc/sudoers.d", "-printf", "%p %T@\n").stdout
    result = site.fab("bootstrap-host", password=host.root_password, check=False)
    assert result.returncode == 1
    assert f"bootstrap-host turned off root and password logins there ({HARDEN_DROPIN})" in result.stderr
    assert f"rm {HARDEN_DROPIN}" in result.stderr
    assert host.run("find", "/srv/site", "/etc/ssh", "/etc/sudoers.d", "-printf", "%p %T@\n").stdout == before


def test_with_the_hardening_removed_bootstrap_runs_and_hardens_again(site, host):
    host.run("sh", "-c", f'rm {HARDEN_DROPIN} && kill -HUP "$(cat /run/sshd.pid)"')
    result = site.fab("bootstrap-host", password=host.root_password)
    assert "turn off password and root logins in sshd" in result.stdout
    assert not hosts.password_login_works(host, "root", host.root_password)


def test_without_an_include_the_hardening_goes_first_in_sshd_config(site, host):
    host.run("sh", "-c", f'rm {HARDEN_DROPIN} && sed -i "s|^Include .*|PermitRootLogin yes|" /etc/ssh/sshd_config '
                         '&& kill -HUP "$(cat /run/sshd.pid)"')
    deadline = time.monotonic() + 10  # sshd re-reads its config after the HUP, in its own time
    while not hosts.password_login_works(host, "deploy", "a-password") and time.monotonic() < deadline:
        time.sleep(0.25)
    assert hosts.password_login_works(host, "deploy", "a-password")
    result = site.fab("bootstrap-host", password=host.root_password)
    assert "turn off password and root logins in sshd (/etc/ssh/sshd_config)" in result.stdout
    config = host.path("/etc/ssh/sshd_config").read_text()
    assert config.startswith("# bootstrap-host: harden") and "PermitRootLogin yes" in config
    assert host.path("/etc/ssh/sshd_config.before-harden").exists()
    assert not hosts.password_login_works(host, "root", host.root_password)
    assert not hosts.password_login_works(host, "deploy", "a-password")
    assert site.fab("status").returncode == 0
    refused = site.fab("bootstrap-host", password=host.root_password, check=False)
    assert refused.returncode == 1 and "sshd_config.before-harden" in refused.stderr
