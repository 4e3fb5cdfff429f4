"""What a person sees: each step with how long it took, tables, and a one-line summary."""
from __future__ import annotations

import sys
import time
from contextlib import contextmanager

from rich.console import Console
from rich.table import Table

# Piped or captured output has no terminal width: wide enough that release ids never fold.
console = Console(highlight=False, width=None if sys.stdout.isatty() else 160)


@contextmanager
def step(name: str):
    """Print ``name`` when it starts and how long it took when it ends."""
    console.print(f"[bold]▸ {name}[/]")
    started = time.monotonic()
    try:
        yield
    except BaseException:
        console.print(f"[red]✗ {name} failed after {time.monotonic() - started:.1f}s[/]")
        raise
    console.print(f"  [green]✓[/] {name} [dim]{time.monotonic() - started:.1f}s[/]")


def say(message: str) -> None:
    console.print(message)


def table(title: str, columns: list[str], rows: list[list[str]]) -> None:
    """Print a table."""
    out = Table(title=title)
    for column in columns:
        out.add_column(column)
    for row in rows:
        out.add_row(*row)
    console.print(out)
