"""Read a buildout profile the way buildout layers it: ``extends``, ``+=`` and ``-=``.

Only what deploying needs: the files a profile is made of, its ``develop`` eggs
and its ``[versions]``. Values are raw (``${...}`` is not substituted).
"""
from __future__ import annotations

import importlib.util
import io
import sys
from dataclasses import dataclass
from pathlib import Path

from . import remotefiles


def _buildout_parser():
    """zc.buildout's own profile parser, loaded alone: ``import zc.buildout`` patches pip and
    setuptools on the way (0.2 s of every task's start-up), and the parser needs neither."""
    name = "fabfile_zc_buildout_configparser"
    if name not in sys.modules:
        package = importlib.util.find_spec("zc.buildout")
        spec = importlib.util.spec_from_file_location(
            name, Path(package.submodule_search_locations[0]) / "configparser.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        sys.modules[name] = module
    return sys.modules[name]


parse = _buildout_parser().parse


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
    local: dict[Path, tuple[dict, set[Path]]] = {}
    sections: dict[str, dict[str, str]] = {}
    for data in _read(path.resolve(), files, remote, (), cache, local):
        _merge(sections, data)  # in buildout's order, flat: a nested file's += adds to all before it
    sections.get("buildout", {}).pop("extends", None)
    versions = sections.get("buildout", {}).get("versions", "versions")
    pins = {path: {key.rstrip("+-").strip(): value.strip() for key, value in data.get(versions, {}).items()}
            for path, (data, _) in local.items()}
    check_pins(pins, {path: extended_by for path, (_, extended_by) in local.items()})
    return Profile(tuple(files), sections, tuple(remote), frozenset(name for found in pins.values() for name in found))


# The versions file `invoke pin` writes: what the build used, layered under everything else by design.
PINNED_BY_PIN = "versions.cfg"


def check_pins(pins: dict[Path, dict[str, str]], extended_by: dict[Path, set[Path]]) -> None:
    """Two files that do not extend one another (two modules, a module and the site's settings) that
    pin one distribution to different versions: buildout would silently take the later. Stop, naming
    both, unless a file that extends both pins it too (it decides). ``versions.cfg`` is not compared."""
    setters: dict[str, list[Path]] = {}
    for path, found in pins.items():
        if path.name != PINNED_BY_PIN:
            for name in found:
                setters.setdefault(name.lower(), []).append(path)
    for name, paths in sorted(setters.items()):
        for index, first in enumerate(paths):
            for second in paths[index + 1:]:
                one, other = _pin(pins[first], name), _pin(pins[second], name)
                related = first in extended_by[second] or second in extended_by[first]
                decided = any(name in {n.lower() for n in pins[p]} for p in extended_by[first] & extended_by[second])
                if one != other and not related and not decided:
                    raise ProfileError(f"{first} pins {name} = {one} and {second} pins {name} = {other}: "
                                       f"pin it in one of them (or in a file that extends both)")


def _pin(found: dict[str, str], name: str) -> str:
    return next(value for key, value in found.items() if key.lower() == name)


def _read(location: Path | str, files: list[Path], remote: list, seen: tuple, cache: Path,
          local: dict) -> list[dict[str, dict[str, str]]]:
    """One file (a path or a URL) after what it extends, each file's options in the order buildout
    merges them; each local file's own options, and the local files that extend it, in ``local``."""
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
    layers: list[dict[str, dict[str, str]]] = []
    for base in data.get("buildout", {}).get("extends", "").split():
        if isinstance(location, str):
            if not remotefiles.is_url(base) and base.startswith("/"):
                raise ProfileError(f"{location}: extends a path on this machine ({base})")
            following: Path | str = remotefiles.resolve(location, base)
        else:
            following = base if remotefiles.is_url(base) else (location.parent / base).resolve()
        layers += _read(following, files, remote, (*seen, location), cache, local)
    if isinstance(location, Path):
        if location not in files:
            files.append(location)
        local.setdefault(location, (data, set()))[1].update(p for p in seen if isinstance(p, Path))
    return [*layers, data]


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
