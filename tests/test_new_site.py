"""``invoke new-site`` (issue 10, item 1): a layered buildout and hostconfigs for its stages, ports
that collide with no other site on the host, the admin password in ``.env``; the new site deploys
to the sandbox with no edit, two of them side by side, a module's eggs included, and a Plone site
from a chain of remote versions files, pinned by ``invoke pin``."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from fabfile.sites import newsite
from fabfile.buildout.profile import read_profile
from sites import FAB, REPO, TestSite

INVOKE = str(Path(sys.executable).parent / "invoke")


@pytest.fixture(scope="module")
def place(sandbox_host, tmp_path_factory):
    """A project directory: ``hostconfigs/`` with a ``sandbox.cfg`` for the test's sandbox host."""
    workdir = tmp_path_factory.mktemp("ns")
    (workdir / "hostconfigs").mkdir()
    (workdir / "hostconfigs" / "sandbox.cfg").write_text(
        f"# The sandbox host of this test.\n[host]\naddress = 127.0.0.1\nport = {sandbox_host.port}\n"
        f"identity = {sandbox_host.key_file}\nknown_hosts = {sandbox_host.known_hosts}\nroot = {workdir}/unused\n"
        f"[buildout]\ndirectory = {REPO / 'example'}\n")
    made: list[TestSite] = []
    yield workdir, made
    for site in made:
        site.stop_everything()


def run(place, *args: str, timeout: float = 900) -> subprocess.CompletedProcess:
    workdir, _ = place
    command = [INVOKE, *args] if args[0] in ("new-site", "pin") else [FAB, *args]
    return subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "DEPLOY_HOSTCONFIGS": str(workdir / "hostconfigs"),
                               "COLUMNS": "400"})  # tables on one line each


def deployed(place, name: str) -> TestSite:
    """``fab -H NAME-sandbox deploy`` of a site new-site made; the site, to stop afterwards."""
    workdir, made = place
    site = newsite.Plan(name, "", (), workdir / "sites" / name, workdir / "hostconfigs", (), {})
    instances = [line.split("/")[2].split(":")[1] for line in site.config("base").read_text().splitlines()
                 if line.startswith("health_url")]
    test_site = TestSite(workdir, workdir / ".sandbox" / "sites" / name, site.buildout,
                         {"instance": int(instances[0])}, main="instance")
    made.append(test_site)
    result = run(place, "-H", f"{name}-sandbox", "deploy")
    assert result.returncode == 0, result.stdout + result.stderr
    test_site.sent = int(re.search(r"\((\d+) bytes sent", result.stdout).group(1))
    return test_site


def test_a_plain_site_deploys_to_the_sandbox_with_no_edit(place):
    made = run(place, "new-site", "blog")
    assert made.returncode == 0, made.stderr
    workdir, _ = place
    buildout = workdir / "sites" / "blog"
    for name in ("base.cfg", "settings.cfg", "versions.cfg", "production.cfg", "staging.cfg", "development.cfg"):
        assert (buildout / name).read_text().startswith("# "), name  # each says what it is for
    for stage in ("base", "sandbox", "staging", "production"):
        assert (workdir / "hostconfigs" / f"blog-{stage}.cfg").read_text().startswith("# ")
    workflow = (buildout / ".github" / "workflows" / "deploy.yml").read_text()
    assert "fab -H blog-" in workflow and "secrets.DEPLOY_SSH_KEY" in workflow  # CI: staging on main, production on a tag
    clean = subprocess.run(["git", "-C", str(buildout), "status", "--porcelain"], capture_output=True, text=True)
    assert clean.returncode == 0 and clean.stdout == ""  # its own repository, committed: the deploy releases it
    site = deployed(place, "blog")
    assert site.get("health")
    assert site.current() in site.release_ids()


def test_a_second_site_gets_other_ports_and_both_answer(place):
    workdir, _ = place
    made = run(place, "new-site", "shop")
    assert made.returncode == 0, made.stderr
    blog = newsite.ports_in_use(workdir / "hostconfigs", "127.0.0.1", int(
        newsite.sandbox_host(workdir / "hostconfigs")["port"]))
    def ports(name):
        found = read_profile(workdir / "sites" / name / "production.cfg").sections["ports"]
        return {int(found[key]) for key in ("zeo", "instance1", "instance2")}
    assert len(ports("shop")) == 3 and not ports("shop") & ports("blog")
    assert ports("blog") <= blog  # what new-site saw in use when it chose shop's
    shop = deployed(place, "shop")
    assert shop.get("health")
    blog_site = next(site for site in place[1] if site.root.name == "blog")
    assert shop.sent < blog_site.sent / 20, (shop.sent, blog_site.sent)  # the host's store had its distributions
    blog_port = [line for line in (workdir / "hostconfigs" / "blog-base.cfg").read_text().splitlines()
                 if line.startswith("health_url")][0]
    with urllib.request.urlopen(blog_port.split("=", 1)[1].strip(), timeout=10) as answer:
        assert answer.status == 200  # the first site still serves beside the second


def test_new_site_on_an_existing_name_refuses_and_changes_nothing(place):
    workdir, _ = place
    before = {p: p.read_bytes() for p in (workdir / "hostconfigs").iterdir()}
    again = run(place, "new-site", "blog", "--kind", "zope")
    assert again.returncode == 2
    assert "blog exists already" in again.stderr and "nothing changed" in again.stderr
    assert {p: p.read_bytes() for p in (workdir / "hostconfigs").iterdir()} == before


@pytest.mark.parametrize("args, message", [
    (("Blog!",), "a site's name is a lowercase letter"),
    (("wiki", "--kind", "django"), "--kind django: one of plain, zope, plone"),
    (("wiki", "--modules", "nope"), "no profiles/modules/nope.cfg (there are: mailhost)"),
    (("wiki", "--modules", "mailhost"), "made for zope and plone sites, not plain"),
    (("wiki", "--kind", "zope", "--versions", "https://example.org/v.cfg"), "only a plone site extends"),
    (("wiki", "--kind", "plone", "--versions", "/etc/passwd"), "one http:// or https:// URL"),
])
def test_a_bad_request_says_what_is_wrong_and_writes_nothing(place, args, message):
    workdir, _ = place
    result = run(place, "new-site", *args)
    assert result.returncode == 2 and message in result.stderr, result.stderr
    assert not (workdir / "sites" / "wiki").exists()


def test_a_zope_site_with_a_module_deploys_with_its_secret_from_env(place):
    workdir, _ = place
    made = run(place, "new-site", "intranet", "--kind", "zope", "--modules", "mailhost")
    assert made.returncode == 0, made.stderr
    env = (workdir / ".env").read_text()
    assert "INTRANET_ADMIN_PASSWORD=" in env and oct((workdir / ".env").stat().st_mode)[-3:] == "600"
    password = env.split("INTRANET_ADMIN_PASSWORD=")[1].split()[0]
    committed = subprocess.run(["grep", "-r", password, str(workdir / "sites"), str(workdir / "hostconfigs")],
                               capture_output=True, text=True)
    assert committed.stdout == ""  # never in a file of the site or its hostconfigs
    site = deployed(place, "intranet")
    eggs = [p.name.lower() for p in (workdir / ".sandbox" / "sites" / ".store" / "eggs").rglob("*.egg")]
    assert any(name.startswith("products.mailhost-6.1") for name in eggs), eggs  # the module's egg
    request = urllib.request.Request(site.url("manage_main"))
    request.add_header("Authorization", "Basic " + __import__("base64").b64encode(
        f"admin:{password}".encode()).decode())
    with urllib.request.urlopen(request, timeout=30) as answer:
        assert answer.status == 200  # the admin password from .env lets in


def test_a_site_using_a_port_of_another_site_on_the_host_is_refused_naming_both(place):
    workdir, _ = place
    configs = workdir / "hostconfigs"
    host = "".join(f"{key} = {value}\n" for key, value in newsite.sandbox_host(configs).items())
    twin = configs / "twin.cfg"  # blog's buildout again, under another root: the same ports
    twin.write_text(f"# blog's twin\n[hostconfig]\nextends = blog-base.cfg\n[host]\n{host}root = {workdir}/twin\n")
    try:
        result = run(place, "-H", "twin", "deploy")
    finally:
        twin.unlink()
    assert result.returncode == 2, result.stdout + result.stderr
    assert "site twin" in result.stderr and "site blog-sandbox" in result.stderr and "nothing changed" in result.stderr
    assert not (workdir / "twin" / "releases").exists()


def test_fab_sites_lists_every_site_on_the_host_and_exits_1_when_one_is_down(place):
    workdir, made = place
    listed = run(place, "-H", "blog-sandbox", "sites")
    assert listed.returncode == 0, listed.stdout + listed.stderr
    rows = {line.split("│")[1].strip(): line for line in listed.stdout.splitlines() if line.count("│") > 5}
    for site in made:  # blog, shop, intranet: each with its current release, healthy, its disk counted
        name = f"{site.root.name}-sandbox"
        assert site.current() in rows[name] and " ok " in rows[name], listed.stdout
        cells = [cell.strip() for cell in rows[name].split("│")[1:-1]]
        assert float(cells[6]) > 0 and float(cells[4]) > 0, cells  # releases and data MB: its disk, counted
    assert "nothing deployed" in rows["sandbox"]  # the test's sandbox.cfg: on the same host, never deployed
    shop = next(site for site in made if site.root.name == "shop")
    shop.stop_everything()
    down = run(place, "-H", "intranet-sandbox", "sites")
    assert down.returncode == 1 and "not healthy: shop-sandbox" in down.stderr, down.stdout + down.stderr
    assert "programs down" in next(line for line in down.stdout.splitlines() if "│ shop-sandbox" in line)


def test_a_plone_site_deploys_with_plones_remote_versions_files_and_pins_with_no_edit(place, tmp_path):
    """The plone kind, once (Plone's build is long): its versions.cfg extends a chain of remote
    versions files (``--versions``: here a local server standing in for dist.plone.org, which tests
    cannot reach); a deploy before ``invoke pin`` says to pin first; pin keeps the extends and writes
    the pins the build uses; the deploy freezes both remote files into the release; Plone answers."""
    from test_remote_extends import serving
    www = tmp_path / "www"
    shutil.copytree(Path(__file__).parent / "plone_release", www)
    with serving(www) as server:
        plone = www / "release" / "6.2.2" / "versions.cfg"
        plone.write_text(plone.read_text().replace("@@SERVER@@", server.url))
        url = f"{server.url}/release/6.2.2/versions.cfg"
        made = run(place, "new-site", "cms", "--kind", "plone", "--versions", url)
        assert made.returncode == 0, made.stderr
        workdir, _ = place
        assert f"extends = {url}" in (workdir / "sites" / "cms" / "versions.cfg").read_text()
        assert "next: invoke pin --host cms-sandbox" in made.stdout
        unpinned = run(place, "-H", "cms-sandbox", "deploy")
        assert unpinned.returncode != 0 and "run `invoke pin --host cms-sandbox` first" in unpinned.stderr
        pinned = run(place, "pin", "--host", "cms-sandbox")
        assert pinned.returncode == 0, pinned.stdout + pinned.stderr
        versions = (workdir / "sites" / "cms" / "versions.cfg").read_text()
        assert url in versions.split("[versions]")[0]  # Plone's file still extended
        assert re.search(r"^Products\.CMFPlone = 6\.2\.2$", versions, re.M), versions
        site = deployed(place, "cms")
        assert {"/release/6.2.2/versions.cfg", "/Zope/releases/6.3/versions.cfg"} <= set(server.requests)
        frozen = list((site.root / "current" / ".extends-cache").iterdir())
        assert len(frozen) == 2, frozen  # both files of the chain, in the release: the host fetched nothing
        with urllib.request.urlopen(site.url(""), timeout=30) as answer:
            assert "Plone" in answer.read().decode()  # Zope's root with Plone installed: "Create a Plone site"
