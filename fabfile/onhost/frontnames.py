"""Claim a site's names in the host's front map (``sharedfront.py``): one line ``<name> <backend>`` each.

Usage: python3 -c SOURCE --check|--write MAP BACKEND NAME...

Under a lock on the map's directory (every deploy user of the host may open it), the
site's own lines are replaced by its names now; a name another backend holds stops it
with exit 3 and the map untouched. ``--check`` writes nothing. Prints ``unchanged``,
``changes`` (``--check``) or ``changed``.
"""
import fcntl
import os
import sys


def main(mode, path, backend, names):
    lock = os.open(os.path.dirname(path) or ".", os.O_RDONLY)
    fcntl.flock(lock, fcntl.LOCK_EX)
    try:
        with open(path) as handle:
            lines = [line.split() for line in handle if line.strip() and not line.startswith("#")]
    except FileNotFoundError:
        lines = []
    held = {line[0]: line[1] for line in lines if len(line) == 2}
    taken = [f"{name} (site {held[name]})" for name in names if held.get(name, backend) != backend]
    if taken:
        print("the host's front routes " + ", ".join(taken) + " already; nothing changed", file=sys.stderr)
        return 3
    wanted = sorted([line for line in lines if line[1:] != [backend]] + [[name, backend] for name in names])
    if wanted == sorted(lines):
        print("unchanged")
        return 0
    if mode == "--check":
        print("changes")
        return 0
    with open(path + ".new", "w") as handle:
        handle.write("".join(" ".join(line) + "\n" for line in wanted))
    os.replace(path + ".new", path)
    print("changed")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]))
