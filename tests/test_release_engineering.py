"""Unit tests: egg versions, dirty checkouts, the production checks, bundled files, host platforms."""
import subprocess
from datetime import datetime, timezone
from pathlib import Path

import pytest

from fabfile.buildout import profile as buildoutfiles
from fabfile.build import bundle, dists, eggs
from fabfile.build.platforms import Target

NOW = datetime(2026, 11, 22, 3, 15, 0, tzinfo=timezone.utc)


def test_a_new_source_gets_a_post_release_that_sorts_after_the_earlier_ones():
    from packaging.version import Version
    version = eggs.release_version("1.0", "3f2a9c1d" + "0" * 56, [], NOW)
    assert version == "1.0.post20261122031500+src.3f2a9c1d"
    assert Version(version) > Version("1.0.post20261121000000+src.ffffffff") > Version("1.0")


def test_the_same_source_keeps_its_version():
    known = ["1.0.post20261101000000+src.3f2a9c1d", "2.0"]
    assert eggs.release_version("1.0", "3f2a9c1d" + "0" * 56, known, NOW) == known[0]


def test_dirty_files_lists_uncommitted_and_untracked_files(tmp_path):
    git = lambda *args: subprocess.run(["git", "-C", str(tmp_path), *args], check=True, capture_output=True)
    git("init", "-q")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "--allow-empty", "-m", "start")
    egg = tmp_path / "src" / "app"
    egg.mkdir(parents=True)
    (egg / "a.py").write_text("x = 1\n")
    git("add", ".")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "app")
    assert eggs.dirty_files(egg) == []
    (egg / "a.py").write_text("x = 2\n")
    (egg / "new.py").write_text("")
    assert eggs.dirty_files(egg) == ["src/app/a.py", "src/app/new.py"]


def test_a_plain_directory_is_never_dirty(tmp_path):
    (tmp_path / "a.py").write_text("")
    assert eggs.dirty_files(tmp_path) == []


def profile(tmp_path: Path, text: str) -> buildoutfiles.Profile:
    (tmp_path / "base.cfg").write_text("[buildout]\nparts = app\n[app]\ntemplate = templates/app.conf.in\n")
    (tmp_path / "templates").mkdir(exist_ok=True)
    (tmp_path / "templates" / "app.conf.in").write_text("x")
    (tmp_path / "production.cfg").write_text(text)
    return buildoutfiles.read_profile(tmp_path / "production.cfg")


@pytest.mark.parametrize("text, culprit", [
    ("[buildout]\nextends = base.cfg\ndevelop = src/app\nallow-picked-versions = false\n", r"no .develop =. \(src/app\)"),
    ("[buildout]\nextends = base.cfg\n", "allow-picked-versions = false"),
    ("[buildout]\nextends = base.cfg\nallow-picked-versions = true\n", "allow-picked-versions = false"),
    ("[buildout]\nextends = base.cfg\nallow-picked-versions = false\nextensions = mr.developer\n"
     "auto-checkout = my.package\n", "mr.developer checks out my.package"),
])
def test_a_production_profile_that_could_pick_or_develop_is_refused(tmp_path, text, culprit):
    with pytest.raises(buildoutfiles.ProfileError, match=culprit):
        bundle.check_production(profile(tmp_path, text), "production.cfg")


def test_the_bundle_holds_the_profile_and_the_files_it_names_never_data_or_secrets(tmp_path):
    loaded = profile(tmp_path, "[buildout]\nextends = base.cfg\nallow-picked-versions = false\n"
                               "[secrets]\nfile = .env\ndata = var/Data.fs\n")
    (tmp_path / ".env").write_text("TOKEN=x")
    (tmp_path / "var").mkdir()
    (tmp_path / "var" / "Data.fs").write_text("data")
    names = [p.relative_to(tmp_path).as_posix() for p in buildoutfiles.bundled_files(loaded, tmp_path)]
    assert names == ["base.cfg", "production.cfg", "templates/app.conf.in"]


def test_extends_with_plus_equals_and_versions(tmp_path):
    (tmp_path / "versions.cfg").write_text("[versions]\nZODB = 6.4\nwaitress = 3.0.2\n")
    (tmp_path / "p.cfg").write_text("[buildout]\nextends = versions.cfg\nparts = a\nparts += b\n"
                                    "[versions]\nwaitress = 3.0.1\n")
    loaded = buildoutfiles.read_profile(tmp_path / "p.cfg")
    assert loaded.versions == {"ZODB": "6.4", "waitress": "3.0.1"}
    assert loaded.option("buildout", "parts").split() == ["a", "b"]
    assert [p.name for p in loaded.files] == ["versions.cfg", "p.cfg"]


def test_a_host_target_accepts_its_wheels_and_refuses_others():
    host = Target("3.11.2", "x86_64", "2.36")
    assert dists.runs_on("zope_interface-8.7-cp311-cp311-manylinux2014_x86_64.manylinux_2_17_x86_64.whl", host)
    assert dists.runs_on("waitress-3.0.2-py3-none-any.whl", host)
    assert not dists.runs_on("zope_interface-8.7-cp312-cp312-manylinux_2_17_x86_64.whl", host)
    assert not dists.runs_on("zope_interface-8.7-cp311-cp311-manylinux_2_17_aarch64.whl", host)
    assert not dists.runs_on("x-1.0-cp311-cp311-manylinux_2_38_x86_64.whl", host)  # needs a newer glibc
    assert dists.runs_on("x-1.0.tar.gz", host)
    assert "manylinux2014_x86_64" in host.platforms and host.platforms[-1] == "linux_x86_64"
    assert host.key == "cp311-x86_64-glibc2.36"


def test_the_cache_is_read_once_for_every_pin_and_a_wheel_for_the_host_comes_before_the_sdist(tmp_path):
    host = Target("3.11.2", "x86_64", "2.36")
    for name in ("Zope.Interface-8.7.tar.gz", "zope_interface-8.7-cp311-cp311-manylinux_2_17_x86_64.whl",
                 "zope_interface-8.7-cp312-cp312-manylinux_2_17_x86_64.whl", "waitress-3.0.2.tar.gz", "notes.txt"):
        (tmp_path / name).write_text("")
    on_disk = dists.index(tmp_path)
    assert sorted(len(paths) for paths in on_disk.values()) == [1, 3]
    for files in (on_disk, None):  # None: read the directory itself
        assert dists.cached(tmp_path, "zope.interface", "8.7", host, files).name.startswith("zope_interface-8.7-cp311")
        assert dists.cached(tmp_path, "Waitress", "3.0.2", host, files).name == "waitress-3.0.2.tar.gz"
        assert dists.cached(tmp_path, "waitress", "3.0.3", host, files) is None


def test_mr_developer_checkouts_are_develop_eggs(tmp_path):
    (tmp_path / "development.cfg").write_text(
        "[buildout]\nextensions = mr.developer\nauto-checkout = my.app\ndevelop = src/other\n"
        "[sources]\nmy.app = git https://example.org/my.app.git\nnot.checked = git https://x/y.git\n")
    assert buildoutfiles.read_profile(tmp_path / "development.cfg").develop == ("src/other", "src/my.app")
