"""``invoke init``: a host config guessed from an existing buildout (issue 12, item 4)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from fabfile.config import hostconfig
from fabfile.sites import init
from sites import REPO

INVOKE = str(Path(sys.executable).parent / "invoke")

BASE = """\
[buildout]
parts = zeoserver instance1 instance2 backup repozo
[ports]
zeo = 8100
[zeoserver]
recipe = plone.recipe.zeoserver
zeo-address = 127.0.0.1:${ports:zeo}
file-storage = ${buildout:directory}/var/filestorage/Data.fs
blob-storage = ${buildout:directory}/var/blobstorage
[instance1]
recipe = plone.recipe.zope2instance
http-address = 0.0.0.0:8081
zeo-client = on
zeo-address = ${zeoserver:zeo-address}
blob-storage = ${zeoserver:blob-storage}
[instance2]
<= instance1
http-address = 8082
[backup]
recipe = collective.recipe.backup
keep = 3
keep_blob_days = 7
gzip = true
location = ${buildout:directory}/var/backups
archive_blob = true
additional_filestorages = catalog
[repozo]
recipe = zc.recipe.egg
eggs = ZODB
scripts = repozo
"""


@pytest.fixture
def buildout(tmp_path):
    directory = tmp_path / "site"
    directory.mkdir()
    (directory / "base.cfg").write_text(BASE)
    (directory / "production.cfg").write_text("[buildout]\nextends = base.cfg\nallow-picked-versions = false\n")
    return directory


def test_a_zeoserver_two_instances_and_a_backup_part_give_programs_ports_and_backup(buildout, tmp_path):
    configs = tmp_path / "hostconfigs"
    path, said = init.init_config(buildout, "prod", "plone.example.org", configs)
    config = hostconfig.load(path)
    assert [(p.name, p.command, p.health_url) for p in config.programs] == [
        ("zeoserver", "bin/zeoserver fg", None),
        ("instance1", "bin/instance1 console", "http://127.0.0.1:8081/"),
        ("instance2", "bin/instance2 console", "http://127.0.0.1:8082/")]
    assert config.buildout_dir == buildout.resolve() and config.buildout_config == "production.cfg"
    assert config.address == "plone.example.org" and config.root == "/srv/prod"
    assert (config.backup_filestorage, config.backup_blobstorage) == ("filestorage/Data.fs", "blobstorage")
    assert (config.backup_keep, config.backup_keep_blob_days, config.backup_gzip) == (3, 7, True)
    assert config.backup_blob_archive == "tar" and config.backup_additional_filestorages == ("catalog",)
    assert any("port 8100" in line for line in said)
    assert any("repozo" in line and "tool" in line for line in said)
    assert any("locations are not taken" in line for line in said)


def test_init_refuses_to_overwrite_a_config_and_writes_nothing(buildout, tmp_path):
    configs = tmp_path / "hostconfigs"
    configs.mkdir()
    (configs / "prod.cfg").write_text("# mine\n")
    result = subprocess.run([INVOKE, "init", "--buildout", str(buildout), "--host", "prod", "--address", "10.0.0.1"],
                            cwd=REPO, capture_output=True, text=True,
                            env={**os.environ, "DEPLOY_HOSTCONFIGS": str(configs)})
    assert result.returncode == 2, result.stdout + result.stderr
    assert "exists" in result.stderr
    assert (configs / "prod.cfg").read_text() == "# mine\n"
    assert sorted(p.name for p in configs.iterdir()) == ["prod.cfg"]


def test_init_on_the_zope_test_site_prints_its_guesses_and_writes_a_config_that_loads(tmp_path):
    configs = tmp_path / "hostconfigs"
    result = subprocess.run([INVOKE, "init", "--buildout", str(REPO / "tests" / "zope_site"), "--host", "zope",
                             "--address", "127.0.0.1"], cwd=REPO, capture_output=True, text=True,
                            env={**os.environ, "DEPLOY_HOSTCONFIGS": str(configs)})
    assert result.returncode == 0, result.stdout + result.stderr
    assert "guessed: zeoserver: the ZEO server" in result.stdout
    config = hostconfig.load(configs / "zope.cfg")
    # what tests/test_zope.py gives by hand: the same commands, the instance's port from ${ports:instance}
    assert [(p.name, p.command, p.health_url) for p in config.programs] == [
        ("zeoserver", "bin/zeoserver fg", None), ("instance", "bin/instance console", "http://127.0.0.1:8380/")]
    assert config.buildout_config == "buildout.cfg"


def test_a_buildout_without_programs_is_refused(tmp_path):
    (tmp_path / "buildout.cfg").write_text("[buildout]\nparts = repozo\n[repozo]\nrecipe = zc.recipe.egg\n"
                                           "scripts = repozo\n")
    with pytest.raises(init.InitError, match="no program found"):
        init.init_config(tmp_path, "x", "10.0.0.1", tmp_path / "hostconfigs")
    assert not (tmp_path / "hostconfigs" / "x.cfg").exists()


def test_a_server_script_of_zc_recipe_egg_is_a_program_with_its_port():
    profile = init.buildoutfiles.Profile((), {
        "buildout": {"parts": "web zeo"},
        "web": {"recipe": "zc.recipe.egg:scripts", "scripts": "app=web", "http-port": "${ports:web}"},
        "ports": {"web": "9000"},
        "zeo": {"recipe": "zc.recipe.egg", "scripts": "runzeo=zeoserver"}})
    guess = init.read_parts(profile)
    assert guess.programs == [("web", "bin/web", "http://127.0.0.1:9000/"), ("zeoserver", "bin/zeoserver", None)]


@pytest.mark.integration
def test_init_on_the_zope_test_site_writes_a_config_that_deploys_with_no_edit(sandbox_host, tmp_path_factory):
    """A user's machine: a key in ~/.ssh that the host accepts, the host's key in hostconfigs/known_hosts
    (what bootstrap-host leaves), the Zope buildout on free ports; then init, then deploy, nothing edited."""
    import shutil
    import signal
    import urllib.request
    from sites import BUILD_JUNK, FAB
    from support import free_port
    work = tmp_path_factory.mktemp("iz")
    buildout = work / "zope"
    shutil.copytree(REPO / "tests" / "zope_site", buildout, ignore=BUILD_JUNK)
    zeo, http = free_port(), free_port()
    cfg = buildout / "buildout.cfg"
    cfg.write_text(cfg.read_text().replace("zeo = 8300", f"zeo = {zeo}").replace("instance = 8380", f"instance = {http}"))
    home, configs = work / "home", work / "hostconfigs"
    (home / ".ssh").mkdir(parents=True)
    configs.mkdir()
    for suffix in ("", ".pub"):
        shutil.copy(f"{sandbox_host.key_file}{suffix}", home / ".ssh" / f"id_ed25519{suffix}")
    (configs / "known_hosts").write_text(sandbox_host.known_hosts.read_text())
    env = {**os.environ, "DEPLOY_HOSTCONFIGS": str(configs), "HOME": str(home), "SSH_AUTH_SOCK": ""}
    made = subprocess.run([INVOKE, "init", "--buildout", str(buildout), "--host", "zope", "--address", "127.0.0.1",
                           "--port", str(sandbox_host.port), "--user", sandbox_host.user, "--root", str(work / "site")],
                          cwd=REPO, capture_output=True, text=True, env=env)
    assert made.returncode == 0, made.stdout + made.stderr
    written = (configs / "zope.cfg").read_text()
    try:
        deployed = subprocess.run([FAB, "-H", "zope", "deploy"], cwd=REPO, capture_output=True, text=True, env=env,
                                  timeout=900)
        assert deployed.returncode == 0, deployed.stdout + deployed.stderr
        with urllib.request.urlopen(f"http://127.0.0.1:{http}/", timeout=30) as answer:
            assert "Auto-generated default page" in answer.read().decode()
        assert (configs / "zope.cfg").read_text() == written
    finally:
        pid_file = work / "site" / "var" / "run" / "supervisord.pid"
        if pid_file.exists():
            os.kill(int(pid_file.read_text().strip()), signal.SIGTERM)
