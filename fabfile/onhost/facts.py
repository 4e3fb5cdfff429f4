"""Print what the deploy needs to know about a site's root, as one JSON document.

Usage: python3 -c SOURCE ROOT [DISTS].  Read-only: it changes nothing on the host. DISTS: the
distributions' directory (default ROOT/dists; a store the host's sites share).
"""
import json
import os
import platform
import sys

root = sys.argv[1]
dists = sys.argv[2] if len(sys.argv) > 2 else os.path.join(root, "dists")


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
def checked_dists():
    """The distributions in dists/ whose sha256 the push recorded: {name: sha256}."""
    sums = read(os.path.join(dists, "SHA256SUMS")) or ""
    recorded = dict(reversed(line.split(None, 1)) for line in sums.splitlines() if line.strip())
    return {name: digest for name, digest in recorded.items()
            if os.path.isfile(os.path.join(dists, name))}


def current_manifest():
    text = read(os.path.join(root, "current", "manifest.json"))
    return json.loads(text) if text else None


def last_switch():
    """The verdict of the newest switch job, if any."""
    directory = os.path.join(root, ".switch")
    try:
        names = sorted(n for n in os.listdir(directory) if n.endswith(".result.json"))
    except OSError:
        return None
    text = read(os.path.join(directory, names[-1])) if names else None
    try:
        return json.loads(text) if text else None
    except ValueError:
        return None


libc, libc_version = platform.libc_ver()
current = os.readlink(os.path.join(root, "current")) if os.path.islink(os.path.join(root, "current")) else None
print(json.dumps({
    "root_exists": os.path.isdir(root),
    "current": os.path.basename(current) if current else None,
    "releases": [release(n) for n in names],
    "lock": read(os.path.join(root, ".lock", "holder")),
    "dists": checked_dists(),
    "manifest": current_manifest(),
    "venv": read(os.path.join(root, "venv", ".requirements")),
    "last_switch": last_switch(),
    "sets": {color: os.path.basename(os.readlink(os.path.join(root, color)))
             for color in ("blue", "green") if os.path.islink(os.path.join(root, color))},
    "color": (read(os.path.join(root, "current", ".deploy", "color")) or "blue").strip(),
    "python": platform.python_version(),
    "machine": platform.machine(),
    "glibc": libc_version if libc == "glibc" else None,
    "user": os.environ.get("USER") or str(os.getuid()),
}))
