"""Check the files an incremental backup added against repozo's own record of them.

Usage: PYTHON -c SOURCE DAT_FILE NEW_FILE...  Prints one JSON document and exits
non-zero when something is wrong.

What ``repozo -V`` checks, for the new files only: each is listed in the chain's
``.dat`` with the size and md5 of the bytes repozo read from the live filestorage,
and holds exactly those bytes (uncompressed, for ``.deltafsz``). The files before
them were checked when they were written, and their sha256 is in their backup's
record (``fab backups`` checks them again), so they are not read again. The chain
itself is checked whole: each file starts where the one before it ended.
"""
import gzip
import hashlib
import json
import os
import sys

dat, new = sys.argv[1], set(sys.argv[2:])
problems, checked = [], []
with open(dat) as handle:
    lines = [line.split() for line in handle if line.strip()]
end = 0
for fields in lines:
    if len(fields) != 4:
        problems.append(f"{dat}: a line that is not repozo's: {' '.join(fields)!r}")
        continue
    path, start, stop, expected = fields[0], int(fields[1]), int(fields[2]), fields[3]
    name = os.path.basename(path)
    if start != end:
        problems.append(f"{name} starts at {start}, the file before it ended at {end}")
    end = stop
    if name not in new:
        continue
    new.discard(name)
    local = os.path.join(os.path.dirname(dat), name)
    digest, size = hashlib.md5(), 0
    try:
        with (gzip.open if name.endswith("fsz") else open)(local, "rb") as data:
            for block in iter(lambda: data.read(1 << 20), b""):
                digest.update(block)
                size += len(block)
    except (OSError, EOFError) as error:
        problems.append(f"{local} does not read back: {error}")
        continue
    if size != stop - start:
        problems.append(f"{local} holds {size} bytes, repozo read {stop - start}")
    elif digest.hexdigest() != expected:
        problems.append(f"{local} has checksum {digest.hexdigest()} instead of {expected}")
    else:
        checked.append(name)
problems += [f"{name} is not in {dat}" for name in sorted(new)]
print(json.dumps({"checked": checked, "problems": problems}))
sys.exit(1 if problems else 0)
