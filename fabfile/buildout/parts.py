"""Reading a buildout's parts as buildout would: ``<=`` macros, ``${section:option}`` references, the
storages of its ZEO server or stand-alone instance."""
from __future__ import annotations

import re

from .profile import Profile

ZEOSERVER = "plone.recipe.zeoserver"
INSTANCE = "plone.recipe.zope2instance"
DATA = "${buildout:directory}/var/"
_REFERENCE = re.compile(r"\$\{([^:}]*):([^}]+)\}")


class InitError(Exception):
    """A buildout that gives no host config."""


def options(profile: Profile, section: str, seen: tuple[str, ...] = ()) -> dict[str, str]:
    """A section's options with its ``<=`` macro's beneath them."""
    raw = profile.sections.get(section, {})
    if "<" not in raw or section in seen:
        return dict(raw)
    merged: dict[str, str] = {}
    for base in raw["<"].split():
        merged.update(options(profile, base, (*seen, section)))
    merged.update({k: v for k, v in raw.items() if k != "<"})
    return merged


def resolve(profile: Profile, section: str, value: str, depth: int = 0) -> str:
    """``value`` with ``${section:option}`` references replaced (``${:option}`` is the same section);
    ``${buildout:directory}`` is kept: it means the release on the host."""
    if depth > 20:
        raise InitError(f"[{section}]: references loop: {value}")

    def replace(match: re.Match) -> str:
        where, key = match.group(1) or section, match.group(2)
        if (where, key) == ("buildout", "directory"):
            return match.group(0)
        if where == section and key == "_buildout_section_name_":
            return section
        found = options(profile, where).get(key)
        return match.group(0) if found is None else resolve(profile, where, found, depth + 1)
    return _REFERENCE.sub(replace, value)


def option(profile: Profile, section: str, key: str, default: str = "") -> str:
    value = options(profile, section).get(key)
    return default if value is None else resolve(profile, section, value).strip()


def zope_storages(profile: Profile) -> dict[str, str]:
    """The filestorage and blobstorage of the ZEO server or stand-alone instance parts (the first that
    names one, as collective.recipe.backup looks for them), references resolved: {} without such parts."""
    storages: dict[str, str] = {}
    for part in option(profile, "buildout", "parts").split():
        name = option(profile, part, "recipe").split(":")[0]
        server = name == ZEOSERVER or (name == INSTANCE and option(profile, part, "zeo-client", "off").lower()
                                       not in ("on", "true", "yes"))
        if server:
            storages.setdefault("filestorage", option(profile, part, "file-storage", DATA + "filestorage/Data.fs"))
        if name == ZEOSERVER or (name == INSTANCE and option(profile, part, "blob-storage")):
            storages.setdefault("blobstorage", option(profile, part, "blob-storage"))
    return storages
