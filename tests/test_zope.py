"""Integration: a real Zope buildout (plone.recipe.zeoserver + plone.recipe.zope2instance)
deploys with a hostconfig alone: var linked to the shared data, eggs in <root>/eggs."""
from __future__ import annotations

import os
import shutil
import urllib.request

import pytest

from sites import REPO, make_site
from support import free_port, require
from test_front import DOMAIN, front_extra, request, stop_front


@pytest.fixture(scope="module")
def zope(sandbox_host, tmp_path_factory):
    require(shutil.which("haproxy") or os.path.exists("/usr/sbin/haproxy"), "haproxy not found: apt-get install haproxy")
    ports = free_port(), free_port()
    site = make_site(tmp_path_factory.mktemp("zope"), sandbox_host, front_extra(*ports),
                     source=REPO / "tests" / "zope_site",
                     programs=("zeoserver", "instance"), health=("instance",),
                     health_path="++resource++logo/Zope.svg", profile="buildout.cfg",
                     commands={"zeoserver": "bin/zeoserver fg", "instance": "bin/instance console"})
    site.front_ports = ports
    yield site
    site.stop_everything()
    stop_front(site)


def test_a_zope_buildout_deploys_and_serves_from_shared_data(zope):
    zope.fab("deploy", timeout=900)
    release = zope.root / "releases" / zope.current()
    page = zope.get("")
    assert "Auto-generated default page" in page
    assert (zope.root / "var" / "filestorage" / "Data.fs").stat().st_size > 0
    assert not (release / "eggs").exists() and any((zope.root / "eggs").iterdir())
    assert "eggs-directory = " + str(zope.root / "eggs") in (release / "deploy.cfg").read_text()


def test_zope_content_survives_a_redeploy_of_changed_configuration(zope):
    request = urllib.request.Request(
        zope.url("manage_addProduct/OFSP/addDTMLDocument"),
        data=b"id=marker&title=T&file=hello-marker",
        headers={"Authorization": "Basic YWRtaW46YWRtaW4="})
    urllib.request.urlopen(request, timeout=30).close()
    before = zope.current()
    cfg = zope.buildout / "buildout.cfg"
    cfg.write_text(cfg.read_text() + "\n# a configuration change\n")
    zope.fab("deploy", timeout=900)
    assert zope.current() != before
    assert zope.get("marker") == "hello-marker"
    zope.fab("rollback")
    assert zope.current() == before and zope.get("marker") == "hello-marker"


def test_zope_behind_the_front_writes_the_public_url(zope):
    status, _, url = request(zope, path="/marker/absolute_url")
    assert status == 200
    assert url == f"https://{DOMAIN}:{zope.front_ports[1]}/marker"  # Zope's VirtualHostMonster did it
