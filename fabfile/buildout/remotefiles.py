"""Remote ``extends`` (Plone's versions files): fetched on this machine, cached, frozen into the release.

A profile may extend ``https://dist.plone.org/release/6.2.2/versions.cfg``, which extends further
URLs. Each is fetched here once per run (redirects followed) and kept in ``.cache/extends/`` under
the name buildout's own ``extends-cache`` gives it (the md5 of the URL as the profile spells it),
so that the bundle ships it in ``.extends-cache/`` and the host's buildout reads it from there: the
host never fetches anything. A URL that cannot be reached is read from the cache when it was
fetched before (and said so); never fetched, it stops the deploy before anything is sent.
"""
from __future__ import annotations

import hashlib
import os
import re
import sys
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from ..paths import CACHE as SITE_CACHE

CACHE = SITE_CACHE / "extends"
IN_RELEASE = ".extends-cache"  # the bundle's directory of remote files, buildout's extends-cache on the host
TIMEOUT = 20  # seconds for one file
MAX_BYTES = 4 * 1024 * 1024  # a versions file is some 20 kB

_URL = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*://")  # what buildout takes for a URL
_fetched: dict[tuple[str, Path], Path] = {}  # this run's files: each URL fetched once


class RemoteFileError(Exception):
    """A remote ``extends`` that cannot be fetched and is not cached."""


@dataclass(frozen=True)
class RemoteFile:
    url: str      # as the profile spells it: buildout looks it up by this exact text
    path: Path    # the cached copy on this machine
    sha256: str

    @property
    def member(self) -> str:
        """Its name in the bundle (and in the release on the host)."""
        return f"{IN_RELEASE}/{cache_name(self.url)}"


def is_url(text: str) -> bool:
    return bool(_URL.match(text))


def cache_name(url: str) -> str:
    """The file name buildout's extends-cache gives ``url`` (``Download(hash_name=True)``)."""
    return hashlib.md5(url.encode()).hexdigest()


def resolve(base_url: str, name: str) -> str:
    """The URL buildout opens for ``name`` extended by the file at ``base_url``: joined as text, the
    way buildout joins it (no ``..`` folded), since that text is the cache key."""
    return name if is_url(name) else base_url[:base_url.rfind("/")] + "/" + name


def fetch(url: str, referrer: str, cache: Path = CACHE) -> RemoteFile:
    """``url``'s text, fetched once per run into ``cache``; the cached copy when the URL cannot be reached."""
    target = cache / cache_name(url)
    if (url, cache) not in _fetched:
        if not url.startswith(("http://", "https://")):
            raise RemoteFileError(f"{referrer}: extends {url}: only http:// and https:// URLs are fetched")
        try:
            with urllib.request.urlopen(url, timeout=TIMEOUT) as response:  # follows redirects
                data = response.read(MAX_BYTES + 1)
            if len(data) > MAX_BYTES:
                raise RemoteFileError(f"{referrer}: extends {url}: larger than {MAX_BYTES // 1024} kB, "
                                      f"not a buildout file")
        except (urllib.error.URLError, OSError, ValueError) as error:
            reason = getattr(error, "reason", None) or error
            if not target.is_file():
                raise RemoteFileError(f"{referrer}: extends {url}, which cannot be fetched ({reason}) and was "
                                      f"never fetched before: nothing was deployed") from None
            print(f"note: {url} cannot be fetched ({reason}): using the copy fetched before", file=sys.stderr)
        else:
            cache.mkdir(parents=True, exist_ok=True)
            if not target.is_file() or target.read_bytes() != data:
                partial = target.with_name(target.name + f".{os.getpid()}")
                partial.write_bytes(data)
                partial.replace(target)
        _fetched[(url, cache)] = target
    return RemoteFile(url, target, hashlib.sha256(target.read_bytes()).hexdigest())


def forget() -> None:
    """Fetch every URL again on its next use (tests change what a URL serves within one process)."""
    _fetched.clear()
