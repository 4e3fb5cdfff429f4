"""The distributions a release needs, fetched once into the local cache.

Third-party pins are downloaded with ``pip download --no-deps`` (wheels where
there are, sdists otherwise) and never again: the cache is keyed by name and version.
"""
from __future__ import annotations

import hashlib
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from packaging.utils import InvalidSdistFilename, InvalidWheelFilename, canonicalize_name
from packaging.utils import parse_sdist_filename, parse_wheel_filename
from packaging.version import InvalidVersion, Version

# What runs buildout and the services on the host, next to the site's own pins.
HOST_TOOLS = ("zc.buildout", "setuptools", "pip", "wheel")
SUPERVISOR_PIN = ("supervisor", "4.3.0")


class DistError(Exception):
    """A distribution that cannot be had."""


@dataclass(frozen=True)
class Dist:
    path: Path
    sha256: str

    @property
    def name(self) -> str:
        return self.path.name


def identify(filename: str) -> tuple[str, Version] | None:
    """``(canonical name, version)`` of a wheel or sdist file name, else None."""
    try:
        if filename.endswith(".whl"):
            name, version, _, _ = parse_wheel_filename(filename)
            return canonicalize_name(name), version
        if filename.endswith((".tar.gz", ".zip")):
            name, version = parse_sdist_filename(filename)
            return canonicalize_name(name), version
    except (InvalidWheelFilename, InvalidSdistFilename, InvalidVersion):
        return None
    return None


def cached(cache: Path, name: str, version: str) -> Path | None:
    """The cached file for ``name==version``, a wheel before an sdist."""
    wanted = (canonicalize_name(name), Version(version))
    matches = [p for p in cache.glob("*") if identify(p.name) == wanted] if cache.is_dir() else []
    return sorted(matches, key=lambda p: (not p.name.endswith(".whl"), p.name))[0] if matches else None


def fetch(pins: dict[str, str], cache: Path) -> list[Path]:
    """The files for every pin, downloading the missing ones in one pip run."""
    cache.mkdir(parents=True, exist_ok=True)
    missing = [f"{name}=={version}" for name, version in sorted(pins.items()) if not cached(cache, name, version)]
    if missing:
        result = subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", str(cache), *missing],
            capture_output=True, text=True,
        )
        if result.returncode:
            raise DistError(f"cannot download {', '.join(missing)}:\n{result.stderr.strip()}")
    files = []
    for name, version in sorted(pins.items()):
        path = cached(cache, name, version)
        if path is None:
            raise DistError(f"no distribution for {name}=={version} after download")
        files.append(path)
    return files


def sha256(path: Path) -> str:
    """The hex sha256 of a file."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def describe(paths: list[Path]) -> list[Dist]:
    """The files with their checksums, sorted by name."""
    return [Dist(p, sha256(p)) for p in sorted(paths, key=lambda p: p.name)]
