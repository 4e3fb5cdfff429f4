"""release-eggs: develop eggs become wheels with a version of their own source.

An egg whose source changed gets ``<version>.post<UTC time>+src.<hash>``: it sorts
after every earlier release of the egg, and the hash in it finds the release again,
so the same source never gets two versions and an unchanged egg is never rebuilt.
Builds are reproducible (``SOURCE_DATE_EPOCH``, sorted zip entries, fixed times) and
run on a copy of the source, so the checkout stays clean.
"""
from __future__ import annotations

import base64
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Iterable
from datetime import datetime, timezone
from pathlib import Path

from packaging.utils import canonicalize_name, parse_wheel_filename

IGNORED_PARTS = {".git", ".hg", ".svn", "__pycache__", "build", "dist", ".tox", ".venv", ".pytest_cache"}
# 1980-01-01, the oldest time a zip file can hold: wheels built twice are identical
ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)


class EggBuildError(Exception):
    """A develop egg that does not build."""


def source_files(directory: Path) -> list[Path]:
    """The files that make an egg's source, sorted: no VCS, caches or build output."""
    found = []
    for path in directory.rglob("*"):
        relative = path.relative_to(directory)
        if any(part in IGNORED_PARTS or part.endswith(".egg-info") for part in relative.parts):
            continue
        if path.is_file() and not path.name.endswith((".pyc", ".pyo")):
            found.append(path)
    return sorted(found, key=lambda p: p.relative_to(directory).as_posix())


def source_hash(directory: Path) -> str:
    """sha256 over the source files' names, modes and bytes."""
    digest = hashlib.sha256()
    for path in source_files(directory):
        mode = "x" if os.access(path, os.X_OK) else "-"
        digest.update(f"{path.relative_to(directory).as_posix()}\0{mode}\0".encode())
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


def release_version(base: str, digest: str, known: Iterable[str], now: datetime | None = None) -> str:
    """The version this source gets: the one it already has among ``known``, else a new one."""
    label = f"+src.{digest[:8]}"
    for version in known:
        if version.endswith(label):
            return version
    now = (now or datetime.now(timezone.utc)).astimezone(timezone.utc)
    return f"{base.split('+')[0]}.post{now:%Y%m%d%H%M%S}{label}"


def dirty_files(directory: Path) -> list[str]:
    """Uncommitted or untracked source files in the egg's checkout (git, hg, svn); none for a plain directory."""
    probes = [
        (["git", "-C", str(directory), "rev-parse", "--is-inside-work-tree"],
         ["git", "-C", str(directory), "status", "--porcelain", "--untracked-files=all", "--", "."],
         lambda line: line[3:]),
        (["hg", "--cwd", str(directory), "root"], ["hg", "--cwd", str(directory), "status", "."],
         lambda line: line[2:]),
        (["svn", "info", str(directory)], ["svn", "status", str(directory)], lambda line: line[8:]),
    ]
    for probe, status, name in probes:
        if shutil.which(probe[0]) is None:
            continue
        if subprocess.run(probe, capture_output=True).returncode:
            continue
        result = subprocess.run(status, capture_output=True, text=True, check=True)
        return sorted(name(line).strip() for line in result.stdout.splitlines() if line.strip())
    return []


def build_develop_egg(directory: Path, cache: Path, known: Iterable[str] = ()) -> Path:
    """The wheel of the develop egg in ``directory``: from the cache when this source was released."""
    digest = source_hash(directory)
    cached = sorted(cache.glob(f"*+src.{digest[:8]}-*.whl"))
    if cached:
        return cached[0]
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as scratch:
        copy, out = Path(scratch) / "src", Path(scratch) / "out"
        for path in source_files(directory):
            target = copy / path.relative_to(directory)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, target)
        env = {**os.environ, "SOURCE_DATE_EPOCH": "315532800"}
        result = subprocess.run(
            [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
             "--no-index", "-q", "-w", str(out), str(copy)],
            capture_output=True, text=True, env=env,
        )
        wheels = list(out.glob("*.whl"))
        if result.returncode or len(wheels) != 1:
            raise EggBuildError(f"develop egg {directory} does not build:\n{result.stderr.strip()[-2000:]}")
        _, version, _, _ = parse_wheel_filename(wheels[0].name)
        return reversion_wheel(wheels[0], release_version(str(version), digest, known), cache)


def reversion_wheel(wheel: Path, new_version: str, outdir: Path) -> Path:
    """A copy of ``wheel`` in ``outdir`` with ``new_version``: dist-info, METADATA and RECORD."""
    name, version, _, _ = parse_wheel_filename(wheel.name)
    old_stem, tags = wheel.name[: -len(".whl")].split("-", 2)[:2], wheel.name[:-4].split("-", 2)[2]
    dist_name = old_stem[0]
    old_info, new_info = f"{dist_name}-{old_stem[1]}.dist-info", f"{dist_name}-{new_version}.dist-info"
    target = outdir / f"{dist_name}-{new_version}-{tags}.whl"
    records = []
    with zipfile.ZipFile(wheel) as source:
        members = {}
        for info in source.infolist():
            data = source.read(info)
            filename = info.filename
            if filename.startswith(old_info + "/"):
                filename = new_info + filename[len(old_info):]
                if filename == f"{new_info}/METADATA":
                    data = re.sub(rb"(?m)^Version: .*$", f"Version: {new_version}".encode(), data, count=1)
            if filename == f"{new_info}/RECORD":
                continue
            members[filename] = (data, info.external_attr)
    for filename, (data, _) in sorted(members.items()):
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        records.append(f"{filename},sha256={digest},{len(data)}")
    records.append(f"{new_info}/RECORD,,")
    members[f"{new_info}/RECORD"] = (("\n".join(records) + "\n").encode(), 0o644 << 16)
    temporary = target.with_suffix(".tmp")
    with zipfile.ZipFile(temporary, "w", zipfile.ZIP_DEFLATED) as out:
        for filename, (data, attributes) in sorted(members.items()):
            info = zipfile.ZipInfo(filename, ZIP_EPOCH)
            info.external_attr = attributes
            info.compress_type = zipfile.ZIP_DEFLATED
            out.writestr(info, data)
    temporary.replace(target)
    return target


def egg_name(wheel: Path) -> str:
    """The project name a wheel carries, canonical."""
    return canonicalize_name(parse_wheel_filename(wheel.name)[0])


def parse_version(wheel: Path) -> str:
    """The version a wheel carries."""
    return str(parse_wheel_filename(wheel.name)[1])
