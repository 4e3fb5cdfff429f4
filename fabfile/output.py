"""What a person sees: each step with how long it took, tables, and a one-line summary."""
from __future__ import annotations

import sys
import threading
import time
from contextlib import contextmanager

from rich.console import Console
from rich.table import Table

# Piped or captured output has no terminal width: wide enough that release ids never fold.
console = Console(highlight=False, width=None if sys.stdout.isatty() else 160)
_host = threading.local()  # a fleet's work on several hosts at once: each line says its host


@contextmanager
def on_host(name: str):
    """Lines printed in this thread while the block runs start with ``name``."""
    _host.name = name
    try:
        yield
    finally:
        _host.name = None


def _print(message: str) -> None:
    name = getattr(_host, "name", None)
    console.print(f"[cyan]{name}[/] {message}" if name else message)


@contextmanager
def step(name: str):
    """Print ``name`` when it starts and how long it took when it ends."""
    _print(f"[bold]▸ {name}[/]")
    started = time.monotonic()
    try:
        yield
    except BaseException:
        _print(f"[red]✗ {name} failed after {time.monotonic() - started:.1f}s[/]")
        raise
    _print(f"  [green]✓[/] {name} [dim]{time.monotonic() - started:.1f}s[/]")


def say(message: str) -> None:
    _print(message)


def table(title: str, columns: list[str], rows: list[list[str]]) -> None:
    """Print a table."""
    out = Table(title=title)
    for column in columns:
        out.add_column(column)
    for row in rows:
        out.add_row(*row)
    console.print(out)
