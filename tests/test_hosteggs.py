"""A release's eggs installed in parallel before buildout (issue 21, item 4): the eggs are the ones
buildout makes itself, a file whose sha256 is not the recorded one is refused, and an interrupted
install leaves no egg that a later build would trust.

Each test builds a small buildout here, as the host does: this venv is the host's (the same pinned
zc.buildout, pip and setuptools), the distributions in a ``dists/`` with its ``SHA256SUMS``, the
release's ``manifest.json``, pip offline.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fabfile import onhost
from fabfile.build import dists, hosteggs, platforms, venv
from fabfile.config import hostconfig
from fabfile.paths import CACHE

VENV_BIN = Path(sys.executable).parent
# the venv's python as its buildout script names it (pip writes it into the RECORD of an egg's scripts)
PYTHON = (VENV_BIN / "buildout").read_text().splitlines()[0][2:].strip()
# a recipe, C extensions, a namespace package, console scripts; zope.interface is in this venv, as
# buildout's own tools are in the host's: buildout takes it from there, and so is it left
PINS = {"zc.recipe.egg": "6.0.0", "Acquisition": "6.4", "ExtensionClass": "6.5", "DateTime": "6.0",
        "pytz": "2026.6", "zope.deprecation": "6.0", "supervisor": "4.3.0", "zope.interface": "8.7"}
TOOLS = {"zc.buildout": "6.0.1", "setuptools": "84.2.1", "pip": "26.3", "wheel": "0.48.0"}


@pytest.fixture(scope="module")
def wheels() -> list[Path]:
    return dists.fetch(PINS, CACHE / "dists", platforms.this_machine())


def host(tmp_path: Path, wheels: list[Path]) -> tuple[Path, Path]:
    """A release directory and its dists: a buildout of ``PINS`` with eggs in ``<tmp>/eggs``."""
    store = tmp_path / "dists"
    store.mkdir(parents=True)
    sums = {}
    for wheel in wheels:
        shutil.copy(wheel, store / wheel.name)
        sums[wheel.name] = hashlib.sha256(wheel.read_bytes()).hexdigest()
    (store / "SHA256SUMS").write_text("".join(f"{d}  {n}\n" for n, d in sorted(sums.items())))
    release = tmp_path / "release"
    release.mkdir()
    (release / "manifest.json").write_text(json.dumps({"dists": sums, "tools": TOOLS}))
    (release / "deploy.cfg").write_text("\n".join([
        "[buildout]", "parts = app", f"eggs-directory = {tmp_path / 'eggs'}", f"index = {store}",
        f"find-links = {store}", "allow-picked-versions = false", "newest = false", "",
        "[app]", "recipe = zc.recipe.egg", "eggs = Acquisition\n    DateTime\n    zope.deprecation\n    supervisor", "",
        "[versions]", *(f"{name} = {version}" for name, version in sorted({**PINS, **TOOLS}.items())), ""]))
    return release, store


def environment(store: Path) -> dict[str, str]:
    return {**os.environ, **venv.PIP_OFFLINE, "PIP_FIND_LINKS": str(store)}


def buildout_alone(release: Path, store: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(VENV_BIN / "buildout"), "-c", "deploy.cfg"], cwd=release, capture_output=True,
                          text=True, env=environment(store))


def with_eggs_first(release: Path, store: Path, **options) -> subprocess.Popen | subprocess.CompletedProcess:
    command = [PYTHON, "-c", onhost.source("installeggs"), str(release.parent / "eggs"), "-", str(store),
               "manifest.json", "--", str(VENV_BIN / "buildout"), "-c", "deploy.cfg"]
    if options.get("background"):
        return subprocess.Popen(command, cwd=release, env=environment(store), start_new_session=True,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    return subprocess.run(command, cwd=release, capture_output=True, text=True, env=environment(store))


def tree(eggs: Path) -> dict[str, bytes]:
    """Every file of every egg buildout would read, with its bytes: bytecode by name only (it holds
    its source's time), the file pip installed from as ``DISTS/<file>`` (each test host has its own
    dists directory), RECORD without the lines of either."""
    found = {}
    dists_directory = str(eggs.parent.parent / "dists").encode()
    for egg in sorted(eggs.glob("*.egg")):
        for path in sorted(egg.rglob("*")):
            if path.is_dir():
                continue
            name = path.relative_to(eggs).as_posix()
            data = b"" if path.suffix == ".pyc" else path.read_bytes().replace(dists_directory, b"DISTS")
            if path.name == "RECORD":
                data = b"\n".join(line for line in data.splitlines()
                                  if b".pyc," not in line and b"direct_url.json," not in line)
            found[name] = data
    return found


def scripts(release: Path, eggs: Path) -> dict[str, str]:
    return {p.name: p.read_text().replace(str(eggs), "EGGS") for p in sorted((release / "bin").iterdir())}


def test_eggs_installed_before_buildout_are_the_eggs_buildout_makes_itself(tmp_path, wheels):
    alone, store = host(tmp_path / "alone", wheels)
    built = buildout_alone(alone, store)
    assert built.returncode == 0, built.stdout + built.stderr
    first, store = host(tmp_path / "first", wheels)
    result = with_eggs_first(first, store)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "eggs: 7 installed" in result.stdout
    assert "Getting distribution" not in result.stdout + result.stderr  # buildout found every egg there
    expected, made = tree(tmp_path / "alone" / "eggs" / "v5"), tree(tmp_path / "first" / "eggs" / "v5")
    assert sorted(made) == sorted(expected)
    assert made == expected
    # buildout puts the eggs it installed this run last on a script's path, the ones it found first:
    # the scripts are those of its next release on the same eggs, byte for byte
    warm = tmp_path / "alone" / "warm"
    warm.mkdir()
    shutil.copy(alone / "deploy.cfg", warm)
    assert buildout_alone(warm, store.parent.parent / "alone" / "dists").returncode == 0
    assert scripts(first, tmp_path / "first" / "eggs") == scripts(warm, tmp_path / "alone" / "eggs")
    again = with_eggs_first(first, store)  # nothing lacking: nothing installed, buildout runs
    assert again.returncode == 0 and "eggs: 0 installed" in again.stdout, again.stdout + again.stderr


def test_a_wheel_whose_sha256_is_not_the_recorded_one_is_refused_and_buildout_does_not_run(tmp_path, wheels):
    release, store = host(tmp_path, wheels)
    tampered = next(store.glob("datetime-*.whl"))
    tampered.write_bytes(tampered.read_bytes() + b"\0")
    result = with_eggs_first(release, store)
    assert result.returncode == 1
    assert f"{tampered} does not match its sha256" in result.stderr
    assert not list((tmp_path / "eggs" / "v5").glob("DateTime*")), "an egg from the tampered file"
    assert not (release / "bin").exists() and not (release / ".installed.cfg").exists()  # no buildout


def test_an_interrupted_install_leaves_whole_eggs_or_none_and_the_next_build_finishes(tmp_path, wheels):
    reference, store = host(tmp_path / "reference", wheels)
    assert with_eggs_first(reference, store).returncode == 0
    expected = tree(tmp_path / "reference" / "eggs" / "v5")
    release, store = host(tmp_path / "killed", wheels)
    eggs = tmp_path / "killed" / "eggs" / "v5"
    started = with_eggs_first(release, store, background=True)
    deadline = time.monotonic() + 60
    while not (eggs.is_dir() and any(not p.name.endswith(".egg") for p in eggs.iterdir())):  # one under way
        assert time.monotonic() < deadline and started.poll() is None, "no install seen"
        time.sleep(0.005)
    os.killpg(started.pid, signal.SIGKILL)  # a dropped connection's worst: no cleanup at all
    started.wait()
    left = tree(eggs)
    assert {name: data for name, data in expected.items() if name in left} == left  # each egg whole
    unfinished = [p.name for p in eggs.iterdir() if not p.name.endswith(".egg")]
    assert unfinished and all(name.startswith(".") for name in unfinished), unfinished  # buildout reads no dot-name
    finished = with_eggs_first(release, store)
    assert finished.returncode == 0, finished.stdout + finished.stderr
    assert tree(eggs) == expected


@pytest.mark.parametrize("profile, expected", [
    ("", ["-"]),
    ("eggs-directory-version = v6\n", ["v6"]),
    ("eggs-directory-version =\n", [""]),
    ("abi-tag-eggs = true\n", None),
])
def test_the_build_command_installs_the_eggs_then_becomes_buildout(tmp_path, profile, expected):
    (tmp_path / "buildout").mkdir()
    (tmp_path / "buildout" / "production.cfg").write_text(f"[buildout]\nparts =\n{profile}")
    (tmp_path / "site.cfg").write_text(f"[host]\naddress = 127.0.0.1\nroot = /srv/site\n"
                                       f"[buildout]\ndirectory = buildout\nconfig = production.cfg\n")
    config = hostconfig.resolve("site", tmp_path, environ={})
    command = hosteggs.build_command(config, "deploy.cfg")
    buildout = ["/srv/site/venv/bin/buildout", "-c", "deploy.cfg"]
    if expected is None:  # buildout names an ABI directory itself: it installs alone
        assert command == buildout
        return
    assert command == ["/srv/site/venv/bin/python", "-c", onhost.source("installeggs"), "/srv/site/eggs",
                       *expected, "/srv/site/dists", "manifest.json", "--", *buildout]
