"""A release's eggs, installed on the host in parallel before its buildout runs.

Buildout installs each distribution its eggs directory lacks one after another, a ``pip
install`` process each: a Plone release's first build spent most of its time there.
``onhost/installeggs.py`` installs them first, with zc.buildout's own code, one process per
core, from the pushed files whose sha256 matches ``dists/SHA256SUMS`` only, then becomes
buildout, which finds them installed.
"""
from __future__ import annotations

from .. import onhost
from ..buildout import profile as buildoutfiles
from ..config.hostconfig import HostConfig

MANIFEST = "manifest.json"  # bundle.MANIFEST, in the release's directory, where buildout runs


def eggs_subdirectory(config: HostConfig) -> str | None:
    """The profile's ``eggs-directory-version`` (``-``: buildout's default), or None when its eggs go
    into an ABI directory (``abi-tag-eggs``), which buildout alone names."""
    profile = buildoutfiles.read_profile(config.buildout_dir / config.buildout_config)
    options = dict(profile.sections.get("buildout", {}))
    options.update({option: value for section, option, value in config.overrides if section == "buildout"})
    if options.get("abi-tag-eggs", "false").strip().lower() not in ("false", "no", "off", ""):
        return None
    return options.get("eggs-directory-version", "-").strip()


def build_command(config: HostConfig, buildout_file: str) -> list[str]:
    """The tokens that build a release in its directory: its eggs installed in parallel, then
    ``<root>/venv/bin/buildout -c buildout_file`` in the same process (one pid to stop)."""
    venv = config.path_on_host("venv", "bin")
    buildout = [f"{venv}/buildout", "-c", buildout_file]
    subdirectory = eggs_subdirectory(config)
    if subdirectory is None:
        return buildout
    return [f"{venv}/python", "-c", onhost.source("installeggs"), config.eggs_path, subdirectory,
            config.dists_path, MANIFEST, "--", *buildout]
