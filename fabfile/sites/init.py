"""A host config guessed from an existing buildout: ``invoke init --buildout DIR --host NAME``.

The buildout is read the way buildout layers it (``extends``, local files only; see
``buildoutfiles``), ``${section:option}`` references and ``<=`` macros resolved. Its
parts give the programs: ``plone.recipe.zeoserver`` a ZEO server, each
``plone.recipe.zope2instance`` an instance with a health URL at its ``http-address``,
``zc.recipe.egg`` scripts that serve (a port option, or a known server's script); the
storages give ``[backup] filestorage``/``blobstorage``; a ``collective.recipe.backup`` part
gives the rest of ``[backup]``. Every guess is said, so that it can be checked.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from ..buildout import profile as buildoutfiles
from ..buildout.parts import DATA, INSTANCE, ZEOSERVER, InitError, option, zope_storages
from ..config import hostconfig

EGG = "zc.recipe.egg"
BACKUP = "collective.recipe.backup"
# zc.recipe.egg scripts that run a server (entry point names): the part is a program
SERVER_SCRIPTS = {"runzeo", "zeoserver", "waitress-serve", "gunicorn", "uvicorn", "pserve", "runwsgi", "paster"}
PORT_OPTIONS = ("http-port", "http-address", "port", "address")
# collective.recipe.backup option -> [backup] key of the host config, the same meaning
BACKUP_OPTIONS = {"keep": "keep", "keep_blob_days": "keep_blob_days", "gzip": "gzip", "quick": "quick",
                  "pre_command": "pre_command", "post_command": "post_command"}





@dataclass
class Guess:
    """What init found: the config's sections in order, and what it guessed, in sentences."""
    programs: list[tuple[str, str, str | None]] = field(default_factory=list)  # name, command, health URL
    backup: dict[str, str] = field(default_factory=dict)
    said: list[str] = field(default_factory=list)


def host_port(address: str, default_port: str) -> tuple[str, str]:
    """``(host to poll, port)`` of a buildout address: ``8080``, ``127.0.0.1:8080``, ``0.0.0.0:8080``."""
    host, _, port = address.strip().rpartition(":")
    host = host.strip("[]")
    if host in ("", "0.0.0.0", "::", "*", "localhost"):
        host = "127.0.0.1"
    return host, port or default_port


def data_path(value: str, what: str, default: str, guess: Guess) -> str:
    """A storage path of the buildout as the host config has it: relative to ``<root>/var``."""
    if value.startswith(DATA):
        return value[len(DATA):]
    guess.said.append(f"{what} {value!r} is not under ${{buildout:directory}}/var: kept the default {default!r}; "
                      f"a release links only var (and [buildout] shared) to <root>")
    return default


def read_parts(profile: buildoutfiles.Profile) -> Guess:
    """The programs and storages the parts of ``profile`` describe."""
    guess = Guess()
    for part in option(profile, "buildout", "parts").split():
        recipe = option(profile, part, "recipe")
        name = recipe.split(":")[0]
        if name == ZEOSERVER:
            guess.programs.append((part, f"bin/{part} fg", None))
            address = option(profile, part, "zeo-address", "8100")
            guess.said.append(f"{part}: the ZEO server ({ZEOSERVER}, port {host_port(address, '8100')[1]}), "
                              f"run in the foreground: bin/{part} fg")
        elif name == INSTANCE:
            host, port = host_port(option(profile, part, "http-address", "8080"), "8080")
            url = f"http://{host}:{port}/"
            guess.programs.append((part, f"bin/{part} console", url))
            guess.said.append(f"{part}: a Zope instance ({INSTANCE}), bin/{part} console, health URL {url} "
                              f"(Zope's root: give a page that answers 200 without a login if it does not)")
        elif name == EGG:
            egg_programs(profile, part, guess)
        elif name == BACKUP:
            backup_part(profile, part, guess)
    storages = zope_storages(profile)
    if not guess.programs:
        raise InitError(f"no program found in the parts ({option(profile, 'buildout', 'parts')}): name them "
                        f"in a host config by hand ([services] programs)")
    if storages.get("filestorage"):
        guess.backup["filestorage"] = data_path(storages["filestorage"], "the filestorage", "filestorage/Data.fs",
                                                guess)
    if storages.get("blobstorage"):
        guess.backup["blobstorage"] = data_path(storages["blobstorage"], "the blobstorage", "blobstorage", guess)
    elif storages:  # a ZODB part without blobs
        guess.backup["blobstorage"] = ""
    return guess


def egg_programs(profile: buildoutfiles.Profile, part: str, guess: Guess) -> None:
    """The scripts of a zc.recipe.egg part that serve: programs (``entry=name`` names the script)."""
    port = next((option(profile, part, key) for key in PORT_OPTIONS if option(profile, part, key)), None)
    for entry in option(profile, part, "scripts").split():
        source, _, script = entry.partition("=")
        script = script or source
        if port is None and source not in SERVER_SCRIPTS and script not in SERVER_SCRIPTS:
            guess.said.append(f"{part}: bin/{script} ({EGG}) taken for a tool, not a program")
            continue
        url = None
        if port:
            host, number = host_port(port, port)
            url = f"http://{host}:{number}/"
        guess.programs.append((script, f"bin/{script}", url))
        guess.said.append(f"{part}: bin/{script} ({EGG}) taken for a server"
                          + (f", health URL {url} (from its {port!r}: check the path)" if url else ""))


def backup_part(profile: buildoutfiles.Profile, part: str, guess: Guess) -> None:
    """``[backup]`` from a collective.recipe.backup part: the options that mean the same here."""
    for key, ours in BACKUP_OPTIONS.items():
        value = option(profile, part, key)
        if value:
            guess.backup[ours] = value.lower() if value.lower() in ("true", "false") else value
    extra = option(profile, part, "additional_filestorages")
    if extra:
        guess.backup["additional_filestorages"] = " ".join(
            line.split()[0] for line in extra.splitlines() if line.strip())
    if option(profile, part, "archive_blob").lower() == "true":
        guess.backup["blob_archive"] = "tar.gz" if option(profile, part, "compress_blob").lower() == "true" else "tar"
    taken = ", ".join(f"{k} = {v}" for k, v in guess.backup.items()) or "its defaults"
    guess.said.append(f"{part}: [backup] from {BACKUP} ({taken}); its locations are not taken: "
                      f"backups go under <root>/backups on the host")


def default_profile(buildout: Path) -> str:
    """The profile a host runs: ``production.cfg`` when there is one, else ``buildout.cfg``."""
    return "production.cfg" if (buildout / "production.cfg").is_file() else "buildout.cfg"


def render(name: str, address: str, root: str, directory: str, profile: str, guess: Guess,
           port: int | None = None, user: str | None = None) -> str:
    """The host config's text."""
    lines = [f"# Written by invoke init from {directory}/{profile}: check what it guessed.",
             "[host]", f"address = {address}"]
    lines += [f"port = {port}"] if port else []
    lines += [f"user = {user}"] if user else []
    lines += [f"root = {root}", "", "[buildout]", f"directory = {directory}", f"config = {profile}", "",
              "[services]", f"programs = {' '.join(p[0] for p in guess.programs)}", ""]
    for program, command, url in guess.programs:
        lines += [f"[program:{program}]", f"command = {command}", *([f"health_url = {url}"] if url else []), ""]
    if guess.backup:
        lines += ["[backup]", *(f"{key} = {value}" for key, value in guess.backup.items()), ""]
    return "\n".join(lines)


CONFIG_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,62}")  # a file in hostconfigs/, and fab -H NAME


def _check_arguments(name: str, **values: str | None) -> None:
    """Refuse what a host config line cannot hold as given: the name is a file name in ``hostconfigs/``,
    each value one line that configparser reads back unchanged (no ``;`` or ``#`` comment, no spaces at
    its ends, no control character)."""
    if not CONFIG_NAME.fullmatch(name):
        raise InitError(f"init --host {name!r}: a config name is letters, digits, _ . - (not first: . -), at "
                        f"most 63: it names hostconfigs/NAME.cfg")
    for argument, value in values.items():
        if value is not None and (not value.isprintable() or value != value.strip() or ";" in value
                                  or "#" in value):
            raise InitError(f"init --{argument} {value!r}: one line without ';', '#', tabs or control characters, "
                            f"and no spaces at its ends (it is written as a host config value)")


def init_config(buildout: Path, name: str, address: str, config_dir: Path, root: str | None = None,
                profile: str | None = None, port: int | None = None, user: str | None = None) -> tuple[Path, list[str]]:
    """Write ``config_dir/NAME.cfg`` from the buildout; its path and what was guessed.
    Raises FileExistsError when the config exists (nothing written)."""
    _check_arguments(name, address=address, root=root, profile=profile, user=user)
    target = config_dir / f"{name}.cfg"
    if target.exists():
        raise FileExistsError(str(target))
    buildout = buildout.resolve()
    profile = profile or default_profile(buildout)
    try:
        read = buildoutfiles.read_profile(buildout / profile)
    except buildoutfiles.ProfileError as error:
        raise InitError(str(error)) from None
    guess = read_parts(read)
    directory = os.path.relpath(buildout, config_dir.resolve())
    text = render(name, address, root or f"/srv/{name}", directory, profile, guess, port, user)
    config_dir.mkdir(parents=True, exist_ok=True)
    with open(target, "x") as handle:  # "x": never over a config that appeared meanwhile
        handle.write(text)
    try:
        hostconfig.load(target)
    except hostconfig.ConfigError as error:
        target.unlink()
        raise InitError(f"the config guessed does not load, nothing written: {error}") from None
    return target, guess.said
