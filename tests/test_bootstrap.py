"""Integration: a fresh Debian host without systemd (a chroot running sshd) becomes a serving site.

root's password once: ``bootstrap-host``, then ``deploy`` as the deploy user with its
key; the programs run under supervisor. The tests run in order on one host.
"""
from __future__ import annotations

import json

import pytest

import hosts
from support import require


@pytest.fixture(scope="module")
def host(tmp_path_factory):
    """A fresh chroot host, removed afterwards."""
    require(not hosts.problems(), "; ".join(hosts.problems()))
    host = hosts.create(tmp_path_factory.mktemp("chroot-host"))
    yield host
    hosts.destroy(host)


@pytest.fixture(scope="module")
def site(host, tmp_path_factory):
    return hosts.host_site(host, tmp_path_factory.mktemp("chroot-site"))


def test_bootstrap_with_roots_password_makes_the_users_the_layout_and_the_facts(site, host):
    result = site.fab("bootstrap-host", password=host.root_password)
    assert "is ready" in result.stdout
    assert host.run("id", "-nG", "deploy").stdout.split() == ["deploy"]
    assert host.run("stat", "-c", "%U:%G %a", "/srv/site/releases").stdout.strip() == "deploy:deploy 750"
    assert host.run("stat", "-c", "%U %a", "/srv/site/var").stdout.strip() == "deploy 700"
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


def test_deploy_after_bootstrap_serves_the_site(site, host):
    site.fab("deploy")
    assert site.get(8081) and site.get(8082)
    assert site.get(8081, "version") == site.get(8082, "version")


def test_a_second_bootstrap_changes_nothing_and_says_what_it_checked(site, host):
    result = site.fab("bootstrap-host", password=host.root_password)
    assert "nothing to change" in result.stdout, result.stdout
    assert "ok /srv/site/var deploy:deploy 0700" in result.stdout
    assert site.get(8081)


def test_a_wrong_root_password_is_refused_with_a_clear_message(site, host):
    result = site.fab("bootstrap-host", password="not-the-password", check=False)
    assert result.returncode == 1
    assert "refused the login" in result.stderr
