"""A Plone 6 site's build: a first deploy (254 distributions) and an add-on upgrade (one distribution
changed), push to serving, this tree beside the tree before the eggs were installed in parallel.

    python -m benchmarks.plonebuild [BASELINE]

BASELINE (default: the commit before) is checked out in a temporary git worktree that shares this
checkout's venv and distribution cache. Each tree deploys its own copy of the same site, made by
``invoke new-site --kind plone`` and pinned once by ``invoke pin`` (Plone's versions files served
from ``tests/plone_release`` by a local server, as in tests/test_new_site.py), to its own root on a
sandbox sshd, one after the other. The upgrade is one pinned add-on (plone.api) in a new version:
the same wheel with a ``.post`` version, so that the upgrade sends and builds that one distribution.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from fabfile.build import dists, eggs  # noqa: E402
from fabfile.paths import CACHE  # noqa: E402
from sandbox import sshd  # noqa: E402
from sites import TestSite  # noqa: E402
from support import free_port  # noqa: E402
from test_remote_extends import serving  # noqa: E402

PROJECT = Path(__file__).resolve().parent.parent
BASELINE = "0ce93aa"
BIN = PROJECT / ".venv" / "bin"
ADDON, ADDON_VERSION = "plone.api", "3.0.3"


def run(argv: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    result = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, env={**os.environ, **env},
                            timeout=1800)
    if result.returncode:
        raise SystemExit(f"{' '.join(argv)} exited {result.returncode}:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return result


def place(work: Path, name: str, host: sshd.Sandbox) -> Path:
    """A project directory with the sandbox's hostconfig (as tests/test_new_site.py makes it)."""
    (work / name / "hostconfigs").mkdir(parents=True)
    (work / name / "hostconfigs" / "sandbox.cfg").write_text(
        f"[host]\naddress = 127.0.0.1\nport = {host.port}\nidentity = {host.key_file}\n"
        f"known_hosts = {host.known_hosts}\nroot = {work / name}/unused\n"
        f"[buildout]\ndirectory = {PROJECT / 'example'}\n")
    return work / name


def upgraded_addon(cache: Path) -> str:
    """A new version of the add-on in the local distribution cache: its pinned wheel, re-versioned."""
    version = f"{ADDON_VERSION}.post{int(time.time())}"  # unique: no cached release hides the upload
    wheel = next(p for p in (cache / "dists").glob("plone_api-*.whl") if dists.identify(p.name)[1].public == ADDON_VERSION)
    eggs.reversion_wheel(wheel, version, cache / "dists")
    return version


def steps(stdout: str) -> str:
    """The deploy's steps with their seconds, as ``fab`` prints them (``✓ buildout 4.7s``)."""
    return ", ".join(f"{name} {seconds}" for name, seconds in re.findall(r"✓ (.+?) ([\d.]+)s\s*$", stdout, re.M))


def build_seconds(root: Path) -> float:
    """What the deploy recorded for buildout (the build step) in the current release."""
    return json.loads((root / "current" / ".deploy" / "built.json").read_text())["seconds"]


def main(baseline: str = BASELINE) -> None:
    rows = []
    with tempfile.TemporaryDirectory(prefix="plone-bench-") as tmp:
        work = Path(tmp)
        old_tree = work / "baseline-tree"
        subprocess.run(["git", "worktree", "add", "-q", "--detach", str(old_tree), baseline], cwd=PROJECT, check=True)
        (old_tree / ".cache").symlink_to(CACHE)  # the same local distribution cache
        host = sshd.start(work / "sshd", port=free_port())
        www = work / "www"
        shutil.copytree(PROJECT / "tests" / "plone_release", www)
        sites = []
        try:
            with serving(www) as server:
                plone = www / "release" / "6.2.2" / "versions.cfg"
                plone.write_text(plone.read_text().replace("@@SERVER@@", server.url))
                url = f"{server.url}/release/6.2.2/versions.cfg"
                trees = {"before": old_tree, "now": PROJECT}
                places = {label: place(work, label, host) for label in trees}
                for label, where in places.items():
                    env = {"DEPLOY_HOSTCONFIGS": str(where / "hostconfigs")}
                    run([str(BIN / "invoke"), "new-site", "cms", "--kind", "plone", "--versions", url], PROJECT, env)
                started = time.monotonic()
                run([str(BIN / "invoke"), "pin", "--host", "cms-sandbox"], PROJECT,
                    {"DEPLOY_HOSTCONFIGS": str(places["now"] / "hostconfigs")})
                pin_seconds = time.monotonic() - started
                pinned = places["now"] / "sites" / "cms" / "versions.cfg"
                shutil.copy(pinned, places["before"] / "sites" / "cms" / "versions.cfg")
                version = upgraded_addon(CACHE)
                for label, tree in trees.items():
                    where = places[label]
                    env = {"DEPLOY_HOSTCONFIGS": str(where / "hostconfigs"), "COLUMNS": "400"}
                    root = where / ".sandbox" / "sites" / "cms"
                    port = int(re.search(r"health_url = http://127\.0\.0\.1:(\d+)/",
                                         (where / "hostconfigs" / "cms-base.cfg").read_text()).group(1))
                    site = TestSite(where, root, where / "sites" / "cms", {"instance": port}, main="instance")
                    sites.append(site)
                    started = time.monotonic()
                    first = run([str(BIN / "fab"), "-H", "cms-sandbox", "deploy"], tree, env)
                    rows.append((label, "first deploy (254 distributions)", time.monotonic() - started,
                                 build_seconds(root), first))
                    versions = where / "sites" / "cms" / "versions.cfg"
                    versions.write_text(re.sub(rf"(?m)^{re.escape(ADDON)} = .*$", f"{ADDON} = {version}",
                                               versions.read_text()))
                    started = time.monotonic()
                    upgrade = run([str(BIN / "fab"), "-H", "cms-sandbox", "deploy"], tree, env)
                    rows.append((label, f"add-on upgrade ({ADDON} {version})", time.monotonic() - started,
                                 build_seconds(root), upgrade))
                    site.stop_everything()
        finally:
            for site in sites:
                site.stop_everything()
            sshd.stop(work / "sshd")
            subprocess.run(["git", "worktree", "remove", "--force", str(old_tree)], cwd=PROJECT, check=True)
    table = Table(title=f"Plone 6.2.2 build (sandbox sshd on 127.0.0.1; baseline {baseline}; pin {pin_seconds:.0f} s once)")
    for column in ("tree", "deploy", "push to serving s", "buildout step s", "bytes uploaded"):
        table.add_column(column)
    for label, step, seconds, build, result in rows:
        sent = re.search(r"\((\d+) bytes sent", result.stdout.replace("\n", " "))
        table.add_row(label, step, f"{seconds:.1f}", f"{build:.1f}", f"{int(sent.group(1)):,}" if sent else "")
    console = Console(width=150)
    console.print(table)
    for label, step, _, _, result in rows:
        console.print(f"{label}, {step}: {steps(result.stdout)}")
    for index, step in enumerate(("first deploy", "add-on upgrade")):
        before, now = rows[index], rows[2 + index]
        console.print(f"{step}: push to serving now / before {now[2] / before[2]:.2f}; "
                      f"buildout step now / before {now[3] / before[3]:.2f}")


if __name__ == "__main__":
    main(*sys.argv[1:2])
