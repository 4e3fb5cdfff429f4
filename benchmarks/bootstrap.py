"""Bootstrap benchmark: from a fresh booted Debian 12 host to a serving example site.

    sudo .venv/bin/python -m benchmarks.bootstrap [--chroot]

Needs root (debootstrap, network namespaces, systemd-nspawn). Measures apart: making
the host (overlay, namespace, boot), ``bootstrap-host`` with root's password (apt
through the caching proxy: the first run on a machine downloads the packages),
the first ``deploy`` (distributions from the deployer's cache), and a second
``bootstrap-host`` (the no-op check). Aim: bootstrap + first deploy under two minutes.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

import hosts  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bootstrap")
    parser.add_argument("--chroot", action="store_true", help="a chroot host with supervisor, not a booted one")
    booted = not parser.parse_args().chroot
    missing = hosts.problems(booted=booted)
    if missing:
        sys.exit("benchmarks.bootstrap: " + "; ".join(missing))
    rows = []

    def measure(label, action):
        started = time.monotonic()
        result = action()
        rows.append([label, f"{time.monotonic() - started:.1f}"])
        return result

    measure("root filesystem (cached after the first run)", hosts.rootfs)
    with tempfile.TemporaryDirectory(prefix="bootstrap-bench-") as tmp:
        host = measure("make and start the host", lambda: hosts.create(Path(tmp) / "host", booted=booted))
        try:
            site = hosts.host_site(host, Path(tmp) / "site", manager="systemd" if booted else "supervisor",
                                   app_user="plone")
            bootstrap = measure("bootstrap-host", lambda: site.fab("bootstrap-host", password=host.root_password))
            deploy = measure("first deploy", lambda: site.fab("deploy"))
            site.get(8081)
            measure("bootstrap-host again (no change)", lambda: site.fab("bootstrap-host", password=host.root_password))
        finally:
            hosts.destroy(host)
    total = float(rows[-3][1]) + float(rows[-2][1])
    table = Table(title=f"bootstrap benchmark ({'booted with systemd' if booted else 'chroot, supervisor'})")
    table.add_column("step")
    table.add_column("seconds", justify="right")
    for row in rows:
        table.add_row(*row)
    console = Console(width=120)
    console.print(table)
    console.print(f"fresh host to serving site (bootstrap + first deploy): {total:.1f}s (aim < 120s)")
    assert bootstrap.returncode == 0 and deploy.returncode == 0


if __name__ == "__main__":
    main()
