"""A property of backups: whatever the history, restoring to a backup's time gives what was committed then.

Hypothesis draws histories of commits (blobs added, changed, removed), packs and
backups (incremental or full, with or without gzip, blobs as linked copies or
archives) on a local FileStorage with blobs; then every backup is restored by its
date, in a random order, with the real repozo, rsync and ZODB, and each time the
site must hold exactly what it held when that backup was made.
"""
from __future__ import annotations

import tempfile
import time
from pathlib import Path

import invoke
import ZODB
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ZODB.FileStorage import FileStorage

from fabfile.data import backup as backups
from fabfile.data import restore as restores
from test_backup import commit, state

NAMES = st.sampled_from(["a", "b", "c"])
STEPS = st.lists(st.one_of(
    st.tuples(st.just("commit"), NAMES, st.one_of(st.none(), st.binary(min_size=0, max_size=64))),
    st.tuples(st.just("pack")),
    st.tuples(st.just("backup"), st.booleans()),
), min_size=1, max_size=8)
OPTIONS = st.fixed_dictionaries({"gzip": st.booleans(), "blob_archive": st.sampled_from([None, "tar", "tar.gz"])})


def pack(site: Path) -> None:
    db = ZODB.DB(FileStorage(str(site / "var/filestorage/Data.fs"), blob_dir=str(site / "var/blobstorage")))
    try:
        db.pack(time.time() + 1)  # everything up to now: only the current revisions stay
    finally:
        db.close()


@settings(max_examples=5, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps=STEPS, options=OPTIONS, order=st.randoms(use_true_random=False))
def test_restoring_each_backup_gives_what_was_committed_at_its_time(steps, options, order):
    with tempfile.TemporaryDirectory() as folder:
        site = Path(folder)
        commit(site, a=b"first")
        context, hooks = invoke.Context(), backups.Hooks(quiet=True)
        settings_ = backups.local_settings(site, keep=0, **options)
        committed: dict[str, dict[str, bytes]] = {}
        for step in [*steps, ("backup", False)]:
            if step[0] == "commit":
                _, name, data = step
                if data is not None or name in state(site):
                    commit(site, **{name: data})
            elif step[0] == "pack":
                pack(site)
            else:
                record = backups.make_backup(context, settings_, hooks, full=step[1])
                if record is not None:
                    assert record["verified"], record["problems"]
                    committed[record["stamp"]] = state(site)
        stamps = sorted(committed)
        order.shuffle(stamps)
        for stamp in stamps:
            restores.restore_backup(context, settings_, hooks, date=stamp)
            assert state(site) == committed[stamp], f"restored {stamp} after {steps}"
