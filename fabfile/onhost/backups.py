"""Print what the backups of a site are and what they need, as one JSON document.

Usage: python3 -c SOURCE SETTINGS_JSON.  Read-only: it changes nothing.

With SETTINGS_JSON {"leftovers": {"beside": [live paths], "incoming": DIR, "lock": DIR}}
it lists instead what dead runs left: ``*.restoring*`` and ``*.before-restore-*``
beside each live filestorage and blobstorage (with the bytes removing each frees and
its age in days), what ``dists/.incoming`` holds, and whether the backup lock is held.

SETTINGS_JSON names the live filestorages and blobstorage, the repozo
repositories, the blob backup locations, the records directory and repozo. The
answer lists every file of each repository with its size, every blob copy with
its size and the bytes it alone holds (hard links to an older copy cost nothing),
the records, and what a backup checks first: the live data exist, the locations
are writable, rsync is there, how much space is free, whether a filestorage is
locked by a running process. With "sizes" (the ``backups`` table) it also
re-reads every file a record lists under "sha256" ({absolute path: hex digest})
and reports, per backup, the ones that are missing or whose digest differs.
"""
import calendar
import fcntl
import hashlib
import json
import os
import re
import shutil
import sys
import time

settings = json.loads(sys.argv[1])


def entries(directory):
    try:
        names = os.listdir(directory)
    except (FileNotFoundError, NotADirectoryError, PermissionError):  # app_user's 0700 data: not ours to list
        return None
    return sorted(names)


def writable(directory):
    """Whether a backup can write there: the directory, or the nearest parent that exists."""
    path = directory
    while not os.path.exists(path):
        parent = os.path.dirname(path)
        if parent == path:
            return False
        path = parent
    return os.path.isdir(path) and os.access(path, os.W_OK | os.X_OK)


def repository(directory):
    names = entries(directory)
    files = {}
    for name in names or ():
        path = os.path.join(directory, name)
        if os.path.isfile(path):
            files[name] = os.path.getsize(path)
    return {"exists": names is not None, "writable": writable(directory), "files": files,
            "backed_up": backed_up(directory, files)}


def backed_up(directory, files):
    """Where the newest chain ends in the live filestorage (its ``.dat``'s last end position), or None."""
    dats = sorted(name for name in files if name.endswith(".dat"))
    try:
        with open(os.path.join(directory, dats[-1])) as handle:
            return int(handle.read().split()[-2])
    except (IndexError, OSError, ValueError):
        return None


ARCHIVE = re.compile(r"([0-9]{4}(?:-[0-9]{2}){5})(\.delta)?\.(tar|tar\.gz)")  # fullmatched


def copies(directory):
    """Blob copies (directories) and archives (``STAMP.tar[.gz]``), by stamp, oldest first, each
    with its name, its apparent size and the bytes no older copy shares (counted only when asked
    for: walking every copy costs time)."""
    seen = set()
    found = {}
    for name in entries(directory) or ():
        path = os.path.join(directory, name)
        archive = ARCHIVE.fullmatch(name)
        if archive and os.path.isfile(path):
            size = os.path.getsize(path)
            found[archive.group(1)] = {"name": name, "archive": archive.group(3), "bytes": size,
                                       "new_bytes": size, "files": 1, "delta": bool(archive.group(2)),
                                       "snar": os.path.isfile(os.path.join(directory, archive.group(1) + ".snar"))}
            continue
        if name.endswith(".partial") and ARCHIVE.fullmatch(name[:-len(".partial")]):
            found[name] = {"name": name}  # an archive cut short: undo removes it
            continue
        if not os.path.isdir(path):
            continue
        if not settings.get("sizes"):
            found[name] = {"name": name}
            continue
        apparent = new = count = 0
        for folder, _, files in os.walk(path):
            for file in files:
                stat = os.lstat(os.path.join(folder, file))
                apparent += stat.st_size
                count += 1
                if (stat.st_dev, stat.st_ino) not in seen:
                    seen.add((stat.st_dev, stat.st_ino))
                    new += stat.st_size
        found[name] = {"name": name, "bytes": apparent, "new_bytes": new, "files": count}
    return {"exists": os.path.isdir(directory), "writable": writable(directory), "copies": found}


def locked(path):
    """Whether a running process (a ZEO server, an instance) holds the filestorage's lock."""
    try:
        handle = open(path + ".lock", "rb")
    except OSError:
        return False
    with handle:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return True
        fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
    return False


def records(directory):
    found = {}
    for name in entries(directory) or ():
        if name.endswith(".json"):
            try:
                with open(os.path.join(directory, name)) as handle:
                    found[name[:-5]] = json.load(handle)
            except (OSError, ValueError):
                found[name[:-5]] = {"verified": False, "error": "unreadable record"}
    return found


def digest(path):
    """The hex sha256 of a file; None when it is not there."""
    sha = hashlib.sha256()
    try:
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                sha.update(block)
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as error:  # there but unreadable (a directory, no permission): not what was written
        return "unreadable: %s" % error
    return sha.hexdigest()


def checksums(found):
    """{stamp: {"files", "missing", "corrupted"}} for every record with "sha256"."""
    checked = {}
    for stamp, record in sorted(found.items()):
        recorded = record.get("sha256") if isinstance(record, dict) else None
        if not isinstance(recorded, dict):
            continue  # an older backup: nothing recorded to check against
        missing, corrupted = [], []
        for path, expected in sorted(recorded.items()):
            actual = digest(path)
            if actual is None:
                missing.append(path)
            elif actual != str(expected).strip().lower():
                corrupted.append(path)
        checked[stamp] = {"files": len(recorded), "missing": missing, "corrupted": corrupted}
    return checked


def interpreter(script):
    """The Python a console script (bin/repozo) runs with: its '#!' line."""
    try:
        with open(script, "rb") as handle:
            first = handle.readline().decode(errors="replace").strip()
    except OSError:
        return None
    return first[2:].strip() if first.startswith("#!") else None


def free_bytes(directory):
    path = directory
    while not os.path.exists(path) and os.path.dirname(path) != path:
        path = os.path.dirname(path)
    usage = os.statvfs(path)
    return usage.f_bavail * usage.f_frsize


def freed_bytes(path):
    """The bytes removing ``path`` frees: each inode once, and only when all its links are inside."""
    inodes = {}
    def count(stat):
        size, links, seen = inodes.get((stat.st_dev, stat.st_ino), (stat.st_size, stat.st_nlink, 0))
        inodes[stat.st_dev, stat.st_ino] = (size, links, seen + 1)
    try:
        count(os.lstat(path))
    except OSError:
        return 0
    if os.path.isdir(path) and not os.path.islink(path):
        for folder, _, files in os.walk(path):
            for name in files:
                try:
                    count(os.lstat(os.path.join(folder, name)))
                except OSError:
                    pass
    return sum(size for size, links, seen in inodes.values() if seen >= links or links < 1)


RESTORE_STAMP = re.compile(r"\.before-restore-([0-9]{4}-[0-9]{2}-[0-9]{2}-[0-9]{2}-[0-9]{2}-[0-9]{2})")


def age_days(path, name):
    """Days since the restore that moved ``path`` aside (its name says when; else its mtime)."""
    stamp = RESTORE_STAMP.search(name)
    try:
        when = calendar.timegm(time.strptime(stamp.group(1), "%Y-%m-%d-%H-%M-%S")) if stamp else \
            os.lstat(path).st_mtime
    except (ValueError, OSError):
        return None
    return (time.time() - when) / 86400


def leftovers(wanted):
    found = {"restoring": [], "before_restore": [], "incoming": [],
             "locked": os.path.lexists(wanted["lock"])}
    seen = set()
    for live in wanted["beside"]:
        parent, base = os.path.split(live.rstrip("/"))
        for name in entries(parent) or ():
            path = os.path.join(parent, name)
            if path in seen or not name.startswith(base + "."):
                continue
            rest = name[len(base):]
            if rest.startswith(".restoring"):
                kind = "restoring"
            elif ".before-restore-" in rest:
                kind = "before_restore"
            else:
                continue
            seen.add(path)
            found[kind].append({"path": path, "bytes": freed_bytes(path), "age_days": age_days(path, name)})
    incoming = wanted["incoming"]
    for name in entries(incoming) or ():
        found["incoming"].append({"path": os.path.join(incoming, name),
                                  "bytes": freed_bytes(os.path.join(incoming, name))})
    return found


if "leftovers" in settings:
    print(json.dumps(leftovers(settings["leftovers"])))
    sys.exit(0)

storages = {}
for storage in settings["storages"]:
    live = storage["live"]
    storages[storage["name"]] = {
        "live": {"exists": os.path.isfile(live), "size": os.path.getsize(live) if os.path.isfile(live) else 0,
                 "locked": locked(live)},
        "repository": repository(storage["repository"]),
        "snapshots": repository(storage["snapshots"]),
    }
blobstorage = settings["blobstorage"]
found_records = records(settings["records"])
print(json.dumps({
    "now": time.strftime("%Y-%m-%d-%H-%M-%S", time.gmtime()),
    "storages": storages,
    "blobstorage": {"exists": bool(blobstorage) and os.path.isdir(blobstorage)},
    "blob_backups": copies(settings["blob_backups"]),
    "blob_snapshots": copies(settings["blob_snapshots"]),
    "blobs": {name: {"blobstorage": {"exists": os.path.isdir(live)}, "blob_backups": copies(backups),
                     "blob_snapshots": copies(snapshots)}
              for name, live, backups, snapshots in settings.get("blob_sets", [])},
    "records": found_records,
    "checksums": checksums(found_records) if settings.get("sizes") else {},
    "repozo": {"exists": os.access(settings["repozo"], os.X_OK), "python": interpreter(settings["repozo"])},
    "rsync": shutil.which("rsync") is not None,
    "free": free_bytes(settings["blob_backups"]),
}))
