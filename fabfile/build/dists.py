"""The distributions a release needs, fetched once into the local cache.

Third-party pins are downloaded with ``pip download --no-deps`` (wheels where
there are, sdists otherwise) and never again: the cache is keyed by name and version.
Every file a release takes must accept the host's Python: its own metadata's
``Requires-Python`` (a wheel's METADATA, an sdist's PKG-INFO) is checked against the
host's full version, so a pin that needs a newer Python stops the deploy here, naming
it, before anything is sent.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
import tarfile
import zipfile
from dataclasses import dataclass
from email.parser import HeaderParser
from pathlib import Path

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import InvalidSdistFilename, InvalidWheelFilename, canonicalize_name
from packaging.utils import parse_sdist_filename, parse_wheel_filename
from packaging.version import InvalidVersion, Version

from .platforms import Target

# What runs buildout and the services on the host, next to the site's own pins.
HOST_TOOLS = ("zc.buildout", "setuptools", "pip", "wheel")
SUPERVISOR_PIN = ("supervisor", "4.3.0")
IGNORE_REQUIRES_PYTHON = "--ignore-requires-python"  # checked by check_python, against the host's Python
REQUIRES_PYTHON_CACHE = "requires-python.json"       # file name -> its Requires-Python: files never change


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


def index(cache: Path) -> dict[tuple[str, Version], list[Path]]:
    """The cache's files by ``(canonical name, version)``: its directory read and each name parsed once."""
    found: dict[tuple[str, Version], list[Path]] = {}
    for path in cache.glob("*"):
        key = identify(path.name)
        if key:
            found.setdefault(key, []).append(path)
    return found


def cached(cache: Path, name: str, version: str, target: Target,
           files: dict[tuple[str, Version], list[Path]] | None = None) -> Path | None:
    """The cached file for ``name==version`` that runs on ``target``: a wheel before an sdist; ``files``:
    the cache's ``index`` (read again when not given)."""
    files = index(cache) if files is None else files
    matches = [p for p in files.get((canonicalize_name(name), Version(version)), ()) if runs_on(p.name, target)]
    return sorted(matches, key=lambda p: (not p.name.endswith(".whl"), p.name))[0] if matches else None


def runs_on(filename: str, target: Target) -> bool:
    """Whether a wheel's tags fit ``target`` (an sdist builds anywhere)."""
    if not filename.endswith(".whl"):
        return True
    return not parse_wheel_filename(filename)[3].isdisjoint(target.tags)


def fetch(pins: dict[str, str], cache: Path, target: Target) -> list[Path]:
    """The files for every pin on ``target``: cached ones, then wheels for it, then sdists;
    each checked to accept the host's Python."""
    cache.mkdir(parents=True, exist_ok=True)
    # one read of the cache for every pin (a fleet bundles once per host: pins x files parsed each time)
    on_disk = index(cache)
    missing = [f"{n}=={v}" for n, v in sorted(pins.items()) if not cached(cache, n, v, target, on_disk)]
    # Requires-Python is checked below from each file's own metadata, against the host's full
    # version: pip's check (with --python-version X.Y) would skip a wheel for 3.11.5 on 3.11.2
    # and fall back to the sdist, which then fails deep in buildout on the host.
    wheels = [*target.pip_arguments(), IGNORE_REQUIRES_PYTHON]
    if missing and _download(missing, cache, wheels):
        # one of them has no wheel for the target: find which, and take its sdist
        for requirement in missing:
            name, version = requirement.split("==")
            if cached(cache, name, version, target):
                continue
            if _download([requirement], cache, wheels) and \
                    _download([requirement], cache, ["--no-binary=:all:", IGNORE_REQUIRES_PYTHON]):
                raise DistError(f"no distribution of {requirement} for the host's Python "
                                f"{target.python} on {target.machine} (glibc {target.glibc}), "
                                f"neither a wheel nor an sdist")
    known = index(cache) if missing else on_disk  # read again when pip added files
    files = {}
    for name, version in sorted(pins.items()):
        path = cached(cache, name, version, target, known)
        if path is None:
            raise DistError(f"no distribution of {name}=={version} for {target.key} after download")
        files[f"{name}=={version}"] = path
    check_python(files, cache, target)
    return list(files.values())


def check_python(files: dict[str, Path], cache: Path, target: Target) -> None:
    """Stop, naming each pin, the Python it needs and the host's, when a file's Requires-Python
    excludes the host's interpreter."""
    known = _read_json(cache / REQUIRES_PYTHON_CACHE)
    refused = []
    for pin, path in files.items():
        if path.name not in known:
            known[path.name] = requires_python(path)
        needs = known[path.name]
        if needs and not target.accepts(needs):
            refused.append(f"{pin} needs Python {needs} ({path.name}); the host has Python {target.python}")
    known = {name: needs for name, needs in known.items() if (cache / name).is_file()}
    try:  # written aside and renamed: another deploy from this machine may read it now
        written = cache / f"{REQUIRES_PYTHON_CACHE}.{os.getpid()}"
        written.write_text(json.dumps(known, indent=0, sort_keys=True))
        written.replace(cache / REQUIRES_PYTHON_CACHE)
    except OSError:
        pass  # only a cache: the next run reads the metadata again
    if refused:
        raise DistError("\n".join([*refused, "pin a version that supports the host's Python, "
                                               "or give the host a newer Python"]))


def requires_python(path: Path) -> str:
    """The ``Requires-Python`` of a wheel (its METADATA) or an sdist (its PKG-INFO); '' when none."""
    return (metadata(path).get("Requires-Python") or "").strip()


def dependencies(path: Path, target: Target) -> list[str]:
    """The canonical names a distribution needs on ``target`` (its ``Requires-Dist``, markers
    evaluated for the host's Python; no extras)."""
    python = re.match(r"\d+(\.\d+)*", target.python)
    environment = {"python_version": target.python_version,
                   "python_full_version": python.group(0) if python else target.python_version,
                   "platform_machine": target.machine, "sys_platform": "linux", "platform_system": "Linux",
                   "os_name": "posix", "implementation_name": "cpython",
                   "platform_python_implementation": "CPython", "extra": ""}
    names = []
    for line in metadata(path).get_all("Requires-Dist") or []:
        try:
            requirement = Requirement(line)
        except InvalidRequirement:
            continue
        if requirement.marker is None or requirement.marker.evaluate(environment):
            names.append(canonicalize_name(requirement.name))
    return names


def closure(names: dict[str, str], pins: dict[str, str], cache: Path, target: Target) -> list[Path]:
    """The files of ``names`` (name -> version) and of every pinned distribution they need, fetched."""
    by_name = {canonicalize_name(name): (name, version) for name, version in pins.items()}
    wanted, files = dict(names), {}
    while set(wanted) - set(files):
        fresh = {name: version for name, version in wanted.items() if name not in files}
        for (name, version), path in zip(sorted(fresh.items()), fetch(fresh, cache, target)):
            files[name] = path
            for needed in dependencies(path, target):
                if needed in by_name and by_name[needed][0] not in wanted:
                    wanted[by_name[needed][0]] = by_name[needed][1]
    return sorted(files.values())


def metadata(path: Path):
    """The metadata of a wheel (METADATA) or an sdist (PKG-INFO), parsed; empty when it has none."""
    text = ""
    try:
        if path.name.endswith(".whl"):
            with zipfile.ZipFile(path) as archive:
                name = next((n for n in archive.namelist()
                             if n.count("/") == 1 and n.endswith(".dist-info/METADATA")), None)
                text = archive.read(name).decode("utf-8", "replace") if name else ""
        elif path.name.endswith(".zip"):
            with zipfile.ZipFile(path) as archive:
                name = next((n for n in archive.namelist() if n.count("/") == 1 and n.endswith("/PKG-INFO")), None)
                text = archive.read(name).decode("utf-8", "replace") if name else ""
        elif path.name.endswith(".tar.gz"):
            with tarfile.open(path) as archive:
                for member in archive:
                    if member.isfile() and member.name.count("/") == 1 and member.name.endswith("/PKG-INFO"):
                        text = archive.extractfile(member).read().decode("utf-8", "replace")
                        break
    except (OSError, zipfile.BadZipFile, tarfile.TarError, KeyError) as error:
        raise DistError(f"cannot read the metadata of {path}: {error}") from None
    return HeaderParser().parsestr(text)


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


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
