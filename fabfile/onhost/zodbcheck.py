"""Open a recovered filestorage with ZODB, read-only, and check that every object loads.

Usage: PYTHON -c SOURCE REPOZO_SCRIPT DATA_FS [BLOB_DIR [REPOSITORY [DATE]]].  Prints one
JSON document and exits non-zero when something is wrong: 1 when it does not open, 3 when
the recover failed.

With REPOSITORY, DATA_FS is first recovered from it (``repozo -R -w``, to DATE when given)
in this same process, which then opens it: one interpreter and one import of ZODB, not two.

ZODB comes from wherever repozo finds it: the script runs ``bin/repozo`` (a buildout
script that puts its eggs on ``sys.path``, or a console script in a virtualenv)
without calling its main, then imports ZODB. Every current record is loaded and
its pickle walked; every blob record must have its file in BLOB_DIR (the blob
copy of the same moment), so a backup whose blobs are missing does not verify.
"""
import json
import os
import sys

repozo, path = sys.argv[1], sys.argv[2]
blob_dir = sys.argv[3] if len(sys.argv) > 3 else ""
repository = sys.argv[4] if len(sys.argv) > 4 else ""
with open(repozo) as handle:
    exec(compile(handle.read(), repozo, "exec"), {"__name__": "repozo_paths", "__file__": repozo})

if repository:
    from ZODB.scripts import repozo as repozo_script
    try:
        repozo_script.main(["-R", "-w", "-r", repository, "-o", path, *(("-D", sys.argv[5]) if len(sys.argv) > 5 else ())])
        failed = None
    except SystemExit as stop:
        failed = None if stop.code in (None, 0) else str(stop.code)
    except Exception as error:  # what repozo does not turn into an exit message
        failed = f"{type(error).__name__}: {error}"
    if failed:
        print(json.dumps({"problems": [f"repozo -R: {failed}"]}))
        sys.exit(3)

from ZODB.blob import FilesystemHelper, is_blob_record  # noqa: E402
from ZODB.FileStorage import FileStorage  # noqa: E402
from ZODB.serialize import referencesf  # noqa: E402
from ZODB.utils import oid_repr, z64  # noqa: E402

problems = []
objects = blobs = 0
storage = FileStorage(path, read_only=True)
try:
    helper = FilesystemHelper(blob_dir) if blob_dir and os.path.isdir(blob_dir) else None
    if not storage._index.has_key(z64) and len(storage._index):
        problems.append("no root object")
    for oid in list(storage._index.keys()):
        try:
            data, serial = storage.load(oid)
        except Exception as error:  # a record that does not load is what we look for
            problems.append(f"object {oid_repr(oid)} does not load: {error}")
            continue
        if not data:
            continue  # an object whose creation was undone
        objects += 1
        referencesf(data)
        if is_blob_record(data):
            blobs += 1
            if blob_dir:
                filename = helper.getBlobFilename(oid, serial) if helper else ""
                if not os.path.isfile(filename):
                    problems.append(f"blob of object {oid_repr(oid)} is missing from {blob_dir}")
finally:
    storage.close()
print(json.dumps({"objects": objects, "blobs": blobs, "size": os.path.getsize(path), "problems": problems[:20]}))
sys.exit(1 if problems else 0)
