"""collective.recipe.backup (CRB) as a drop-in: its options, its buildout part, its scripts.

Unit tests: every CRB option name in a hostconfig's ``[backup]`` is taken (it changes the
settings) or said at load time with its reason; a buildout's CRB part becomes the site's
settings. Local tests (real repozo, real ZODB data with blobs): zipbackup -> ziprestore,
altrestore from a copied directory, only_blobs. Sandbox tests: a site whose buildout has a
real CRB part (the recipe installed by the build, three filestorages each with its
blobstorage, ``blobbackuplocation``, ``keep = 3``) and no ``[backup]`` in its hostconfig is
backed up, restored by date and snapshot-restored with ``fab``; ``invoke backup`` on it
writes into the same chain.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import invoke
import pytest
import ZODB
from ZODB.blob import Blob
from ZODB.FileStorage import FileStorage

from fabfile.data import backup as backups
from fabfile.config import crb, hostconfig
from fabfile.data import restore as restores
from fabfile.backups.repozo import variant
from sites import make_site

REPO = Path(__file__).resolve().parent.parent
INVOKE = str(Path(sys.executable).parent / "invoke")


# -- ZODB data -------------------------------------------------------------

def commit(filestorage: Path, blobs: Path, **items: bytes) -> None:
    """One transaction in ``filestorage``: each item a blob under its name in the root."""
    filestorage.parent.mkdir(parents=True, exist_ok=True)
    db = ZODB.DB(FileStorage(str(filestorage), blob_dir=str(blobs)))
    with db.transaction() as connection:
        for name, data in items.items():
            connection.root()[name] = Blob(data)
    db.close()


def state(filestorage: Path, blobs: Path) -> dict[str, bytes]:
    db = ZODB.DB(FileStorage(str(filestorage), blob_dir=str(blobs), read_only=True))
    try:
        with db.transaction() as connection:
            return {name: blob.open("r").read() for name, blob in connection.root().items()}
    finally:
        db.close()


# -- every CRB option: taken, or said why not --------------------------------

# a value for each option that differs from our default, and what it must change
SAMPLES = {
    "additional_filestorages": ("catalog filestorage/catalog.fs blobstorage-catalog",
                                lambda c: c.backup_additional_filestorages == ("catalog:filestorage/catalog.fs:"
                                                                               "blobstorage-catalog",)),
    "alternative_restore_source": ("Data /mnt/prod/backups /mnt/prod/blobs",
                                   lambda c: dict(c.backup_alternative_source) == {"main": "/mnt/prod/backups",
                                                                                   "blobstorage": "/mnt/prod/blobs"}),
    "alternative_restore_sources": ("Data /mnt/prod/backups", lambda c: c.backup_alternative_source ==
                                    (("main", "/mnt/prod/backups"),)),
    "archive_blob": ("true", lambda c: c.backup_blob_archive == "tar"),
    "backup_blobs": ("false", lambda c: c.backup_blobstorage == ""),
    "blob_storage": ("blobs", lambda c: c.backup_blobstorage == "blobs"),
    "blob-storage": ("blobs", lambda c: c.backup_blobstorage == "blobs"),
    "blobbackuplocation": ("/mnt/blobs", lambda c: ("blob_location", "/mnt/blobs") in c.backup_locations),
    "blobsnapshotlocation": ("/mnt/bs", lambda c: ("blob_snapshot_location", "/mnt/bs") in c.backup_locations),
    "blobziplocation": ("/mnt/bz", lambda c: ("blob_zip_location", "/mnt/bz") in c.backup_locations),
    "compress_blob": ("true", None),  # alone it means nothing: said; with archive_blob below
    "datafs": ("filestorage/other.fs", lambda c: c.backup_filestorage == "filestorage/other.fs"),
    "debug": ("true", lambda c: c.backup_debug and c.backup_options["verbose"]),
    "enable_snapshotrestore": ("false", lambda c: not c.backup_enable_snapshotrestore),
    "enable_zipbackup": ("false", lambda c: not c.backup_enable_zipbackup),
    "full": ("true", lambda c: c.backup_full),
    "gzip": ("false", lambda c: not c.backup_gzip),
    "gzip_blob": ("true", lambda c: c.backup_blob_archive == "tar"),
    "keep": ("3", lambda c: c.backup_keep == 3),
    "keep_blob_days": ("7", lambda c: c.backup_keep_blob_days == 7),
    "location": ("/mnt/fs", lambda c: ("location", "/mnt/fs") in c.backup_locations),
    "locationprefix": ("/mnt/site", lambda c: c.backups_dir == "/mnt/site"),
    "only_blobs": ("true", lambda c: c.backup_only_blobs),
    "post_command": ("echo done", lambda c: c.backup_post_command == "echo done"),
    "pre_command": ("echo go", lambda c: c.backup_pre_command == "echo go"),
    "quick": ("false", lambda c: not c.backup_quick),
    "rsync_hard_links_on_first_copy": ("true", lambda c: c.backup_link_first_copy),
    "rsync_options": ("--no-l -k", lambda c: c.backup_rsync_options == ("--no-l", "-k")),
    "snapshotlocation": ("/mnt/snap", lambda c: ("snapshot_location", "/mnt/snap") in c.backup_locations),
    "use_rsync": ("false", lambda c: not c.backup_use_rsync),
    "ziplocation": ("/mnt/zip", lambda c: ("zip_location", "/mnt/zip") in c.backup_locations),
    "blob_timestamps": ("true", None),
    "enable_fullbackup": ("true", None),
    "incremental_blobs": ("true", None),  # alone it means nothing: said; with archive_blob below
}


def config_with(tmp_path: Path, backup: str, buildout: Path | None = None) -> hostconfig.HostConfig:
    directory = buildout or tmp_path
    path = tmp_path / "h.cfg"
    path.write_text(f"[host]\naddress = 10.0.0.1\nroot = /srv/site\n[buildout]\ndirectory = {directory}\n"
                    f"[backup]\n{backup}\n")
    return hostconfig.load(path, environ={})


def test_the_table_covers_every_option_crb_knows():
    assert set(SAMPLES) == set(crb.OPTIONS)


@pytest.mark.parametrize("name", sorted(crb.OPTIONS))
def test_each_crb_option_is_taken_or_said_why_not_at_load_time(tmp_path, name):
    value, taken = SAMPLES[name]
    config = config_with(tmp_path, f"{name} = {value}")
    if taken is not None:
        assert taken(config), f"{name} = {value} changed nothing"
        assert not config.warnings
        return
    assert len(config.warnings) == 1
    warning = config.warnings[0]
    assert warning.startswith(f"{tmp_path / 'h.cfg'}: [backup] {name}: ignored: ")
    assert len(warning.split("ignored: ", 1)[1]) > 20  # the reason


def test_compress_blob_with_archive_blob_makes_gzipped_archives(tmp_path):
    config = config_with(tmp_path, "archive_blob = true\ncompress_blob = true")
    assert config.backup_blob_archive == "tar.gz" and not config.warnings


def test_incremental_blobs_with_archive_blob_makes_delta_archives(tmp_path):
    config = config_with(tmp_path, "archive_blob = true\nincremental_blobs = true")
    assert config.backup_incremental_blobs and config.backup_options["incremental_blobs"] and not config.warnings


def test_a_crb_name_and_ours_for_the_same_setting_are_refused(tmp_path):
    with pytest.raises(hostconfig.ConfigError, match=r"\[backup\] datafs: sets filestorage, which \[backup\] "
                                                     r"filestorage sets too"):
        config_with(tmp_path, "datafs = a.fs\nfilestorage = b.fs")


def test_a_bad_crb_value_names_file_section_and_key(tmp_path):
    with pytest.raises(hostconfig.ConfigError, match=r"h.cfg: \[backup\] archive_blob: 'maybe' is not true or false"):
        config_with(tmp_path, "archive_blob = maybe")
    with pytest.raises(hostconfig.ConfigError, match=r"h.cfg: \[backup\] alternative_restore_source: .* is not one "
                                                     r"line 'Data FSBACKUPS"):
        config_with(tmp_path, "alternative_restore_source = catalog /x")


BUILDOUT = """[buildout]
parts = zeoserver backup
[zeoserver]
recipe = plone.recipe.zeoserver
file-storage = ${buildout:directory}/var/filestorage/Main.fs
blob-storage = ${buildout:directory}/var/blobs
[backup]
recipe = collective.recipe.backup
location = ${buildout:directory}/var/crb/backups
blobbackuplocation = /mnt/blobbackups
keep = 3
debug = true
blob_timestamps = true
pre_command =
    echo one
    echo two
additional_filestorages =
    catalog ${buildout:directory}/var/filestorage/catalog.fs ${buildout:directory}/var/blobs-catalog
"""


def test_a_buildout_crb_part_gives_the_settings_and_the_hostconfig_overrides_it(tmp_path):
    buildout = tmp_path / "buildout"
    buildout.mkdir()
    (buildout / "production.cfg").write_text(BUILDOUT)
    config = config_with(tmp_path, "keep = 5", buildout)
    assert config.backup_keep == 5  # the hostconfig wins
    assert config.backup_filestorage == "/srv/site/var/filestorage/Main.fs"  # from the zeoserver part
    assert config.backup_blobstorage == "/srv/site/var/blobs"
    assert dict(config.backup_locations) == {"location": "/srv/site/var/crb/backups",
                                             "blob_location": "/mnt/blobbackups"}
    assert config.backup_additional_filestorages == (
        "catalog:/srv/site/var/filestorage/catalog.fs:/srv/site/var/blobs-catalog",)
    assert config.backup_pre_command == "echo one && echo two" and config.backup_debug
    assert config.warnings == (f"{buildout / 'production.cfg'}: [backup] blob_timestamps: ignored: "
                               f"{crb.OPTIONS['blob_timestamps'].meaning}",)
    settings = backups.config_settings(config, None)
    catalog = settings.storages[0]
    assert (catalog.live, catalog.repository, catalog.blobstorage, catalog.blob_backups) == (
        "/srv/site/var/filestorage/catalog.fs", "/srv/site/var/crb/backups-catalog", "/srv/site/var/blobs-catalog",
        "/mnt/blobbackups-catalog")


def test_a_crb_path_inside_a_release_is_refused(tmp_path):
    buildout = tmp_path / "buildout"
    buildout.mkdir()
    (buildout / "production.cfg").write_text("[buildout]\nparts = backup\n[backup]\nrecipe = collective.recipe.backup"
                                             "\nlocation = ${buildout:directory}/backups\n")
    with pytest.raises(hostconfig.ConfigError, match=r"production.cfg: \[backup\] location: .* is inside the "
                                                     r"buildout, which on the host is a release"):
        config_with(tmp_path, "", buildout)


# -- the scripts, on this machine ------------------------------------------

@pytest.fixture
def here(tmp_path: Path) -> Path:
    commit(tmp_path / "var/filestorage/Data.fs", tmp_path / "var/blobstorage", first=b"first blob")
    return tmp_path


def hooks():
    return backups.Hooks(quiet=True)


def test_zipbackup_then_ziprestore_brings_back_that_state_kept_apart(here):
    settings = backups.local_settings(here)
    zipped = variant(settings, zip=True)
    record = backups.make_backup(invoke.Context(), zipped, hooks(), snapshot=True)
    assert record["verified"] and (here / f"var/backups/zips/blobstorage/{record['stamp']}.tar").is_file()
    assert not (here / "var/backups/filestorage").exists()  # apart from the regular chain
    commit(here / "var/filestorage/Data.fs", here / "var/blobstorage", second=b"after the zip")
    backups.make_backup(invoke.Context(), zipped, hooks(), snapshot=True)  # keep = 1: the first goes
    assert [p.name for p in (here / "var/backups/zips/blobstorage").iterdir()] != [f"{record['stamp']}.tar"]
    assert len(list((here / "var/backups/zips/blobstorage").iterdir())) == 1
    restores.restore_backup(invoke.Context(), zipped, hooks(), snapshot=True)
    assert state(here / "var/filestorage/Data.fs", here / "var/blobstorage") == {"first": b"first blob",
                                                                                 "second": b"after the zip"}


def test_altrestore_from_a_copied_directory_restores_that_copy(here, tmp_path_factory):
    settings = backups.local_settings(here)
    backups.make_backup(invoke.Context(), settings, hooks())
    then = state(here / "var/filestorage/Data.fs", here / "var/blobstorage")
    elsewhere = tmp_path_factory.mktemp("copied") / "backups"
    shutil.copytree(here / "var/backups", elsewhere, symlinks=True)
    shutil.rmtree(here / "var/backups")  # the site's own backups are gone
    commit(here / "var/filestorage/Data.fs", here / "var/blobstorage", second=b"lost")
    record = restores.restore_backup(invoke.Context(), variant(settings, source=str(elsewhere)), hooks())
    assert state(here / "var/filestorage/Data.fs", here / "var/blobstorage") == then
    assert record["stamp"] in {p.stem for p in (elsewhere / "records").iterdir()}


def test_incremental_blobs_archive_only_what_changed_and_restore_each_date(here):
    settings = backups.local_settings(here, blob_archive="tar", incremental_blobs=True)
    fs, blobs = here / "var/filestorage/Data.fs", here / "var/blobstorage"
    full = backups.make_backup(invoke.Context(), settings, hooks())
    at_full = state(fs, blobs)
    commit(fs, blobs, second=b"second blob " * 1000)
    delta = backups.make_backup(invoke.Context(), settings, hooks())
    at_delta = state(fs, blobs)
    commit(fs, blobs, third=b"third blob")
    later = backups.make_backup(invoke.Context(), settings, hooks())
    at_later = state(fs, blobs)
    location = here / "var/backups/blobstorage"
    names = sorted(p.name for p in location.iterdir())
    assert names == sorted([f"{full['stamp']}.tar", f"{full['stamp']}.snar", f"{delta['stamp']}.delta.tar",
                            f"{delta['stamp']}.snar", f"{later['stamp']}.delta.tar", f"{later['stamp']}.snar"])
    assert all(record["verified"] for record in (full, delta, later))
    listed = subprocess.run(["tar", "-tvf", str(location / f"{later['stamp']}.delta.tar")], capture_output=True,
                            text=True, check=True).stdout
    assert listed.count(".blob") == 1  # the third blob only, not the first two
    for record, expected in ((delta, at_delta), (full, at_full), (later, at_later)):
        restores.restore_backup(invoke.Context(), settings, hooks(), date=record["stamp"])
        assert state(fs, blobs) == expected
        assert len(list(blobs.rglob("*.blob"))) == len(expected)  # no blob of a later delta


def test_only_blobs_backs_up_and_restores_the_blobstorage_and_nothing_else(here):
    settings = backups.local_settings(here, only_blobs=True)
    record = backups.make_backup(invoke.Context(), settings, hooks())
    assert record["verified"] and record["kind"] == "blobs"
    assert not (here / "var/backups/filestorage").exists()
    blobs = {p.relative_to(here / "var/blobstorage"): p.read_bytes()
             for p in (here / "var/blobstorage").rglob("*.blob")}
    for blob in (here / "var/blobstorage").rglob("*.blob"):
        blob.chmod(0o600)
        blob.write_bytes(b"damaged")
    data_fs = (here / "var/filestorage/Data.fs").read_bytes()
    restores.restore_backup(invoke.Context(), settings, hooks())
    assert {p.relative_to(here / "var/blobstorage"): p.read_bytes()
            for p in (here / "var/blobstorage").rglob("*.blob")} == blobs
    assert (here / "var/filestorage/Data.fs").read_bytes() == data_fs  # untouched


# -- a deployed site with a real CRB part, on the sandbox --------------------

CRB_PART = """
[backup]
recipe = collective.recipe.backup
location = ${buildout:directory}/var/crb/backups
blobbackuplocation = ${buildout:directory}/var/crb/blobbackups
snapshotlocation = ${buildout:directory}/var/crb/snapshots
blobsnapshotlocation = ${buildout:directory}/var/crb/blobsnapshots
ziplocation = ${buildout:directory}/var/crb/zips
blobziplocation = ${buildout:directory}/var/crb/blobzips
blob_storage = ${buildout:directory}/var/blobstorage
keep = 3
additional_filestorages =
    catalog ${buildout:directory}/var/filestorage/catalog.fs ${buildout:directory}/var/blobstorage-catalog
    extra ${buildout:directory}/var/filestorage/extra.fs ${buildout:directory}/var/blobstorage-extra
"""
EXTRA = ("catalog", "extra")


@pytest.fixture(scope="module")
def site(sandbox_host, tmp_path_factory):
    test_site = make_site(tmp_path_factory.mktemp("crb"), sandbox_host)
    base = test_site.buildout / "base.cfg"
    base.write_text(base.read_text().replace("    repozo\n", "    repozo\n    backup\n", 1) + CRB_PART)
    versions = test_site.buildout / "versions.cfg"
    versions.write_text(versions.read_text() + "collective.recipe.backup = 6.0.0\n")
    assert "[backup]" not in (test_site.workdir / "hostconfigs" / "test.cfg").read_text()
    test_site.fab("deploy")
    yield test_site
    test_site.stop_everything()


def extra_state(site) -> dict[str, dict[str, bytes]]:
    var = site.root / "var"
    return {name: state(var / f"filestorage/{name}.fs", var / f"blobstorage-{name}") for name in EXTRA}


def change(site, label: str) -> None:
    site.add(label, f"{label} bytes")
    for name in EXTRA:
        var = site.root / "var"
        commit(var / f"filestorage/{name}.fs", var / f"blobstorage-{name}", **{label: f"{name} {label}".encode()})


def records(site) -> list[str]:
    return sorted(p.stem for p in (site.root / "backups" / "records").glob("*.json"))


def test_the_crb_part_is_real_and_the_hostconfig_has_no_backup_section(site):
    assert (site.root / "current" / "bin" / "backup").is_file()  # the recipe ran in the build
    config = hostconfig.load(site.workdir / "hostconfigs" / "test.cfg", environ={})
    assert config.backup_keep == 3 and len(config.backup_additional_filestorages) == 2


def test_the_crb_part_backs_up_restores_by_date_and_snapshot_restores(site):
    change(site, "first")
    site.fab("backup")
    first, first_extra = site.objects(), extra_state(site)
    change(site, "second")
    site.fab("backup")
    crb_dir = site.root / "var" / "crb"
    assert {p.name for p in crb_dir.iterdir()} >= {"backups", "backups-catalog", "backups-extra", "blobbackups",
                                                   "blobbackups-catalog", "blobbackups-extra"}
    stamp = records(site)[0]
    for blobs in ("blobbackups", "blobbackups-catalog", "blobbackups-extra"):
        assert (crb_dir / blobs / stamp).is_dir()
    site.fab("restore", stamp, "--no-prompt")
    assert site.objects() == first and extra_state(site) == first_extra
    site.fab("backup", "--snapshot")
    snapshot, snapshot_extra = site.objects(), extra_state(site)
    change(site, "after the snapshot")
    site.fab("restore", "--snapshot", "--no-prompt")
    assert site.objects() == snapshot and extra_state(site) == snapshot_extra
    assert (crb_dir / "snapshots-catalog").is_dir() and (crb_dir / "blobsnapshots-extra").is_dir()


def test_keep_3_keeps_three_full_backups(site):
    for index in range(4):
        change(site, f"full {index}")
        site.fab("backup", "--full")
    for location in ("backups", "backups-catalog", "backups-extra"):
        fulls = [p for p in (site.root / "var/crb" / location).iterdir() if p.name.endswith((".fs", ".fsz"))]
        assert len(fulls) == 3, location
    assert len(list((site.root / "var/crb/blobbackups-extra").iterdir())) == 3


def test_restore_without_a_date_restores_the_newest(site):
    change(site, "kept")
    site.fab("backup")
    kept = site.objects()
    change(site, "lost")
    site.fab("restore", "--no-prompt")
    assert site.objects() == kept


def test_zipbackup_and_ziprestore_on_the_host(site):
    change(site, "zipped")
    site.fab("backup", "--zip")
    zipped, zipped_extra = site.objects(), extra_state(site)
    assert [p.suffix for p in (site.root / "var/crb/blobzips").iterdir()] == [".tar"]
    assert len(list((site.root / "var/crb/blobzips-catalog").iterdir())) == 1
    change(site, "after the zip")
    site.fab("restore", "--zip", "--no-prompt")
    assert site.objects() == zipped and extra_state(site) == zipped_extra


def test_altrestore_from_a_copy_of_the_backups_on_the_host(site, tmp_path):
    change(site, "copied")
    site.fab("backup")
    copied = site.objects()
    copy = tmp_path / "copy"
    copy.mkdir()
    for location in ("backups", "backups-catalog", "backups-extra", "blobbackups", "blobbackups-catalog",
                     "blobbackups-extra"):
        shutil.copytree(site.root / "var/crb" / location, copy / location, symlinks=True)
    shutil.copytree(site.root / "backups/records", copy / "records")
    change(site, "not in the copy")
    site.fab("backup")
    site.fab("restore", "--from", str(copy), "--no-prompt")
    assert site.objects() == copied


def test_invoke_backup_on_the_site_writes_into_the_chain_fab_backup_writes(site):
    change(site, "by invoke")
    before = records(site)
    result = subprocess.run([INVOKE, "backup", "--directory", str(site.root)], cwd=REPO, capture_output=True,
                            text=True, timeout=300, env={**os.environ, **site.env})
    assert result.returncode == 0, result.stderr
    made = sorted(set(records(site)) - set(before))
    assert len(made) == 1 and not (site.root / "backups" / "filestorage").exists()  # the part's locations
    assert made[0][:10] in site.fab("backups").stdout
    # the default host, as in a fresh clone after make demo: hostconfigs/sandbox.cfg names this site
    configs = site.workdir / "hostconfigs"
    shutil.copy(configs / "test.cfg", configs / "sandbox.cfg")
    change(site, "by invoke --full")
    result = subprocess.run([INVOKE, "backup", "--full"], cwd=REPO, capture_output=True, text=True, timeout=300,
                            env={**os.environ, **site.env})
    assert result.returncode == 0, result.stderr
    newest = records(site)[-1]
    assert (site.root / "var/crb/backups" / f"{newest}.fsz").is_file()
    site.fab("restore", "--no-prompt")
    assert any(o["title"] == "by invoke --full" for o in site.objects())
