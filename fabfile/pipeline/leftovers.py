"""What dead runs leave behind, found in one read-only command and removed by every cleanup.

- ``dists/.incoming``: uploads of a push that died before moving them into ``dists/``
  (the callers hold the deploy lock, so no push runs now);
- ``*.restoring`` beside the live filestorages and blobstorage: a restore that died before
  its swap. Removed only under the backup lock (``<backups>/.lock``, taken by ``mkdir`` as
  the backup engine takes it), so a running backup or restore keeps them; when someone
  holds that lock they stay, and cleanup says so;
- ``*.before-restore-*``: the live data a restore moved aside. Only with ``older_than``
  days (``fab cleanup --before-restore-older-than DAYS``), never by default;
- local bundles in ``.cache/bundles`` (``bundle.prune_bundles``).
"""
from __future__ import annotations

import json
import posixpath
from datetime import datetime, timezone

from ..build import bundle
from .. import commands, onhost, output
from ..data.backup import site_settings, size
from ..paths import CACHE
from ..remote.site import Site, who

HELD = 3  # the exit status of removal_under_lock when someone holds the lock

_UNDER_LOCK = ('lock=$1; holder=$2; shift 2; '
               'if [ -d "$(dirname "$lock")" ]; then mkdir "$lock" 2>/dev/null || exit 3; '
               'printf "%s\\n" "$holder" > "$lock/holder"; trap \'rm -rf -- "$lock"\' EXIT; fi; '
               'rm -rf -- "$@"')


def removal_under_lock(lock_dir: str, holder: str, paths: list[str]) -> str:
    """Remove ``paths`` while holding ``lock_dir`` (taken by ``mkdir``, dropped after); exit 3, removing
    nothing, when someone holds it. No lock's parent means no backup or restore ever ran there."""
    return commands.join("sh", "-c", _UNDER_LOCK, "sh", lock_dir, holder, *paths)


def find(site: Site) -> dict:
    """The leftovers on the host, in one read-only command."""
    settings = site_settings(site, None)
    beside = [s.live for s in settings.storages] + [live for _, live, *_ in settings.blob_sets()]
    wanted = {"leftovers": {"beside": beside, "incoming": site.config.incoming_path,
                            "lock": backup_lock(settings.records)}}
    result = site.run(commands.python(site.config.python, onhost.source("backups"), json.dumps(wanted)),
                      changes=False)
    return json.loads(result.stdout)


def backup_lock(records: str) -> str:
    """The lock every backup and restore of the site holds (``backups.lock.exclusive``)."""
    return f"{posixpath.dirname(posixpath.normpath(records))}/.lock"


def clean(site: Site, releases: tuple[str, ...], older_than: float | None = None,
          mention_kept: bool = False) -> int:
    """Remove what dead runs left on the host and old local bundles (keeping those of ``releases``),
    saying what went and how big it was; with ``older_than`` also the ``*.before-restore-*`` copies
    older than that many days. The bytes freed."""
    found = find(site)
    freed = 0
    verb = "would remove" if site.dry else "removed"
    if found["incoming"]:
        site.run(commands.remove(site.config.incoming_path))
        bytes_ = sum(item["bytes"] for item in found["incoming"])
        freed += bytes_
        output.say(f"{verb} {site.config.incoming_path} of a dead push: "
                   f"{len(found['incoming'])} file(s), {size(bytes_)}")
    if found["restoring"]:
        paths = [item["path"] for item in found["restoring"]]
        bytes_ = sum(item["bytes"] for item in found["restoring"])
        settings = site_settings(site, None)
        lock = backup_lock(settings.records)
        holder = f"{who()} since {datetime.now(timezone.utc).isoformat(timespec='seconds')} for cleanup"
        result = site.run(removal_under_lock(lock, holder, paths), warn=True)
        if result is not None and result.exited == HELD:
            output.say(f"[yellow]left {len(paths)} *.restoring of a restore: a backup or restore holds {lock} "
                       f"(if none runs, remove that directory and run cleanup again)[/]")
        elif result is not None and result.exited:
            raise RuntimeError(f"removing {' '.join(paths)} failed: {result.stderr.strip()}")
        else:
            freed += bytes_
            output.say(f"{verb} {len(paths)} *.restoring of a dead restore ({size(bytes_)}):"
                       + "".join(f"\n  {path}" for path in paths))
    freed += _before_restore(site, found["before_restore"], older_than, verb, mention_kept)
    pruned = bundle.prune_bundles(CACHE / "bundles", releases, dry=site.dry)
    if pruned:
        bytes_ = sum(count for _, count in pruned)
        freed += bytes_
        output.say(f"{verb} {len(pruned)} old local bundle(s) from {CACHE / 'bundles'} ({size(bytes_)})")
    if freed:
        output.say(f"{'would free' if site.dry else 'freed'} {size(freed)} in all")
    return freed


def _before_restore(site: Site, copies: list[dict], older_than: float | None, verb: str,
                    mention_kept: bool) -> int:
    """Remove the copies a restore moved aside that are older than ``older_than`` days; the bytes freed."""
    doomed = [item for item in copies if older_than is not None and item["age_days"] is not None
              and item["age_days"] >= older_than]
    kept = [item for item in copies if item not in doomed]
    if doomed:
        site.run(commands.remove(*(item["path"] for item in doomed)))
        for item in doomed:
            output.say(f"{verb} {item['path']} ({item['age_days']:.0f} days old, {size(item['bytes'])})")
    if kept and mention_kept:
        bytes_ = sum(item["bytes"] for item in kept)
        output.say(f"kept {len(kept)} *.before-restore-* cop{'y' if len(kept) == 1 else 'ies'} ({size(bytes_)})"
                   + ("" if older_than is not None else ": --before-restore-older-than DAYS removes them"))
    return sum(item["bytes"] for item in doomed)
