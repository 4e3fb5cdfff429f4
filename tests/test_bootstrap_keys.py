"""Integration: the two commands of docs/bootstrap.md (and the README), as written, from a machine with no SSH key of its own; and a
Plone-style Zope buildout whose programs run as a separate ``app_user``.

One fresh chroot host. First ``HOME`` is an empty directory (no ``~/.ssh``, no agent) and the
hostconfig names no ``identity``: ``bootstrap-host`` makes this project's key pair (beside the
test's ``hostconfigs/``, never in the checkout) and authorizes it, and ``deploy`` logs in with it,
nothing edited in between. The site is the Zope test site (plone.recipe.zeoserver and
plone.recipe.zope2instance, which make their directories under ``var/`` while buildout runs),
deployed by ``deploy`` and run by ``plone``: those directories are plone's, and ``deploy``
cannot read or write there. Then, from a machine whose only key is ``~/.ssh/id_rsa``: refused
first, ``bootstrap-host`` authorizes that key and a deploy of a changed buildout logs in with it.
The tests run in order.
"""
from __future__ import annotations

import shutil
import subprocess

import pytest

import hosts
from support import require

ROOT = "/srv/site"
ZOPE_PAGE = "Auto-generated default page"  # what Zope's root shows


@pytest.fixture(scope="module")
def host(tmp_path_factory):
    """A fresh chroot host, removed afterwards."""
    require(not hosts.problems(), "; ".join(hosts.problems()))
    host = hosts.create(tmp_path_factory.mktemp("keys-host"))
    yield host
    hosts.destroy(host)


def zope_site(host: hosts.TestHost, workdir, home, buildout=None) -> hosts.HostSite:
    """A hostconfig without ``identity`` for the Zope test site on ``host``, run by ``fab`` with ``home`` as HOME."""
    if buildout is None:
        buildout = workdir / "buildout"
        shutil.copytree(hosts.REPO / "tests" / "zope_site", buildout, ignore=hosts.BUILD_JUNK)
    configs = workdir / "hostconfigs"
    configs.mkdir(parents=True)
    (configs / "test.cfg").write_text(f"""
[host]
address = {host.address}
user = deploy
app_user = plone
root = {ROOT}
[buildout]
directory = {buildout}
config = buildout.cfg
[services]
programs = zeoserver instance
[program:zeoserver]
command = bin/zeoserver fg
[program:instance]
command = bin/instance console
health_url = http://127.0.0.1:8380/++resource++logo/Zope.svg
[deploy]
health_timeout = 120
""")
    home.mkdir(parents=True, exist_ok=True)
    return hosts.HostSite(host, workdir, configs, key=None, env={"HOME": str(home), "SSH_AUTH_SOCK": ""})


@pytest.fixture(scope="module")
def site(host, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("keys-site")
    return zope_site(host, workdir, workdir / "home")


def as_deploy(host: hosts.TestHost, script: str) -> int:
    """The exit code of ``script`` run by the deploy user on the host."""
    return host.run("sh", "-c", script, user="deploy", check=False).returncode


def test_without_a_key_bootstrap_makes_one_beside_the_hostconfigs_and_authorizes_it(site, host):
    checkout_keys = sorted((hosts.REPO / ".deploy-keys").glob("*"))
    config_before = (site.configs / "test.cfg").read_text()
    result = site.fab("bootstrap-host", password=host.root_password)
    key = site.workdir / ".deploy-keys" / "id_ed25519"
    assert f"made a key pair for this project: {key}" in result.stdout
    assert "add 'identity" not in result.stdout
    public = (key.parent / "id_ed25519.pub").read_text().split()[1]
    assert public in host.path("/home/deploy/.ssh/authorized_keys").read_text()
    assert sorted((hosts.REPO / ".deploy-keys").glob("*")) == checkout_keys
    assert (site.configs / "test.cfg").read_text() == config_before  # nothing to edit


def test_deploy_then_logs_in_with_that_key_and_the_zope_site_answers(site, host):
    site.fab("deploy")
    assert ZOPE_PAGE in site.host.http_get("http://127.0.0.1:8380/")
    owners = set(host.run("sh", "-c", f"ps -eo user=,args= | grep '[{ROOT[0]}]{ROOT[1:]}' | cut -d' ' -f1").stdout.split())
    assert owners == {"plone"}


def test_the_recipes_directories_belong_to_the_app_user_and_the_deploy_user_cannot_write_there(site, host):
    # made by the build (the recipes), then by the programs (ZODB makes blobstorage at its first start)
    for path in ("var", "var/filestorage", "var/log", "var/instance", "var/instance/import", "var/cache"):
        assert host.run("stat", "-c", "%U %a", f"{ROOT}/{path}").stdout.strip() == "plone 700", path
    for path in ("var/blobstorage", "var/filestorage/Data.fs", "var/log/instance.log"):
        assert host.run("stat", "-c", "%U", f"{ROOT}/{path}").stdout.strip() == "plone", path
    assert as_deploy(host, f"ls {ROOT}/var") != 0
    assert as_deploy(host, f"touch {ROOT}/var/x") != 0
    assert as_deploy(host, f"ls {ROOT}/var/filestorage") != 0
    release = host.run("readlink", "-f", f"{ROOT}/current").stdout.strip()
    assert host.run("readlink", f"{release}/var").stdout.strip() == f"{ROOT}/var"
    assert not host.path(f"{release}/.deploy/build-data").exists()


def test_the_app_users_data_is_backed_up_and_restored_as_the_app_user(site, host):
    site.fab("backup", "--full")
    backed_up = host.run("sh", "-c", f"find {ROOT}/backups -type f -name '*.fs*' -printf '%u %p\\n'").stdout
    assert backed_up.strip() and {line.split()[0] for line in backed_up.splitlines()} == {"plone"}, backed_up
    assert as_deploy(host, f"ls {ROOT}/backups") != 0  # the deploy user still cannot read the data
    listed = site.fab("backups").stdout
    assert "full" in listed and "CORRUPTED" not in listed and "MISSING" not in listed, listed
    site.fab("restore", "latest", "--no-prompt")
    assert ZOPE_PAGE in site.host.http_get("http://127.0.0.1:8380/")
    assert host.run("stat", "-c", "%U", f"{ROOT}/var/filestorage/Data.fs").stdout.strip() == "plone"


def test_a_second_bootstrap_changes_nothing_and_makes_no_second_key(site, host):
    key = site.workdir / ".deploy-keys" / "id_ed25519"
    made = key.stat().st_mtime_ns
    result = site.fab("bootstrap-host", password=host.root_password)
    assert "nothing to change" in result.stdout, result.stdout
    assert "made a key pair" not in result.stdout and key.stat().st_mtime_ns == made


def test_from_a_machine_with_only_an_rsa_key_bootstrap_authorizes_it_and_deploy_uses_it(site, host, tmp_path):
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    subprocess.run(["ssh-keygen", "-q", "-t", "rsa", "-b", "3072", "-N", "", "-C", "rsa only",
                    "-f", str(home / ".ssh" / "id_rsa")], check=True)
    rsa = zope_site(host, tmp_path, home, buildout=site.configs.parent / "buildout")
    refused = rsa.fab("status", check=False)
    assert refused.returncode == 1 and f"refused the login: wrong password or key (key {home}/.ssh/id_rsa)" \
        in refused.stderr
    result = rsa.fab("bootstrap-host", password=host.root_password)
    assert "authorize the deploy key for deploy" in result.stdout and "made a key pair" not in result.stdout
    assert not (tmp_path / ".deploy-keys").exists()
    assert (home / ".ssh" / "id_rsa.pub").read_text().split()[1] in \
        host.path("/home/deploy/.ssh/authorized_keys").read_text()
    before = host.run("readlink", f"{ROOT}/current").stdout.strip()
    cfg = site.configs.parent / "buildout" / "buildout.cfg"
    cfg.write_text(cfg.read_text() + "\n# a configuration change\n")
    deployed = rsa.fab("deploy")
    assert f"backup (tagged {before.rsplit('/', 1)[-1]})" in deployed.stdout  # the data's backup is not skipped
    assert host.run("readlink", f"{ROOT}/current").stdout.strip() != before
    assert ZOPE_PAGE in host.http_get("http://127.0.0.1:8380/")
    assert host.run("stat", "-c", "%U %a", f"{ROOT}/var/filestorage").stdout.strip() == "plone 700"
