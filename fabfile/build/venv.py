"""``<root>/venv``: the Python that runs buildout and supervisord, with exactly the site's pinned tools.

bootstrap-host makes it (the tools' distributions sent from this machine's cache into
``<root>/dists`` and recorded in its ``SHA256SUMS``, so the first deploy does not send
them again); a deploy makes it again only when the pins change. ``venv/.requirements``
holds the pins it was made with.
"""
from __future__ import annotations

from .. import commands
from . import dists
from ..config.hostconfig import HostConfig

# pip, as buildout runs it: only <root>/dists, whatever pip config the host has; sdists
# build with the venv's setuptools (PIP_NO_BUILD_ISOLATION=0 turns isolation off).
PIP_OFFLINE = {"PIP_NO_INDEX": "1", "PIP_CONFIG_FILE": "/dev/null", "PIP_NO_BUILD_ISOLATION": "0",
               "PIP_DISABLE_PIP_VERSION_CHECK": "1"}


def pip_offline(config: HostConfig) -> dict[str, str]:
    """The environment for pip on the host: no config, ``<root>/dists``, and no index but
    the one the hostconfig names."""
    env = {**PIP_OFFLINE, "PIP_FIND_LINKS": config.dists_path}
    if config.index:
        del env["PIP_NO_INDEX"]
        env["PIP_INDEX_URL"] = config.index
    return env


def pinned_tools(versions: dict[str, str]) -> dict[str, str]:
    """What the venv holds: the profile's pins of zc.buildout, setuptools, pip and wheel, and supervisor."""
    wanted = {dists.canonicalize_name(tool) for tool in dists.HOST_TOOLS}
    tools = {name: version for name, version in versions.items() if dists.canonicalize_name(name) in wanted}
    return {**tools, dists.SUPERVISOR_PIN[0]: dists.SUPERVISOR_PIN[1]}


def unpinned(tools: dict[str, str]) -> list[str]:
    """The tools the profile does not pin."""
    return sorted(set(map(dists.canonicalize_name, dists.HOST_TOOLS)) - set(map(dists.canonicalize_name, tools)))


def requirements(tools: dict[str, str]) -> str:
    """The text of ``venv/.requirements``: ``name==version`` a line, sorted."""
    return "".join(f"{name}=={version}\n" for name, version in sorted(tools.items()))


def make(config: HostConfig, tools: dict[str, str]) -> str:
    """Make ``<root>/venv`` afresh with exactly ``tools``, from ``<root>/dists`` (or the config's index)."""
    venv, stamp = config.path_on_host("venv"), requirements(tools)
    install = commands.join("env", *(f"{k}={v}" for k, v in pip_offline(config).items()),
                            f"{venv}/bin/python", "-m", "pip", "install", "-q", *stamp.split())
    return commands.and_then(commands.remove(venv), commands.join(config.python, "-m", "venv", venv), install,
                             commands.write_file(f"{venv}/.requirements", stamp))
