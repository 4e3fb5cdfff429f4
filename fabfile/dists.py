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

from .platforms import Target

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


def cached(cache: Path, name: str, version: str, target: Target) -> Path | None:
    """The cached file for ``name==version`` that runs on ``target``: a wheel before an sdist."""
    wanted = (canonicalize_name(name), Version(version))
    matches = [p for p in cache.glob("*") if identify(p.name) == wanted and runs_on(p.name, target)]
    return sorted(matches, key=lambda p: (not p.name.endswith(".whl"), p.name))[0] if matches else None


def runs_on(filename: str, target: Target) -> bool:
    """Whether a wheel's tags fit ``target`` (an sdist builds anywhere)."""
    if not filename.endswith(".whl"):
        return True
    return not parse_wheel_filename(filename)[3].isdisjoint(target.tags)


def fetch(pins: dict[str, str], cache: Path, target: Target) -> list[Path]:
    """The files for every pin on ``target``: cached ones, then wheels for it, then sdists."""
    cache.mkdir(parents=True, exist_ok=True)
    missing = [f"{n}=={v}" for n, v in sorted(pins.items()) if not cached(cache, n, v, target)]
    if missing and _download(missing, cache, target.pip_arguments()):
        # one of them has no wheel for the target: find which, and take its sdist
        for requirement in missing:
            name, version = requirement.split("==")
            if cached(cache, name, version, target):
                continue
            if _download([requirement], cache, target.pip_arguments()) and \
                    _download([requirement], cache, ["--no-binary=:all:"]):
                raise DistError(f"no distribution of {requirement} for the host's Python "
                                f"{target.python} on {target.machine} (glibc {target.glibc}), "
                                f"neither a wheel nor an sdist")
    files = []
    for name, version in sorted(pins.items()):
        path = cached(cache, name, version, target)
        if path is None:
            raise DistError(f"no distribution of {name}=={version} for {target.key} after download")
        files.append(path)
    return files


def _download(requirements: list[str], cache: Path, options: list[str]) -> str:
    """Download into the cache; the error text, or '' when it worked."""
    result = subprocess.run(
        [sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", str(cache), *options, *requirements],
        capture_output=True, text=True,
    )
    return result.stderr.strip() if result.returncode else ""


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
