"""Deploy benchmark on a fresh sandbox host: times, downtime, bytes, SSH connections.

    python -m benchmarks.deploy

Every number comes from one run: first deploy, no-op deploy, a one-line change,
rollback, then a push and the deploy that only switches to it, against a full deploy of a
change; the site is polled every 50 ms during the change deploy to measure how
long it does not answer; sshd's own log counts the connections and sessions.
"""
from __future__ import annotations

import re
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from fabfile.build import bundle as bundles  # noqa: E402
from fabfile.config import hostconfig
from fabfile.build import platforms  # noqa: E402
from sandbox import sshd  # noqa: E402
from sites import make_site  # noqa: E402
from support import free_port  # noqa: E402


class Downtime:
    """Poll a URL every 50 ms in a thread; the longest stretch without a 2xx answer."""

    def __init__(self, url: str):
        self.url, self.longest, self._stop = url, 0.0, threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def _poll(self) -> None:
        down_since = None
        while not self._stop.is_set():
            try:
                urllib.request.urlopen(self.url, timeout=1).close()
                if down_since is not None:
                    self.longest = max(self.longest, time.monotonic() - down_since)
                down_since = None
            except Exception:
                down_since = down_since or time.monotonic()
            time.sleep(0.05)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(timeout=5)


def sshd_counts(log: Path, offset: int) -> tuple[int, int]:
    """SSH connections and remote commands logged since ``offset``."""
    text = log.read_text()[offset:]
    return len(re.findall(r"Accepted publickey", text)), len(re.findall(r"Starting session: command", text))


def sent_bytes(stdout: str) -> int:
    match = re.search(r"\((\d+) bytes sent", stdout.replace("\n", " "))
    return int(match.group(1)) if match else 0


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="deploy-bench-") as tmp:
        work = Path(tmp)
        host = sshd.start(work / "sshd", port=free_port())
        site = make_site(work / "site", host)
        log = work / "sshd" / sshd.LOG_FILE
        rows = []

        def measure(label: str, *args: str, poll: bool = False) -> float:
            offset = len(log.read_text())
            started = time.monotonic()
            if poll:
                with Downtime(site.url("health")) as downtime:
                    result = site.fab(*args)
            else:
                result, downtime = site.fab(*args), None
            elapsed = time.monotonic() - started
            connections, sessions = sshd_counts(log, offset)
            rows.append([label, f"{elapsed:.1f}", f"{downtime.longest:.2f}" if downtime else "",
                         f"{sent_bytes(result.stdout):,}" if args[0] in ("deploy", "push") else "",
                         str(connections), str(sessions)])
            return elapsed

        def local_step(label: str, work) -> float:
            started = time.monotonic()
            work()
            elapsed = time.monotonic() - started
            rows.append([label, f"{elapsed:.2f}", "", "", "0", "0"])
            return elapsed

        try:
            first = measure("first deploy (empty host)", "deploy")
            noop = measure("no-op deploy", "deploy")
            config = hostconfig.resolve("test", Path(site.env["DEPLOY_HOSTCONFIGS"]), environ={})
            target = platforms.this_machine()
            local_step("bundle step alone (nothing changed)",
                       lambda: bundles.make(config, target, bundles.release_eggs(config)))
            site.change_code(f"# one line changed at {time.time()}")  # unique: no wheel cached by a run before
            local_step("release-eggs + bundle after a one-line change",
                       lambda: bundles.make(config, target, bundles.release_eggs(config)))
            site.change_code(f"# another line changed at {time.time()}")
            change = measure("one-line-change deploy", "deploy", poll=True)
            rollback = measure("rollback", "rollback", poll=True)
            site.change_code(f"# a change pushed first at {time.time()}")
            pushed = measure("push (builds, switches nothing)", "push", poll=True)
            switch_only = measure("deploy after push (switch only)", "deploy", poll=True)
        finally:
            site.stop_everything()
            sshd.stop(work / "sshd")
    table = Table(title="deploy benchmark (sandbox sshd on 127.0.0.1, local dist cache warm)")
    for column in ("step", "seconds", "longest downtime (s)", "bytes uploaded", "SSH connections", "remote commands"):
        table.add_column(column)
    for row in rows:
        table.add_row(*row)
    console = Console(width=130)
    console.print(table)
    bytes_first, bytes_change = (int(rows[i][3].replace(",", "")) for i in (0, 4))
    console.print(f"no-op / first: {noop / first:.3f} (aim < 0.1); rollback / first: {rollback / first:.3f} "
                  f"(aim < 0.05); change / first: {change / first:.3f}; "
                  f"bytes change / first: {bytes_change / bytes_first:.4f}")
    console.print(f"deploy after push / full change deploy: {switch_only / change:.3f}; "
                  f"(push + deploy) / full change deploy: {(pushed + switch_only) / change:.3f}")


if __name__ == "__main__":
    main()
