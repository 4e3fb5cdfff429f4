"""Integration: a host that downloads from a package index ([buildout] index = URL) gets only
our own eggs and the tools for its venv pushed; buildout there takes the rest from the index."""
from __future__ import annotations

import re

import pytest

from fabfile.build import dists
from fabfile.paths import CACHE
from sites import make_site


@pytest.fixture(scope="module")
def indexed(sandbox_host, tmp_path_factory):
    work = tmp_path_factory.mktemp("index")
    simple = work / "simple"
    # a PEP 503 index on disk, as a private index would serve it: one folder per project
    for path in (CACHE / "dists").iterdir():
        found = dists.identify(path.name)
        if found:
            (simple / found[0]).mkdir(parents=True, exist_ok=True)
            (simple / found[0] / path.name).symlink_to(path)
    for project in simple.iterdir():
        links = "".join(f'<a href="{p.name}">{p.name}</a>\n' for p in sorted(project.iterdir()))
        (project / "index.html").write_text(f"<!DOCTYPE html><html><body>\n{links}</body></html>\n")
    site = make_site(work, sandbox_host)
    config = site.workdir / "hostconfigs" / "test.cfg"
    config.write_text(config.read_text().replace("[buildout]\n", f"[buildout]\nindex = file://{simple}\n", 1))
    yield site
    site.stop_everything()


def test_a_host_with_an_index_gets_only_our_eggs_and_tools_pushed(indexed):
    result = indexed.fab("deploy")
    uploaded = re.search(r"upload (\d+) of (\d+) distributions", result.stdout)
    pushed = sorted(p.name for p in (indexed.root / "dists").iterdir() if p.is_file() and p.name != "SHA256SUMS")
    assert int(uploaded.group(1)) == len(pushed) < int(uploaded.group(2))
    assert any(name.startswith("demoapp-") for name in pushed)
    assert not any(name.lower().startswith(("zodb-", "waitress-", "zeo-")) for name in pushed)
    assert indexed.get("health") == "ok"
    assert f"index = file://" in (indexed.root / "current" / "deploy.cfg").read_text()
