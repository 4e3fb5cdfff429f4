"""What bootstrap-host checked on a host and what it would change there, part by part."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .. import commands


@dataclass(frozen=True)
class Change:
    what: str
    command: str
    needs_key_login: bool = False  # run only once a connection as user with the deploy key got in
    undo: str | None = None        # with needs_key_login: run when that login fails after the change
    uploads: tuple[tuple[Path, str], ...] = ()  # (local file, remote path) sent over SFTP before the command
    may_fail: str | None = None    # said, and the run goes on, when the command fails (a container refuses it)


@dataclass
class Plan:
    checked: list[str]
    changes: list[Change]

    def check(self, ok: bool, what: str, change: str, *command: str) -> None:
        """Record ``what`` as checked when ``ok``, else the ``change`` and its commands."""
        if ok:
            self.checked.append(what)
        else:
            self.changes.append(Change(change, commands.and_then(*command)))
