"""Print what the deploy needs to know about a site's root, as one JSON document.

Usage: python3 -c SOURCE ROOT.  Read-only: it changes nothing on the host.
"""
import json
import os
import platform
import sys

root = sys.argv[1]


def read(path):
    try:
        with open(path) as handle:
            return handle.read()
    except (FileNotFoundError, NotADirectoryError):
        return None


def release(name):
    directory = os.path.join(root, "releases", name)
    built = read(os.path.join(directory, ".deploy", "built.json"))
    bad = read(os.path.join(directory, ".deploy", "bad.json"))
    return {
        "id": name,
        "built": json.loads(built) if built else None,
        "bad": json.loads(bad) if bad else None,
    }


releases_dir = os.path.join(root, "releases")
names = sorted(
    n for n in (os.listdir(releases_dir) if os.path.isdir(releases_dir) else [])
    if os.path.isdir(os.path.join(releases_dir, n)) and not n.startswith(".")
)
dists_dir = os.path.join(root, "dists")
dists = {
    entry.name: entry.stat().st_size
    for entry in (os.scandir(dists_dir) if os.path.isdir(dists_dir) else [])
    if entry.is_file()
}
current = os.readlink(os.path.join(root, "current")) if os.path.islink(os.path.join(root, "current")) else None
print(json.dumps({
    "root_exists": os.path.isdir(root),
    "current": os.path.basename(current) if current else None,
    "releases": [release(n) for n in names],
    "lock": read(os.path.join(root, ".lock", "holder")),
    "dists": dists,
    "venv": read(os.path.join(root, "venv", ".requirements")),
    "python": platform.python_version(),
    "user": os.environ.get("USER") or str(os.getuid()),
}))
