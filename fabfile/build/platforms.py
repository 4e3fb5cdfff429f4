"""The host's Python and platform, as pip needs them to download wheels that run there.

The facts come from the host's own interpreter (stdlib only: version, machine, glibc);
the wheel tags it accepts are worked out here with ``packaging``.
"""
from __future__ import annotations

import dataclasses
import json
import platform
import re
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from packaging import tags
from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.version import Version

# glibc versions that have a legacy manylinux name as well
LEGACY_MANYLINUX = {(2, 17): "manylinux2014", (2, 12): "manylinux2010", (2, 5): "manylinux1"}


@dataclass(frozen=True)
class Target:
    """A host's interpreter: ``3.11``, ``x86_64``, glibc ``2.36``."""

    python: str
    machine: str
    glibc: str | None

    @property
    def python_version(self) -> str:
        return ".".join(self.python.split(".")[:2])

    @property
    def abi(self) -> str:
        return "cp" + self.python_version.replace(".", "")

    @property
    def key(self) -> str:
        """A name for this target, for caches: ``cp311-x86_64-glibc2.36``."""
        return f"{self.abi}-{self.machine}-glibc{self.glibc or 'none'}"

    @cached_property
    def platforms(self) -> list[str]:
        """Platform tags, most specific first."""
        found = []
        if self.glibc:
            major, minor = (int(part) for part in self.glibc.split(".")[:2])
            for each in range(minor, 4, -1):
                found.append(f"manylinux_{major}_{each}_{self.machine}")
                if (major, each) in LEGACY_MANYLINUX:
                    found.append(f"{LEGACY_MANYLINUX[major, each]}_{self.machine}")
        return [*found, f"linux_{self.machine}"]

    @cached_property
    def tags(self) -> frozenset[tags.Tag]:
        """Every wheel tag the host's interpreter accepts."""
        version = tuple(int(part) for part in self.python_version.split("."))
        return frozenset([
            *tags.cpython_tags(version, [self.abi, "abi3", "none"], self.platforms),
            *tags.compatible_tags(version, self.abi, self.platforms),
        ])

    def accepts(self, requires_python: str) -> bool:
        """Whether this interpreter (its full version: ``3.11.2``) satisfies a ``Requires-Python``;
        a specifier that is not one is ignored, as pip ignores it."""
        try:
            wanted = SpecifierSet(requires_python)
        except InvalidSpecifier:
            return True
        release = re.match(r"\d+(\.\d+)*", self.python)
        return wanted.contains(Version(release.group(0) if release else self.python_version), prereleases=True)

    def pip_arguments(self) -> list[str]:
        """What ``pip download`` needs to fetch wheels for this target."""
        platforms = [argument for platform in self.platforms for argument in ("--platform", platform)]
        return ["--only-binary=:all:", "--python-version", self.python_version, "--implementation", "cp",
                "--abi", self.abi, *platforms]


def from_facts(facts: dict) -> Target:
    """The target described by the host's facts."""
    return Target(facts["python"], facts["machine"], facts.get("glibc"))


def this_machine() -> Target:
    """The target of the Python running this code."""
    libc, version = platform.libc_ver()
    return Target(platform.python_version(), platform.machine(), version if libc == "glibc" else None)


def remember(name: str, target: Target, cache: Path) -> None:
    """Keep a host's target, for local tasks that bundle for it without asking it again."""
    path = cache / "hosts" / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(dataclasses.asdict(target)))


def remembered(name: str, cache: Path) -> Target | None:
    """The target a deploy to host ``name`` found, if one has run from here."""
    path = cache / "hosts" / f"{name}.json"
    return Target(**json.loads(path.read_text())) if path.is_file() else None
