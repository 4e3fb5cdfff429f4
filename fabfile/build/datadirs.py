"""The directories a build wants under ``var/``, made as a separate ``app_user``.

Plone's recipes make their directories under ``${buildout:directory}/var`` while buildout
runs (plone.recipe.zeoserver: ``var/filestorage``, ``var/log``; plone.recipe.zope2instance:
``var/<part>/import``, ``var/cache``, ``var/blobstorage``). Buildout runs as the deploy
``user``, who cannot enter the 0700 ``var/`` of a separate ``app_user``. So where
``app_user`` differs, a release is built with its data paths (``var`` and the ``[buildout]
shared`` paths under it) linked to an empty directory of its own, ``.deploy/build-data``;
then every directory the recipes made there is made under ``<root>`` as ``app_user``
(``mkdir -p -m 0700``, through the one sudo rule ``sudoers`` gives), and the release's links
point at ``<root>`` as in every release. Recipes write the release's own paths
(``<release>/var/...``) into the files they make, so those are the same either way; files a
recipe writes into ``var/`` while building (none of Plone's do) are left behind, and said.
"""
from __future__ import annotations

from invoke import Exit, UnexpectedExit

from .. import commands
from ..config.hostconfig import HostConfig

BUILD_DATA = ".deploy/build-data"  # inside the release being built
MKDIR = "/bin/mkdir"               # as the sudo rule names it (/usr/bin/mkdir where /bin is merged)
MODE = "0700"


def data_paths(config: HostConfig) -> tuple[str, ...]:
    """The shared paths that hold ``app_user``'s data, when it is not the deploy user: ``var`` and below."""
    if config.app_user == config.user:
        return ()
    return tuple(path for path in config.shared if path == "var" or path.startswith("var/"))


def link_for_build(config: HostConfig, release_dir: str) -> str:
    """Link the release's shared paths: the data paths to the build's own directory, the rest to ``<root>``."""
    data = data_paths(config)
    others = [path for path in config.shared if path not in data]
    links = [commands.link_shared(release_dir, config.root, others) if others else "",
             commands.link_shared(release_dir, f"{release_dir}/{BUILD_DATA}", data) if data else ""]
    return commands.and_then(*filter(None, links)) or "true"


def make_as_app_user(config: HostConfig, release_dir: str) -> str | None:
    """Make under ``<root>`` as ``app_user`` each directory buildout made in the build's data paths, point the
    release's links at ``<root>``, and print the files left behind; None when there is nothing to do."""
    data = data_paths(config)
    if not data:
        return None
    scratch = f"{release_dir}/{BUILD_DATA}"
    mkdir = commands.join("xargs", "-0", "-r", "sudo", "-n", "-u", config.app_user, MKDIR, "-p", "-m", MODE, "--")
    steps = [commands.join("find", scratch, "-mindepth", "1", "!", "-type", "d", "-printf", "%P\\n")]
    for path in data:
        # find lists a directory before what it holds, so each parent is made (0700) before its children
        each = config.path_on_host(path).replace("%", "%%") + "/%P\\0"
        steps += [f"{commands.join('find', f'{scratch}/{path}', '-type', 'd', '-printf', each)} | {mkdir}",
                  commands.join("ln", "-sfn", config.path_on_host(path), f"{release_dir}/{path}")]
    return commands.and_then(*steps, commands.join("rm", "-rf", scratch))


def sudoers(config: HostConfig) -> str:
    """Let the deploy user make directories under ``<root>/var`` as ``app_user``, and run the backup
    and restore jobs' data commands (repozo, rsync, reading the backups) as ``app_user`` with ``/bin/sh``.

    That gives the deploy user no more than it has: it owns the code ``app_user`` runs (and sudoers'
    ``*`` also matches ``..``). What it gains is that backups read the data it cannot read itself."""
    return (f"# Written by bootstrap-host: {config.user} makes the directories a build wants under "
            f"{config.path_on_host('var')} as {config.app_user},\n"
            f"# and runs the backups' data commands as {config.app_user} (who owns the data) with /bin/sh.\n"
            f"{config.user} ALL=({config.app_user}) NOPASSWD: {MKDIR} -p -m {MODE} -- "
            f"{config.path_on_host('var')}/*\n"
            f"{config.user} ALL=({config.app_user}) NOPASSWD: /bin/sh\n")


def make_data_directories(site, release_dir: str) -> list[str]:
    """Run ``make_as_app_user`` on the host; the files left behind in the build's data paths."""
    command = make_as_app_user(site.config, release_dir)
    if command is None:
        return []
    try:
        result = site.run(command)
    except UnexpectedExit as failure:
        said = (failure.result.stderr or failure.result.stdout).strip()
        raise Exit(f"making the directories the build wants under {site.path('var')} as {site.config.app_user} "
                   f"failed ({said}); run bootstrap-host again: its sudo rule lets {site.config.user} do that. "
                   f"current is untouched", 1) from None
    return result.stdout.split("\n")[:-1] if result else []
