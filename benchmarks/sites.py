"""Several sites on one host: bytes uploaded and disk used by the first deploys of five sites of
the same kind, with the host's store (``[host] store``) and without, as ratios to one site.

    python -m benchmarks.sites

One run, one fresh sandbox sshd: five copies of the example site (each its own root) deploy one
after the other sharing a store, then five more each with its own ``dists/`` and ``eggs/``.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from sandbox import sshd  # noqa: E402
from sites import make_site  # noqa: E402
from support import free_port  # noqa: E402

SITES = 5


def disk(*paths: Path) -> int:
    """Bytes on disk under ``paths``, each hard-linked file counted once (``du`` does that)."""
    existing = [str(p) for p in paths if p.exists()]
    if not existing:
        return 0
    return int(subprocess.run(["du", "-sb", "-c", *existing], capture_output=True, text=True,
                              check=True).stdout.splitlines()[-1].split()[0])


def deploy_five(work: Path, host, store: Path | None) -> tuple[list[int], list[int], int]:
    """The bytes each first deploy sent, the disk of each site's root, and the eggs' disk in all."""
    sent, roots, made = [], [], []
    try:
        for index in range(SITES):
            (work / str(index)).mkdir(parents=True)
            site = make_site(work / str(index), host)
            made.append(site)
            if store:
                config = Path(site.env["DEPLOY_HOSTCONFIGS"]) / "test.cfg"
                config.write_text(config.read_text().replace("[host]\n", f"[host]\nstore = {store}\n", 1))
            result = site.fab("deploy")
            sent.append(int(re.search(r"\((\d+) bytes sent", result.stdout).group(1)))
            roots.append(disk(site.root))
        eggs = disk(store / "eggs") if store else disk(*(site.root / "eggs" for site in made))
        dists = disk(store / "dists") if store else disk(*(site.root / "dists" for site in made))
        return sent, roots, eggs + dists
    finally:
        for site in made:
            site.stop_everything()


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="sites-bench-") as tmp:
        work = Path(tmp)
        host = sshd.start(work / "sshd", port=free_port())
        try:
            shared = deploy_five(work / "shared", host, work / "shared" / "store")
            alone = deploy_five(work / "alone", host, None)
        finally:
            sshd.stop(work / "sshd")
    table = Table(title=f"first deploys of {SITES} example sites on one host")
    for column in ("", "bytes uploaded", f"/ one site", "dists + eggs on disk", f"/ one site"):
        table.add_column(column)
    for label, (sent, _, stored) in (("with the store ([host] store)".replace("[", "\\["), shared), ("each its own dists and eggs", alone)):
        one_stored = alone[2] / SITES
        table.add_row(label, f"{sum(sent):,}", f"{sum(sent) / sent[0]:.2f}", f"{stored:,}", f"{stored / one_stored:.2f}")
    Console().print(table)
    print(f"first site {shared[0][0]:,} bytes; each later site with the store: "
          f"{', '.join(f'{b:,}' for b in shared[0][1:])} bytes")


if __name__ == "__main__":
    os.environ.setdefault("COLUMNS", "160")
    main()
