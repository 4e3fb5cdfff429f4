"""Unit tests: release ids, bundles, retention and re-versioned wheels."""
import zipfile
from datetime import datetime, timezone

from fabfile.build import bundle, eggs
from fabfile.pipeline import releases
from fabfile.remote.site import Release

BUILT = {"who": "ann", "when": "2026-11-22T03:15:00+00:00"}


def rel(name, built=True, bad=False):
    return Release(name, BUILT if built else None, {"reason": "health"} if bad else None)


def test_release_id_is_utc_time_and_hash():
    moment = datetime(2026, 11, 22, 4, 15, tzinfo=timezone(__import__("datetime").timedelta(hours=1)))
    assert bundle.release_id("3f2a9c1d0000", moment) == "20261122T031500Z-3f2a9c1d"
    assert bundle.digest_of("20261122T031500Z-3f2a9c1d") == "3f2a9c1d"


def test_tarball_is_the_same_bytes_for_the_same_input():
    one = bundle.reproducible_tarball({"b.cfg": b"b", "a.cfg": b"a", "etc/x.conf": b"x"})
    two = bundle.reproducible_tarball({"etc/x.conf": b"x", "a.cfg": b"a", "b.cfg": b"b"})
    assert one == two
    assert one != bundle.reproducible_tarball({"a.cfg": b"A", "b.cfg": b"b", "etc/x.conf": b"x"})


def test_previous_good_skips_bad_and_unbuilt_releases():
    history = (rel("20261101T000000Z-aaaaaaaa"), rel("20261102T000000Z-bbbbbbbb", bad=True),
               rel("20261103T000000Z-cccccccc", built=False), rel("20261104T000000Z-dddddddd"))
    assert releases.previous_good(history, "20261104T000000Z-dddddddd").id == "20261101T000000Z-aaaaaaaa"
    assert releases.previous_good(history, "20261101T000000Z-aaaaaaaa") is None


def test_cleanup_keeps_newest_current_and_previous_good():
    history = tuple(rel(f"2026110{i}T000000Z-0000000{i}") for i in range(1, 8))
    current = "20261103T000000Z-00000003"
    doomed = releases.releases_to_remove(history, current, keep=2)
    # keeps 06 and 07 (newest), 03 (current), 02 (previous good)
    assert doomed == ["20261101T000000Z-00000001", "20261104T000000Z-00000004", "20261105T000000Z-00000005"]


def test_cleanup_removes_half_built_releases_but_not_the_one_being_built():
    history = (rel("20261101T000000Z-00000001"), rel("20261102T000000Z-00000002", built=False),
               rel("20261103T000000Z-00000003", built=False))
    doomed = releases.releases_to_remove(history, "20261101T000000Z-00000001", keep=5,
                                         building="20261103T000000Z-00000003")
    assert doomed == ["20261102T000000Z-00000002"]


def test_source_hash_changes_with_content_names_and_modes(tmp_path):
    (tmp_path / "pkg").mkdir()
    module = tmp_path / "pkg" / "m.py"
    module.write_text("x = 1\n")
    first = eggs.source_hash(tmp_path)
    (tmp_path / "pkg" / "__pycache__").mkdir()
    (tmp_path / "pkg" / "__pycache__" / "m.pyc").write_bytes(b"junk")
    assert eggs.source_hash(tmp_path) == first
    module.write_text("x = 2\n")
    changed = eggs.source_hash(tmp_path)
    assert changed != first
    module.chmod(0o755)
    assert eggs.source_hash(tmp_path) != changed
    (tmp_path / "pkg" / "new.py").write_text("")
    assert len({first, changed, eggs.source_hash(tmp_path)}) == 3


def test_reversioned_wheel_has_new_version_everywhere(tmp_path):
    wheel = tmp_path / "demo_app-1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        zf.writestr("demo_app/__init__.py", "")
        zf.writestr("demo_app-1.0.dist-info/METADATA", "Metadata-Version: 2.1\nName: demo-app\nVersion: 1.0\n")
        zf.writestr("demo_app-1.0.dist-info/RECORD", "")
    out = tmp_path / "out"
    out.mkdir()
    new = eggs.reversion_wheel(wheel, "1.0+src.3f2a9c1d", out)
    assert new.name == "demo_app-1.0+src.3f2a9c1d-py3-none-any.whl"
    with zipfile.ZipFile(new) as zf:
        assert "Version: 1.0+src.3f2a9c1d" in zf.read("demo_app-1.0+src.3f2a9c1d.dist-info/METADATA").decode()
        record = zf.read("demo_app-1.0+src.3f2a9c1d.dist-info/RECORD").decode()
    assert "demo_app/__init__.py,sha256=" in record
    again = eggs.reversion_wheel(wheel, "1.0+src.3f2a9c1d", tmp_path)
    assert again.read_bytes() == new.read_bytes()


def test_cleanup_keeps_the_release_a_warm_set_runs():
    made = tuple(Release(f"2026010{n}T000000Z-aaaaaaa{n}", {"when": "x"}, None) for n in range(1, 8))
    warm = made[0].id
    doomed = releases.releases_to_remove(made, made[-1].id, 2, running=(warm,))
    assert warm not in doomed and made[1].id in doomed
