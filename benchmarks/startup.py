"""What every ``fab`` pays before its task starts: ``fab --list`` and ``import fabfile``, this tree
beside the tree before the tasks loaded their engines lazily, measured in one run.

    python -m benchmarks.startup [BASELINE]

BASELINE is a commit (default: the one before the lazy task imports); it is checked out in a
temporary git worktree that shares this checkout's venv. Each figure is the median of 15 runs.
"""
from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

PROJECT = Path(__file__).resolve().parent.parent
BASELINE = "b1b10a2"
RUNS = 15


def wall(argv: list[str], cwd: Path) -> float:
    """The median wall time of ``argv`` in ``cwd``, in seconds."""
    times = []
    for _ in range(RUNS):
        began = time.perf_counter()
        subprocess.run(argv, cwd=cwd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        times.append(time.perf_counter() - began)
    return statistics.median(times)


def measure(tree: Path) -> dict[str, float]:
    python = str(PROJECT / ".venv" / "bin" / "python")
    fabric = wall([python, "-c", "import fabric"], tree)
    return {"fab --list": wall([python, "-m", "fabric", "--list"], tree),
            "import fabfile minus import fabric": wall([python, "-c", "import fabfile"], tree) - fabric}


def main(baseline: str = BASELINE) -> None:
    with tempfile.TemporaryDirectory() as scratch:
        old = Path(scratch) / "baseline"
        subprocess.run(["git", "worktree", "add", "-q", "--detach", str(old), baseline], cwd=PROJECT, check=True)
        try:
            before, now = measure(old), measure(PROJECT)
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(old)], cwd=PROJECT, check=True)
    table = Table(title=f"start-up, median of {RUNS} runs (baseline {baseline})")
    for column in ("measure", "baseline s", "now s", "now / baseline"):
        table.add_column(column)
    for name in now:
        table.add_row(name, f"{before[name]:.3f}", f"{now[name]:.3f}", f"{now[name] / before[name]:.2f}")
    Console().print(table)


if __name__ == "__main__":
    main(*sys.argv[1:2])
