"""``fab -H production copy-data --to staging``: one sandbox site's data restored on another.

Two copies of the example site are deployed to the sandbox host, each with its own
root and ports. Objects with blobs are added to the first over HTTP; after
``copy-data --to staging --no-prompt`` the second serves the same objects, with the
same blob sha256s, and its own data from before is kept aside. ``--to local`` puts
the same data into a buildout directory on this machine.
"""
from __future__ import annotations

import hashlib

import pytest
from ZODB.FileStorage import FileStorage

from fabfile.data import copydata
from fabfile.backups.repozo import BackupError, layout
from sites import make_site


# -- the pure parts ----------------------------------------------------------

SOURCE = layout("/srv/prod/var", "/srv/prod/backups", "/srv/prod/current/bin/repozo", "python3",
                additional=("catalog",))


def test_the_transfer_is_packed_from_hard_links_and_unpacked_into_a_fresh_directory():
    assert copydata.pack_command([("/b/snap/2026-01-01-00-00-00.fsz", "filestorage-main/2026-01-01-00-00-00.fsz")],
                                 "/b/.work/cd", "/b/.work/cd.tar") == (
        "rm -rf -- /b/.work/cd /b/.work/cd.tar && mkdir -p -m 0700 /b/.work/cd/filestorage-main && "
        "{ cp -al /b/snap/2026-01-01-00-00-00.fsz /b/.work/cd/filestorage-main/2026-01-01-00-00-00.fsz 2>/dev/null "
        "|| { rm -rf -- /b/.work/cd/filestorage-main/2026-01-01-00-00-00.fsz && "
        "cp -a /b/snap/2026-01-01-00-00-00.fsz /b/.work/cd/filestorage-main/2026-01-01-00-00-00.fsz; }; } && "
        "tar -cf /b/.work/cd.tar -C /b/.work/cd . && rm -rf -- /b/.work/cd")
    assert copydata.unpack_command("/t/.work/x.tar", "/t/copy-data") == (
        "rm -rf -- /t/copy-data && mkdir -p -m 0700 /t/copy-data && tar -xf /t/.work/x.tar -C /t/copy-data "
        "&& rm -rf -- /t/.work/x.tar")


def test_the_target_restores_from_the_incoming_copy_into_its_own_data():
    target = layout("/srv/stage/var", "/srv/stage/backups", "/srv/stage/current/bin/repozo", "python3",
                    additional=("catalog",))
    incoming = copydata.incoming_settings(target, "/srv/stage/backups/copy-data")
    assert [s.snapshots for s in incoming.storages] == ["/srv/stage/backups/copy-data/filestorage-catalog",
                                                        "/srv/stage/backups/copy-data/filestorage-main"]
    assert [s.live for s in incoming.storages] == [s.live for s in target.storages]
    assert incoming.blob_snapshots == "/srv/stage/backups/copy-data/blobstorage"
    assert incoming.blobstorage == "/srv/stage/var/blobstorage"


def test_sites_with_other_filestorages_or_blobs_are_refused():
    plain = layout("/t/var", "/t/backups", "repozo", "python3")
    assert "different filestorages (source: catalog, main; target: main)" in copydata.mismatch(SOURCE, plain)
    no_blobs = layout("/t/var", "/t/backups", "repozo", "python3", additional=("catalog",), blobstorage=None)
    assert "blobstorage" in copydata.mismatch(SOURCE, no_blobs)
    assert copydata.mismatch(SOURCE, layout("/t/var", "/t/b", "r", "p", additional=("catalog",))) is None


# -- two sites on the sandbox host -------------------------------------------

@pytest.fixture(scope="module")
def sites(sandbox_host, tmp_path_factory):
    production = make_site(tmp_path_factory.mktemp("production"), sandbox_host)
    staging = make_site(tmp_path_factory.mktemp("staging"), sandbox_host)
    configs = production.workdir / "hostconfigs"
    (configs / "staging.cfg").write_text((staging.workdir / "hostconfigs" / "test.cfg").read_text())
    try:
        production.fab("deploy")
        staging.fab("deploy")
        yield production, staging
    finally:
        production.stop_everything()
        staging.stop_everything()


def digests(objects: list[dict]) -> list[tuple[str, str]]:
    return sorted((o["title"], o["blob_sha256"]) for o in objects)


def test_copy_data_asks_first_and_an_answer_other_than_yes_changes_nothing(sites):
    production, staging = sites
    production.add("asked", "only on production")
    before = staging.objects()
    result = production.fab("copy-data", "--to", "staging", check=False)
    assert result.returncode == 1
    assert "Type yes to go on" in result.stdout and "copy-data cancelled: nothing changed" in result.stderr
    assert staging.objects() == before
    assert not (production.root / "backups" / "snapshots").exists()


def test_copy_data_to_staging_leaves_the_same_objects_and_blobs_there(sites):
    production, staging = sites
    production.add("report", "quarterly numbers " * 100)
    production.add("logo", "PNG pretend " * 50)
    staging.add("staging only", "lost from staging, kept aside")
    result = production.fab("copy-data", "--to", "staging", "--no-prompt")
    assert "copied the data of test" in result.stdout
    expected = digests(production.objects())
    assert len(expected) == 3
    assert digests(staging.objects()) == expected == digests(staging.objects("instance2"))
    assert production.objects() and production.answers()
    kept = [p.name for p in (staging.root / "var" / "filestorage").iterdir() if ".before-restore-" in p.name]
    assert kept and any(p.name.startswith("blobstorage.before-restore-") for p in (staging.root / "var").iterdir())
    assert not (staging.root / "backups" / "copy-data").exists()
    assert [e for e in staging.deploy_log() if e["event"] == "copy-data"][-1]["source"] == "test"
    assert [e["kind"] for e in production.deploy_log() if e["event"] == "backup"][-1] == "snapshot"


def test_copy_data_to_local_restores_into_a_buildout_directory(sites, tmp_path):
    production, _ = sites
    result = production.fab("copy-data", "--to", "local", "--directory", str(tmp_path), "--no-prompt")
    assert "copied the data of test" in result.stdout
    storage = FileStorage(str(tmp_path / "var/filestorage/Data.fs"), read_only=True)
    try:
        assert len(storage) > 3
    finally:
        storage.close()
    blobs = {hashlib.sha256(p.read_bytes()).hexdigest() for p in (tmp_path / "var/blobstorage").rglob("*.blob")}
    assert {sha for _, sha in digests(production.objects())} <= blobs


def test_copy_data_to_itself_or_to_nowhere_is_refused(sites):
    production, _ = sites
    (production.workdir / "hostconfigs" / "itself.cfg").write_text(
        (production.workdir / "hostconfigs" / "test.cfg").read_text())
    result = production.fab("copy-data", "--to", "itself", "--no-prompt", check=False)
    assert result.returncode == 2 and "copy-data needs another site" in result.stderr
    result = production.fab("copy-data", "--no-prompt", check=False)
    assert result.returncode == 2 and "name the site that gets the data" in result.stderr
    with pytest.raises(BackupError):
        copydata.snapshot_files(SOURCE, type("Found", (), {"files": lambda self, s, snap: {}})(), "2026")
