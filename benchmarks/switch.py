"""Switch benchmark: stop/start, rolling and blue/green, through the same front, under the same load.

    python -m benchmarks.switch

For each switch mode, one example site on a fresh sandbox host behind HAProxy
(``tls = internal``): a first deploy, then a one-line change deployed and rolled back,
each under a bounded load (4 clients, mixed GETs and POSTs, through the front).
Counted: failed requests, p99 latency, the longest time between two answered
requests, and the rollback's time as a ratio of the first deploy.
"""
from __future__ import annotations

import os
import re
from collections import Counter
import signal
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from sandbox import sshd  # noqa: E402
from sandbox.load import Load  # noqa: E402
from sites import make_site  # noqa: E402
from support import free_port  # noqa: E402

DOMAIN = "www.example.test"
FAILURES: list[str] = []


def front(http_port: int, https_port: int, switch: str) -> str:
    return (f"[front]\ncontrol = self\nbind = 127.0.0.1\nhttp_port = {http_port}\nhttps_port = {https_port}\n"
            f"tls = internal\ndomains = {DOMAIN}\nsite_path = /\n")


def measure_mode(work: Path, host, switch: str) -> list[list[str]]:
    ports = free_port(), free_port()
    extra, options = front(*ports, switch), {}
    if switch == "bluegreen":
        green = {"instance1": free_port(), "instance2": free_port()}
        extra += "keep_warm = 300\n[green]\n" + "".join(f"ports:{n} = {p}\n" for n, p in green.items())
        options = {n: f"green_address = 127.0.0.1:{p}\n" for n, p in green.items()}
    site = make_site(work / switch, host, extra, deploy=f"switch = {switch}\n", program_options=options)
    rows = []
    try:
        started = time.monotonic()
        site.fab("deploy")
        first = time.monotonic() - started
        site.change_code("# bench: a one-line change")
        for label, args in (("one-line change", ("deploy",)), ("rollback", ("rollback",))):
            with Load(ports[1], DOMAIN) as load:
                started = time.monotonic()
                result = site.fab(*args)
                seconds = time.monotonic() - started
            flip = re.search(r"front flipped to the \w+ set in ([\d.]+)s", result.stdout)
            ratio = f"{seconds / first:.3f}" if label == "rollback" else ""
            if load.failures:
                FAILURES.append(f"{switch} {label}: {dict(Counter(load.failures))}")
            rows.append([switch, label, f"{seconds:.1f}", f"{len(load.failures)} of {load.total}",
                         f"{load.p99() * 1000:.0f} ms", f"{max(load.gaps, default=0):.2f} s", ratio,
                         f"{float(flip.group(1)):.3f} s" if flip else ""])
        rows.insert(0, [switch, "first deploy", f"{first:.1f}", "", "", "", "", ""])
    finally:
        site.stop_everything()
        pid_file = site.root / "front" / "run" / "haproxy.pid"
        if pid_file.exists():
            try:
                os.kill(int(pid_file.read_text().split()[0]), signal.SIGTERM)
            except (ProcessLookupError, ValueError):
                pass
    return rows


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="switch-bench-") as tmp:
        work = Path(tmp)
        host = sshd.start(work / "sshd", port=free_port())
        try:
            rows = [row for mode in ("stopstart", "rolling", "bluegreen") for row in measure_mode(work, host, mode)]
        finally:
            sshd.stop(work / "sshd")
    table = Table(title="switch modes through the front, under 4 clients (GET / and POST /add)")
    for column in ("switch", "step", "seconds", "failed requests", "p99 latency", "longest gap",
                   "rollback / first deploy", "front flip"):
        table.add_column(column)
    for row in rows:
        table.add_row(*row)
    Console(width=160).print(table)
    for line in FAILURES:
        print(f"failed requests, {line}")


if __name__ == "__main__":
    main()
