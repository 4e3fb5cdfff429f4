"""pin: ``versions.cfg`` with every distribution the production profile uses.

Buildout resolves it, not us: the production profile is built once in a scratch
directory with a fresh eggs directory and ``allow-picked-versions = true``; what lands
in that eggs directory (recipes and extensions included), plus the buildout tools
themselves, is what production needs. Each pin says which distributions require it.
"""
from __future__ import annotations

import email.parser
import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

from ..buildout import profile as buildoutfiles, remotefiles
from . import bundle, dists, eggs
from ..config.hostconfig import HostConfig

EGG_DIRECTORY = re.compile(r"^(?P<name>[^-]+)-(?P<version>[^-]+)-py\d")


class PinError(Exception):
    """A profile that buildout cannot resolve."""


@dataclass(frozen=True)
class Pin:
    name: str
    version: str
    required_by: tuple[str, ...]


def resolve(config: HostConfig, egg_wheels: list[Path], cache: Path = bundle.CACHE) -> list[Pin]:
    """Every distribution the production profile uses, as a scratch build of it picks them."""
    production = buildoutfiles.read_profile(config.buildout_dir / config.buildout_config)
    bundle.check_production(production, config.buildout_config)
    scratch = cache / "pin" / config.name
    shutil.rmtree(scratch, ignore_errors=True)
    for path in buildoutfiles.bundled_files(production, config.buildout_dir):
        target = scratch / path.relative_to(config.buildout_dir)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, target)
    egg_pins = {eggs.egg_name(w): eggs.parse_version(w) for w in egg_wheels}
    (scratch / "pin.cfg").write_text("\n".join([
        "[buildout]", f"extends = {config.buildout_config}", f"eggs-directory = {scratch / 'eggs'}",
        f"find-links = {cache / 'eggs'} {cache / 'dists'}", "allow-picked-versions = true",
        "newest = false", "show-picked-versions = true",
        *([f"extends-cache = {remotefiles.CACHE}"] if production.remote else []), "",
        "[versions]", *(f"{name} = {version}" for name, version in sorted(egg_pins.items())), "",
    ]))
    tools = {name: production.versions.get(name) or metadata.version(name) for name in dists.HOST_TOOLS}
    python = buildout_venv(tools, cache / "pin" / "venv")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_FIND_LINKS")}
    result = subprocess.run([str(python), str(python.parent / "buildout"), "-c", "pin.cfg"], cwd=scratch,
                            capture_output=True, text=True, env=env)
    if result.returncode:
        tail = "\n".join((result.stdout + result.stderr).strip().splitlines()[-15:])
        raise PinError(f"buildout cannot resolve {config.buildout_config}:\n{tail}")
    installed = subprocess.run([str(python), "-m", "pip", "list", "--format=json"], check=True,
                               capture_output=True, text=True).stdout
    # the tools and what they need: the host's venv is installed from these pins too
    tools = {entry["name"]: entry["version"] for entry in json.loads(installed)}
    return pins_from_eggs(scratch / "eggs", tools)


def buildout_section(text: str) -> list[str]:
    """The lines of ``text``'s ``[buildout]`` section, header included (none: empty)."""
    kept, inside = [], False
    for line in text.splitlines():
        if line.startswith("["):
            inside = line.split("]")[0].strip("[ ") == "buildout"
        if inside:
            kept.append(line)
    return kept if not kept or kept[-1].strip() == "" else [*kept, ""]


def buildout_venv(tools: dict[str, str], directory: Path) -> Path:
    """A venv with only the buildout tools, so that nothing else is found in site-packages."""
    stamp = "".join(f"{name}=={version}\n" for name, version in sorted(tools.items()))
    python = directory / "bin" / "python"
    if (directory / ".requirements").is_file() and (directory / ".requirements").read_text() == stamp:
        return python
    shutil.rmtree(directory, ignore_errors=True)
    subprocess.run([sys.executable, "-m", "venv", str(directory)], check=True, capture_output=True)
    result = subprocess.run([str(python), "-m", "pip", "install", "-q", *stamp.split()],
                            capture_output=True, text=True)
    if result.returncode:
        raise PinError(f"cannot install {' '.join(stamp.split())} for the scratch build:\n{result.stderr[-1500:]}")
    (directory / ".requirements").write_text(stamp)
    return python


def pins_from_eggs(eggs_directory: Path, tools: dict[str, str]) -> list[Pin]:
    """The pins of the eggs buildout installed, with who requires each."""
    found: dict[str, tuple[str, str, list[str]]] = {}  # canonical -> (name, version, requirements)
    for egg in sorted(eggs_directory.rglob("*.egg")):
        match = EGG_DIRECTORY.match(egg.name)
        if match:
            name, requires = _metadata(egg)
            found[canonicalize_name(name or match["name"])] = (name or match["name"], match["version"], requires)
    for name, version in tools.items():
        found.setdefault(canonicalize_name(name), (name, version, []))
    required_by: dict[str, set[str]] = {key: set() for key in found}
    for key, (name, _, requires) in found.items():
        for requirement in requires:
            if canonicalize_name(requirement) in required_by:
                required_by[canonicalize_name(requirement)].add(name)
    return [Pin(name, version, tuple(sorted(required_by[key], key=str.lower)))
            for key, (name, version, _) in sorted(found.items())]


def _metadata(egg: Path) -> tuple[str | None, list[str]]:
    """The project name and requirement names in an installed egg's metadata."""
    for path in [*egg.glob("*.dist-info/METADATA"), egg / "EGG-INFO" / "PKG-INFO"]:
        if path.is_file():
            message = email.parser.Parser().parsestr(path.read_text(errors="replace"))
            requires = list(message.get_all("Requires-Dist") or [])
            requires_txt = egg / "EGG-INFO" / "requires.txt"
            if requires_txt.is_file():
                requires += [line for line in requires_txt.read_text().splitlines()
                             if line.strip() and not line.startswith("[")]
            names = []
            for line in requires:
                try:
                    requirement = Requirement(line)
                except InvalidRequirement:
                    continue
                if requirement.marker is None or "extra" not in str(requirement.marker):
                    names.append(requirement.name)
            return message.get("Name"), names
    return None, []


def render(pins: list[Pin], profile: str, before: str = "") -> str:
    """versions.cfg: sorted pins, each with the distributions that require it; the ``[buildout]``
    section of the file ``before`` (the versions files it extends: Plone's) kept as it was."""
    lines = [f"# Every distribution {profile} uses, pinned by `invoke pin` from buildout's own",
             "# resolution. Run it again after changing eggs or requirements.", "",
             *buildout_section(before), "[versions]"]
    for pin in sorted(pins, key=lambda p: p.name.lower()):
        if pin.required_by:
            lines.append(f"# required by: {', '.join(pin.required_by)}")
        lines.append(f"{pin.name} = {pin.version}")
    return "\n".join(lines) + "\n"
