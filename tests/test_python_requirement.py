"""A pin whose files all need a newer Python than the host's stops the deploy before anything is
sent, naming the pin, the Python it needs and the host's (issue 14, item 7)."""
from __future__ import annotations

import io
import os
import platform
import tarfile
import zipfile
from pathlib import Path

import pytest

from fabfile.build import dists
from fabfile.build.platforms import Target
from sites import make_site

NAME, VERSION = "bd-needs-newer-python", "4.1.2"
MODULE = NAME.replace("-", "_")


def newer_than_this_python() -> str:
    """A Requires-Python that the sandbox host (this machine's python3) does not meet."""
    major, minor, micro = platform.python_version_tuple()
    return f">={major}.{minor}.{int(micro.rstrip('+')) + 1}"


def metadata(requires: str) -> str:
    return f"Metadata-Version: 2.1\nName: {NAME}\nVersion: {VERSION}\nRequires-Python: {requires}\n\n"


def make_wheel(directory: Path, requires: str) -> Path:
    """A pure-Python wheel whose METADATA says ``Requires-Python: requires``."""
    path = directory / f"{MODULE}-{VERSION}-py3-none-any.whl"
    info = f"{MODULE}-{VERSION}.dist-info"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr(f"{MODULE}.py", "")
        archive.writestr(f"{info}/METADATA", metadata(requires))
        archive.writestr(f"{info}/WHEEL",
                         "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
        archive.writestr(f"{info}/RECORD", f"{MODULE}.py,,\n{info}/METADATA,,\n{info}/WHEEL,,\n{info}/RECORD,,\n")
    return path


def make_sdist(directory: Path, requires: str) -> Path:
    """An sdist (setuptools, pyproject.toml) whose PKG-INFO says ``Requires-Python: requires``."""
    base = f"{MODULE}-{VERSION}"
    members = {
        f"{base}/PKG-INFO": metadata(requires),
        f"{base}/pyproject.toml": (
            f'[build-system]\nrequires = ["setuptools"]\nbuild-backend = "setuptools.build_meta"\n'
            f'[project]\nname = "{NAME}"\nversion = "{VERSION}"\nrequires-python = "{requires}"\n'
            f'[tool.setuptools]\npy-modules = ["{MODULE}"]\n'),
        f"{base}/{MODULE}.py": "",
    }
    path = directory / f"{base}.tar.gz"
    with tarfile.open(path, "w:gz") as archive:
        for name, text in members.items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return path


HOST = Target("3.11.2", "x86_64", "2.36")


@pytest.mark.parametrize("requires, accepted", [
    (">=3.11.5", False), (">=3.11", True), (">=3.11.2", True), (">=3.12", False), ("<3.11.2", False),
    ("~=3.8", True), ("", True), ("not a specifier", True),
])
def test_the_hosts_full_python_version_decides(requires, accepted):
    assert HOST.accepts(requires) is accepted


def test_a_debian_style_version_with_a_plus_is_read_as_its_release():
    assert Target("3.11.2+", "x86_64", "2.36").accepts(">=3.11.2")
    assert not Target("3.11.2+", "x86_64", "2.36").accepts(">=3.11.5")


@pytest.mark.parametrize("make", [make_wheel, make_sdist])
def test_requires_python_is_read_from_the_files_own_metadata(tmp_path, make):
    assert dists.requires_python(make(tmp_path, ">=3.11.5")) == ">=3.11.5"


def test_a_file_without_requires_python_fits_every_host(tmp_path):
    path = tmp_path / "plain-1.0-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("plain-1.0.dist-info/METADATA", "Metadata-Version: 2.1\nName: plain\nVersion: 1.0\n")
    assert dists.requires_python(path) == ""
    dists.check_python({"plain==1.0": path}, tmp_path, HOST)


def test_the_check_names_the_pin_the_python_it_needs_and_the_hosts(tmp_path):
    wheel = make_wheel(tmp_path, ">=3.11.5")
    with pytest.raises(dists.DistError) as raised:
        dists.check_python({f"{NAME}=={VERSION}": wheel}, tmp_path, HOST)
    message = str(raised.value)
    assert f"{NAME}=={VERSION} needs Python >=3.11.5" in message and "the host has Python 3.11.2" in message
    # what was read is kept, and the answer is the same from the cache
    assert (tmp_path / dists.REQUIRES_PYTHON_CACHE).is_file()
    wheel.unlink()
    with pytest.raises(dists.DistError, match="needs Python >=3.11.5"):
        dists.check_python({f"{NAME}=={VERSION}": wheel}, tmp_path, HOST)


# -- integration: fab deploy to the sandbox host ------------------------------

@pytest.mark.parametrize("make", [make_wheel, make_sdist], ids=["wheel-only", "sdist-only"])
def test_a_pin_that_needs_a_newer_python_stops_the_deploy_before_anything_is_sent(sandbox_host, tmp_path, make):
    from fabfile.paths import CACHE
    for old in (CACHE / "dists").glob(f"{MODULE}-*"):  # a file an earlier run left: fetch it anew
        old.unlink()
    offered = tmp_path / "offered"
    offered.mkdir()
    needs = newer_than_this_python()
    make(offered, needs)
    site = make_site(tmp_path, sandbox_host)
    versions = site.buildout / "versions.cfg"
    versions.write_text(versions.read_text() + f"{NAME} = {VERSION}\n")
    site.env["PIP_FIND_LINKS"] = " ".join(filter(None, [os.environ.get("PIP_FIND_LINKS"), str(offered)]))
    try:
        result = site.fab("deploy", check=False)
        output = result.stdout + result.stderr
        assert result.returncode in (1, 2), output
        assert "Traceback" not in output
        assert f"{NAME}=={VERSION} needs Python {needs}" in output
        assert f"the host has Python {platform.python_version()}" in output
        releases = site.root / "releases"
        assert not releases.exists() or not [p for p in releases.iterdir() if not p.name.startswith(".")]
        assert not (site.root / "dists").exists() or not [p for p in (site.root / "dists").rglob("*") if p.is_file()]
    finally:
        for left in (CACHE / "dists").glob(f"{MODULE}-*"):
            left.unlink()
