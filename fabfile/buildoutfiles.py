"""Read a buildout profile the way buildout layers it: ``extends``, ``+=`` and ``-=``.

Only what deploying needs: the files a profile is made of, its ``develop`` eggs
and its ``[versions]``. Values are raw (``${...}`` is not substituted).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from zc.buildout.configparser import parse


class ProfileError(Exception):
    """A buildout profile that cannot be read."""


@dataclass(frozen=True)
class Profile:
    files: tuple[Path, ...]          # the profile and everything it extends, bases first
    sections: dict[str, dict[str, str]]

    def option(self, section: str, key: str, default: str = "") -> str:
        return self.sections.get(section, {}).get(key, default)

    @property
    def develop(self) -> tuple[str, ...]:
        """The develop eggs' directories, relative to the buildout: ``develop =`` and the
        packages mr.developer checks out (``auto-checkout``, from ``[sources]`` into ``src``)."""
        found = self.option("buildout", "develop").split()
        if "mr.developer" in self.option("buildout", "extensions"):
            sources = self.sections.get(self.option("buildout", "sources", "sources"), {})
            checkouts = self.option("buildout", "auto-checkout").split()
            names = sorted(sources) if "*" in checkouts else checkouts
            directory = self.option("buildout", "sources-dir", "src").replace("${buildout:directory}/", "")
            found += [f"{directory}/{name}" for name in names if f"{directory}/{name}" not in found]
        return tuple(found)

    @property
    def versions(self) -> dict[str, str]:
        """The pins: ``{name: version}`` from the versions section."""
        section = self.option("buildout", "versions", "versions")
        return {name: value.strip() for name, value in self.sections.get(section, {}).items() if value.strip()}


def read_profile(path: Path) -> Profile:
    """The profile at ``path`` with everything it extends."""
    files: list[Path] = []
    sections = _read(path.resolve(), files, ())
    return Profile(tuple(files), sections)


def _read(path: Path, files: list[Path], seen: tuple[Path, ...]) -> dict[str, dict[str, str]]:
    if path in seen:
        raise ProfileError(f"{path}: extends loops back to itself")
    if not path.is_file():
        raise ProfileError(f"{seen[-1] if seen else 'buildout'}: extends a missing file {path}")
    with path.open() as handle:
        data = parse(handle, str(path))
    merged: dict[str, dict[str, str]] = {}
    for base in data.get("buildout", {}).get("extends", "").split():
        if "://" in base:
            raise ProfileError(f"{path}: extends a URL ({base}); keep the profile's files in the buildout")
        _merge(merged, _read((path.parent / base).resolve(), files, (*seen, path)))
    if path not in files:
        files.append(path)
    _merge(merged, data)
    merged.get("buildout", {}).pop("extends", None)
    return merged


def _merge(into: dict[str, dict[str, str]], data: dict[str, dict[str, str]]) -> None:
    for section, options in data.items():
        target = into.setdefault(section, {})
        for key, value in options.items():
            if key.endswith(" +") or key.endswith("+"):
                name = key.rstrip("+").strip()
                target[name] = "\n".join(filter(None, [target.get(name, ""), value]))
            elif key.endswith(" -") or key.endswith("-"):
                name = key.rstrip("-").strip()
                removed = set(value.split())
                target[name] = "\n".join(v for v in target.get(name, "").split() if v not in removed)
            else:
                target[key] = value


# Never part of a release: data, build output, VCS, secrets.
NOT_BUNDLED = {"var", "eggs", "parts", "bin", "develop-eggs", "downloads", ".git", ".hg", ".svn", ".venv"}
NOT_BUNDLED_FILES = {".env", ".installed.cfg", ".mr.developer.cfg"}


def bundled_files(profile: Profile, directory: Path) -> list[Path]:
    """The profile's files and the files its options name inside ``directory`` (templates, say)."""
    directory = directory.resolve()
    found = set(profile.files)
    for options in profile.sections.values():
        for value in options.values():
            for token in value.replace("${buildout:directory}", str(directory)).split():
                token = token.strip("'\",[]()")
                if not token or "${" in token:
                    continue
                path = (directory / token).resolve()
                if path.is_file() and directory in path.parents:
                    found.add(path)
    keep = []
    for path in sorted(found):
        if not path.is_relative_to(directory):
            raise ProfileError(f"{path}: the profile uses a file outside the buildout {directory}")
        relative = path.relative_to(directory)
        if NOT_BUNDLED.isdisjoint(relative.parts) and relative.name not in NOT_BUNDLED_FILES:
            keep.append(path)
    return keep
