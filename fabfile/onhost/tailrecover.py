"""Recover a full repozo backup while repozo writes it, so that checking it costs no time after.

Usage: PYTHON -c SOURCE REPOSITORY OUTPUT STOP_FILE gzip|plain KNOWN_DAT...  Prints one JSON
document and exits non-zero when something is wrong.

repozo writes a full backup into ``REPOSITORY/tmp.tmp`` (gzipped for ``.fsz``), renames it
``STAMP.fs[z]`` and then records it in ``STAMP.dat`` with the size and md5 of the bytes
it read from the live filestorage. This script waits for ``tmp.tmp`` (the caller removed
any left over first), reads it as it grows, uncompressed, into OUTPUT, and once the
``.dat`` names the file compares OUTPUT's size and md5 with that record: what
``repozo -R -w`` checks, done beside repozo instead of after it (KNOWN_DATs: the ``.dat`` files
there before repozo started; if repozo was done before this started, the renamed file is read). The backup's ``.index``
is copied to ``OUTPUT.index``, as repozo -R does. STOP_FILE appearing (repozo failed)
ends the wait; so does a day without the backup finishing.
"""
import hashlib
import json
import os
import shutil
import sys
import time
import zlib

repository, output, stop, compressed = sys.argv[1:5]
known = set(sys.argv[5:])
temporary = os.path.join(repository, "tmp.tmp")
deadline = time.monotonic() + 86400


def done(problems, **found):
    print(json.dumps({"problems": problems, **found}))
    sys.exit(1 if problems else 0)


def waited(what):
    if os.path.exists(stop):
        done([f"repozo stopped before {what}"])
    if time.monotonic() > deadline:
        done([f"no {what} in a day"])
    time.sleep(0.005)


def recorded():
    """(name, start, end, md5) of the full backup a new ``.dat`` records, once repozo wrote it whole."""
    for dat in sorted(set(os.listdir(repository)) - known):
        if not dat.endswith(".dat"):
            continue
        with open(os.path.join(repository, dat)) as handle:
            text = handle.read()
        fields = text.split()
        if text.endswith("\n") and len(fields) == 4:
            return os.path.basename(fields[0]), int(fields[1]), int(fields[2]), fields[3]
    return None


finished = None
while True:
    try:
        source = open(temporary, "rb")
        break
    except FileNotFoundError:
        finished = recorded()
        if finished:  # repozo was quicker than this script's start: its file has its name
            source = open(os.path.join(repository, finished[0]), "rb")
            break
        waited("the full backup started")

digest, size = hashlib.md5(), 0
unpack = zlib.decompressobj(wbits=31) if compressed == "gzip" else None
with source, open(output, "wb") as target:
    while True:
        block = source.read(1 << 20)
        if block:
            data = unpack.decompress(block) if unpack else block
            digest.update(data)
            size += len(data)
            target.write(data)
            continue
        if finished:  # the .dat was written after the file was closed: this was the end
            break
        finished = recorded()
        if not finished:
            waited("the full backup finished")
    if unpack:
        tail = unpack.flush()
        digest.update(tail)
        size += len(tail)
        target.write(tail)

name, start, end, expected = finished
problems = []
if unpack and not unpack.eof:
    problems.append(f"{name} ends before its gzip stream does")
if size != end - start:
    problems.append(f"{name} holds {size} bytes uncompressed, repozo read {end - start}")
elif digest.hexdigest() != expected:
    problems.append(f"{name} has checksum {digest.hexdigest()} instead of {expected}")
index = os.path.join(repository, name.rsplit(".", 1)[0] + ".index")
if os.path.exists(index):
    shutil.copyfile(index, output + ".index")
done(problems, name=name, size=size)
