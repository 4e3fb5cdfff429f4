"""Read a buildout profile the way buildout layers it: ``extends``, ``+=`` and ``-=``.

Only what deploying needs: the files a profile is made of, its ``develop`` eggs
and its ``[versions]``. Values are raw (``${...}`` is not substituted).
"""
from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

from zc.buildout.configparser import parse

from . import remotefiles


class ProfileError(Exception):
    """A buildout profile that cannot be read."""


@dataclass(frozen=True)
class Profile:
    files: tuple[Path, ...]          # the profile and every local file it extends, bases first
    sections: dict[str, dict[str, str]]
    remote: tuple[remotefiles.RemoteFile, ...] = ()  # the URLs it extends, fetched and cached here
    local_pins: frozenset[str] = frozenset()         # the pins its local files set (not only a URL)

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


def read_profile(path: Path, cache: Path = remotefiles.CACHE) -> Profile:
    """The profile at ``path`` with everything it extends (URLs fetched into ``cache``)."""
    files: list[Path] = []
    remote: list[remotefiles.RemoteFile] = []
    local: list[dict[str, dict[str, str]]] = []
    sections = _read(path.resolve(), files, remote, (), cache, local)
    versions = sections.get("buildout", {}).get("versions", "versions")
    pins = {key.rstrip("+-").strip() for data in local for key in data.get(versions, {})}
    return Profile(tuple(files), sections, tuple(remote), frozenset(pins))


def _read(location: Path | str, files: list[Path], remote: list, seen: tuple, cache: Path,
          local: list) -> dict[str, dict[str, str]]:
    """One file (a path or a URL) merged over what it extends; each local file's own options in ``local``."""
    if location in seen:
        raise ProfileError(f"{location}: extends loops back to itself")
    referrer = str(seen[-1]) if seen else "buildout"
    if isinstance(location, str):
        try:
            fetched = remotefiles.fetch(location, referrer, cache)
        except remotefiles.RemoteFileError as error:
            raise ProfileError(str(error)) from None
        if fetched not in remote:
            remote.append(fetched)
        text = fetched.path.read_text()
    elif not location.is_file():
        raise ProfileError(f"{referrer}: extends a missing file {location}")
    else:
        text = location.read_text()
    try:
        data = parse(io.StringIO(text), str(location))
    except Exception as error:  # buildout's parser raises its own ParsingError, and others
        raise ProfileError(f"{location}: not a buildout file ({str(error).splitlines()[0][:200]})") from None
    merged: dict[str, dict[str, str]] = {}
    for base in data.get("buildout", {}).get("extends", "").split():
        if isinstance(location, str):
            if not remotefiles.is_url(base) and base.startswith("/"):
                raise ProfileError(f"{location}: extends a path on this machine ({base})")
            following: Path | str = remotefiles.resolve(location, base)
        else:
            following = base if remotefiles.is_url(base) else (location.parent / base).resolve()
        _merge(merged, _read(following, files, remote, (*seen, location), cache, local))
    if isinstance(location, Path) and location not in files:
        files.append(location)
        local.append(data)
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
