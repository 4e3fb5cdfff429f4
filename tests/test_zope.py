"""Integration: a real Zope buildout (plone.recipe.zeoserver + plone.recipe.zope2instance)
deploys with a hostconfig alone: var linked to the shared data, eggs in <root>/eggs."""
from __future__ import annotations

import urllib.request

import pytest

from sites import REPO, make_site


@pytest.fixture(scope="module")
def zope(sandbox_host, tmp_path_factory):
    site = make_site(tmp_path_factory.mktemp("zope"), sandbox_host, source=REPO / "tests" / "zope_site",
                     programs=("zeoserver", "instance"), health=("instance",),
                     health_path="++resource++logo/Zope.svg", profile="buildout.cfg",
                     commands={"zeoserver": "bin/zeoserver fg", "instance": "bin/instance console"})
    yield site
    site.stop_everything()


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
