"""Sites on one host sharing its distributions and eggs (``[host] store``, issue 10 item 4): the
second site's first deploy uploads only what the host lacks, an egg takes the disk of one, and
two sites deploy at the same time, both successfully."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from sites import make_site

SENT = re.compile(r"\((\d+) bytes sent")


@pytest.fixture(scope="module")
def store_sites(sandbox_host, tmp_path_factory):
    base = tmp_path_factory.mktemp("st")
    store = base / "store"
    made = []
    for name in ("a", "b"):
        (base / name).mkdir()
        site = make_site(base / name, sandbox_host)
        config = Path(site.env["DEPLOY_HOSTCONFIGS"]) / "test.cfg"
        config.write_text(config.read_text().replace("[host]\n", f"[host]\nstore = {store}\n", 1))
        made.append(site)
    yield store, made
    for site in made:
        site.stop_everything()


def sent(result) -> int:
    return int(SENT.search(result.stdout).group(1))


def test_a_second_sites_first_deploy_uploads_only_what_the_host_lacks(store_sites):
    store, (first, second) = store_sites
    one = sent(first.fab("deploy"))
    two = sent(second.fab("deploy"))
    assert first.answers() and second.answers()
    assert one > 1_000_000 and two < one / 20, (one, two)  # the second sends its own egg and bundle only
    assert not (first.root / "eggs").exists() and not (second.root / "eggs").exists()
    for site in (first, second):  # both build against the store: one copy of each egg on the host
        deploy_cfg = (site.root / "current" / "deploy.cfg").read_text()
        assert f"eggs-directory = {store / 'eggs'}" in deploy_cfg and f"find-links = {store / 'dists'}" in deploy_cfg
    zodb = [p for p in (store / "eggs").rglob("ZODB-*.egg")]
    assert len(zodb) == 1, zodb


def test_two_sites_deploy_at_the_same_time_and_both_succeed(store_sites):
    _, sites = store_sites
    before = [site.current() for site in sites]
    for site in sites:
        site.change_code(f"# store: deployed at the same time as the other site ({site.root})")
    running = [site.fab_in_background("deploy") for site in sites]
    outputs = [process.communicate(timeout=600)[0] for process in running]
    for process, output in zip(running, outputs):
        assert process.returncode == 0, output
    for site, old in zip(sites, before):
        assert site.current() != old and site.answers()
