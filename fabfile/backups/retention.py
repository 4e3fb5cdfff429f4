"""Which backups go: the rules of collective.recipe.backup, as pure functions.

- ``keep`` full backups are kept in each repozo repository, each with its
  incrementals (and .dat and .index files); everything older than the oldest kept
  full backup goes. ``keep = 0`` keeps everything.
- A blob copy follows the filestorage: a copy older than the oldest filestorage
  backup still kept has nothing to be restored with, and goes.
- Where there are no filestorage backups at all (a blob-only setup), blob copies
  older than ``keep_blob_days`` days go, except the newest.
- Snapshots are the same rules applied to the snapshot locations, apart from the
  regular chain: every snapshot is a full backup.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from .repozo import data_files, stamp_of


@dataclass(frozen=True)
class Doomed:
    files: dict[str, list[str]]      # repository -> file names
    blob_copies: list[str]           # names of blob copies (stamps)

    def __bool__(self) -> bool:
        return bool(self.blob_copies or any(self.files.values()))


def oldest_kept(names, keep: int) -> str | None:
    """The stamp of the oldest full backup that ``keep`` keeps in one repository."""
    fulls = sorted(stamp for stamp, kind in data_files(names).items() if kind == "full")
    if not fulls:
        return None
    return fulls[-keep] if 0 < keep < len(fulls) else fulls[0]


def files_to_remove(names, keep: int) -> list[str]:
    """Files of one repozo repository beyond ``keep`` full backups."""
    cutoff = oldest_kept(names, keep)
    if keep == 0 or cutoff is None:
        return []
    return sorted(n for n in names if stamp_of(n) and stamp_of(n) < cutoff)


def blob_copies_to_remove(copies, main_names, keep: int, keep_blob_days: int, now: datetime) -> list[str]:
    """Blob copies older than the oldest kept filestorage backup, or, without any, than ``keep_blob_days``."""
    copies = sorted(copies)
    cutoff = oldest_kept(main_names, keep)
    if cutoff is not None:
        return [] if keep == 0 else [c for c in copies if c < cutoff]
    if keep_blob_days == 0 or not copies:
        return []
    limit = (now - timedelta(days=keep_blob_days)).strftime("%Y-%m-%d-%H-%M-%S")
    return [c for c in copies[:-1] if c < limit]


def plan(repositories: dict[str, list[str]], main: str, copies, keep: int, keep_blob_days: int,
         now: datetime) -> Doomed:
    """Everything retention removes, for the repositories of one chain (regular or snapshots)."""
    files = {repo: files_to_remove(names, keep) for repo, names in repositories.items()}
    return Doomed({r: f for r, f in files.items() if f},
                  blob_copies_to_remove(copies, repositories.get(main, []), keep, keep_blob_days, now))
