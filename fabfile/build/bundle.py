"""A release, made locally: the buildout files, the host's buildout file, pins and dists.

The bundle is a reproducible tarball (sorted entries, fixed times and owners), so the
same inputs give the same bytes; its sha256 is the release id's hash, and deploying
the same content again is a no-op.
"""
from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from ..buildout import profile as buildoutfiles, remotefiles
from . import dists, eggs, venv
from ..programs import supervisor
from ..config.hostconfig import HostConfig
from .platforms import Target
from ..paths import CACHE

HOST_BUILDOUT_FILE = "deploy.cfg"
GREEN_BUILDOUT_FILE = "deploy-green.cfg"  # switch = bluegreen: the same release, listening on the green addresses
MANIFEST = "manifest.json"
SECRETS_FILE = "secrets.cfg"   # <root>/secrets.cfg, 0600: the overrides that hold secrets
# Local bundles that cleanup keeps besides those of the host's releases: the newest few, and any
# used within a day (a deploy to another host from this machine may be about to push it).
KEEP_BUNDLES = 10
KEEP_BUNDLES_SECONDS = 86400


@dataclass(frozen=True)
class Bundle:
    release_id: str
    digest: str
    archive: Path
    dists: tuple[dists.Dist, ...]
    eggs: dict[str, str]          # develop egg -> the version this release pins
    tools: dict[str, str]         # what <root>/venv needs: name -> version


def release_id(digest: str, now: datetime | None = None) -> str:
    """``20261122T031500Z-3f2a9c1d``: the UTC time and the content hash."""
    now = (now or datetime.now(timezone.utc)).astimezone(timezone.utc)
    return f"{now:%Y%m%dT%H%M%SZ}-{digest[:8]}"


def digest_of(release: str) -> str:
    """The content hash part of a release id."""
    return release.rsplit("-", 1)[-1]


def host_buildout(config: HostConfig, profile: str, pins: dict[str, str], remote: bool = False) -> str:
    """The buildout file the host runs: the profile, offline against ``<root>/dists``; overrides that
    hold a secret come from ``<root>/secrets.cfg`` (extended), never from this file. The URLs the
    profile extends (``remote``) are read from the release's copies, never fetched."""
    private = secrets_buildout(config)
    extends = [profile, config.path_on_host(SECRETS_FILE)] if private else [profile]
    lines = [
        "# Written by the deploy: the production profile, built offline on this host.",
        "[buildout]", f"extends = {' '.join(extends)}",
        f"eggs-directory = {config.eggs_path}",
        f"index = {config.index or config.dists_path}",
        f"find-links = {config.dists_path}",
        "allow-picked-versions = false", "newest = false", "show-picked-versions = false", "",
    ]
    if remote:  # relative to the release, where buildout runs; its own naming (see remotefiles)
        lines.insert(3, f"extends-cache = {remotefiles.IN_RELEASE}")
    if private:
        # A changed secret must make a new release (the same bundle would be "nothing to deploy"
        # and never rebuilt): the secrets file's fingerprint is part of the bundle, its values are not.
        lines[1:1] = [f"# {SECRETS_FILE}: {secrets_fingerprint(config, private)}"]
    overrides: dict[str, list[str]] = {"versions": [f"{name} = {version}" for name, version in sorted(pins.items())]}
    for section, option, value in public_overrides(config):
        overrides.setdefault(section, []).append(f"{option} = {value}")
    for section, options in overrides.items():
        if options:
            lines += [f"[{section}]", *options, ""]
    return "\n".join(lines)


def holds_secret(config: HostConfig, value: str) -> bool:
    """Whether ``value`` has a secret (a ``${env:NAME}`` value) in it."""
    return any(secret in value for secret in config.secrets)


def public_overrides(config: HostConfig) -> list[tuple[str, str, str]]:
    """The ``[overrides]`` that may be written into the release: those without a secret."""
    return [override for override in config.overrides if not holds_secret(config, override[2])]


def secrets_buildout(config: HostConfig) -> str | None:
    """The text of ``<root>/secrets.cfg``: the overrides that hold a secret, or None when none does.

    The deploy writes it over SFTP, 0600, beside the releases (``Site.write_private``); the
    release's ``deploy.cfg`` extends it, so buildout reads the secrets while the release, the
    bundle and the local bundle cache never hold them."""
    sections: dict[str, list[str]] = {}
    for section, option, value in config.overrides:
        if holds_secret(config, value):
            sections.setdefault(section, []).append(f"{option} = {value}")
    if not sections:
        return None
    lines = ["# Written by the deploy: the overrides that hold secrets, read by every release's deploy.cfg.", ""]
    for section, options in sections.items():
        lines += [f"[{section}]", *options, ""]
    return "\n".join(lines)


def secrets_fingerprint(config: HostConfig, text: str) -> str:
    """A fingerprint of the secrets file that tells a change, but is slow to test guesses against
    (scrypt, salted with the site's root): it goes into the bundle, which is not secret."""
    salt = f"buildout-deploy {SECRETS_FILE} {config.root}".encode()
    return "scrypt:" + hashlib.scrypt(text.encode(), salt=salt, n=2 ** 14, r=8, p=1, dklen=12).hex()


def green_buildout(config: HostConfig, remote: bool = False) -> str:
    """``deploy.cfg`` with the ``[green]`` options: the build of a release that runs as the green set."""
    lines = ["# Written by the deploy: this release built as the green set (switch = bluegreen).",
             "[buildout]", f"extends = {HOST_BUILDOUT_FILE}", ""]
    if remote:  # buildout takes its download options from the file it starts from
        lines.insert(3, f"extends-cache = {remotefiles.IN_RELEASE}")
    sections: dict[str, list[str]] = {}
    for section, option, value in config.green:
        sections.setdefault(section, []).append(f"{option} = {value}")
    for section, options in sections.items():
        lines += [f"[{section}]", *options, ""]
    return "\n".join(lines)


class DirtyCheckout(Exception):
    """A develop egg with uncommitted or untracked files."""


def check_production(profile: buildoutfiles.Profile, name: str) -> None:
    """Stop, naming the culprit, when the production profile could pick or develop anything."""
    checkouts = profile.option("buildout", "auto-checkout").split()
    if "mr.developer" in profile.option("buildout", "extensions") and checkouts:
        raise buildoutfiles.ProfileError(f"{name}: mr.developer checks out {' '.join(checkouts)}; "
                                         f"release them as eggs instead")
    if profile.develop:
        raise buildoutfiles.ProfileError(f"{name}: a production profile has no 'develop =' ({' '.join(profile.develop)})")
    if profile.option("buildout", "allow-picked-versions", "true").strip().lower() in ("true", "yes", "on"):
        raise buildoutfiles.ProfileError(f"{name}: a production profile needs 'allow-picked-versions = false'")


def release_eggs(config: HostConfig, cache: Path = CACHE, known: tuple[str, ...] = (),
                 allow_dirty: bool = False) -> list[Path]:
    """Wheels of the development profile's develop eggs, new versions only for changed source."""
    development_file = config.buildout_dir / config.development_config
    if not development_file.is_file():
        return []  # a buildout with no eggs of its own
    development = buildoutfiles.read_profile(development_file)
    production = buildoutfiles.read_profile(config.buildout_dir / config.buildout_config)
    known = (*known, *production.versions.values())
    wheels = []
    for directory in development.develop:
        source = config.buildout_dir / directory
        dirty = eggs.dirty_files(source)
        if dirty and not allow_dirty:
            raise DirtyCheckout(f"{source} has uncommitted files: {', '.join(dirty)} "
                                f"(commit them, or deploy with --allow-dirty)")
        wheels.append(eggs.build_develop_egg(source, cache / "eggs", known))
    return wheels


def make(config: HostConfig, target: Target, egg_wheels: list[Path], cache: Path = CACHE) -> Bundle:
    """The bundle of the production profile with ``egg_wheels``, for a host of ``target``."""
    production = buildoutfiles.read_profile(config.buildout_dir / config.buildout_config)
    check_production(production, config.buildout_config)
    egg_pins = {eggs.egg_name(w): eggs.parse_version(w) for w in egg_wheels}
    # A remote versions file (Plone's) pins hundreds of distributions a site does not use: then only
    # the pins the site's own files set are shipped (`invoke pin` writes the ones the build uses).
    host_tools = {_canonical(t) for t in dists.HOST_TOOLS}
    if production.remote and not {_canonical(n) for n in production.local_pins} - host_tools - set(egg_pins):
        raise buildoutfiles.ProfileError(
            f"{config.buildout_config} takes its pins from {production.remote[0].url} and pins nothing itself: "
            f"run `invoke pin --host {config.name}` first (it writes the pins the build uses, keeping the "
            f"extends), then deploy")
    third_party = {n: v for n, v in production.versions.items() if _canonical(n) not in egg_pins and (
        not production.remote or n in production.local_pins or _canonical(n) in host_tools)}
    tools = venv.pinned_tools(third_party)
    if venv.unpinned(tools):
        raise buildoutfiles.ProfileError(f"{config.buildout_config}: [versions] must pin "
                                         f"{', '.join(venv.unpinned(tools))}")
    fetched = dists.fetch({**third_party, dists.SUPERVISOR_PIN[0]: dists.SUPERVISOR_PIN[1]},
                          cache / "dists", target)
    described = tuple(dists.describe([*egg_wheels, *fetched]))
    members = {
        path.relative_to(config.buildout_dir).as_posix(): path.read_bytes()
        for path in buildoutfiles.bundled_files(production, config.buildout_dir)
    }
    members.update({remote.member: remote.path.read_bytes() for remote in production.remote})
    members[HOST_BUILDOUT_FILE] = host_buildout(config, config.buildout_config, egg_pins,
                                                bool(production.remote)).encode()
    if config.switch == "bluegreen":
        members[GREEN_BUILDOUT_FILE] = green_buildout(config, bool(production.remote)).encode()
    if config.manager == "supervisor":
        members[supervisor.CONFIG_IN_RELEASE] = supervisor.render_config(config).encode()
    members[MANIFEST] = json.dumps({
        "files": {name: hashlib.sha256(data).hexdigest() for name, data in sorted(members.items())},
        "dists": {d.name: d.sha256 for d in described},
        "eggs": egg_pins, "tools": tools, "target": target.key,
        "extends": {r.url: {"file": r.member, "sha256": r.sha256} for r in production.remote},
    }, indent=1, sort_keys=True).encode()
    data = reproducible_tarball(members)
    digest = hashlib.sha256(data).hexdigest()
    archive = cache / "bundles" / f"{digest}.tar.gz"
    archive.parent.mkdir(parents=True, exist_ok=True)
    if not archive.exists():
        archive.write_bytes(data)
    else:
        archive.touch()  # in use again: prune_bundles keeps it
    return Bundle(release_id(digest), digest[:8], archive, described, egg_pins, tools)


def prune_bundles(directory: Path, releases: tuple[str, ...], dry: bool = False,
                  now: float | None = None) -> list[tuple[Path, int]]:
    """Remove old local bundles: keep those of ``releases`` (a host's release ids), the newest
    ``KEEP_BUNDLES`` and any used within ``KEEP_BUNDLES_SECONDS``. A bundle is reproducible: one
    removed is made again, byte for byte, when its release is deployed again. What went, with sizes."""
    now = time.time() if now is None else now
    hashes = {digest_of(release) for release in releases}
    found = sorted(directory.glob("*.tar.gz"), key=lambda p: p.stat().st_mtime, reverse=True) \
        if directory.is_dir() else []
    doomed = [(p, p.stat().st_size) for p in found[KEEP_BUNDLES:]
              if p.name[:8] not in hashes and now - p.stat().st_mtime > KEEP_BUNDLES_SECONDS]
    if not dry:
        for path, _ in doomed:
            path.unlink(missing_ok=True)
    return doomed


def reproducible_tarball(members: dict[str, bytes]) -> bytes:
    """A .tar.gz of ``members`` that is the same bytes for the same input."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in sorted(members.items()):
            info = tarfile.TarInfo(name)
            info.size, info.mtime, info.mode = len(data), 0, 0o644
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            tar.addfile(info, io.BytesIO(data))
    packed = io.BytesIO()
    with gzip.GzipFile(fileobj=packed, mode="wb", mtime=0) as gz:
        gz.write(raw.getvalue())
    return packed.getvalue()


def _canonical(name: str) -> str:
    return dists.canonicalize_name(name)
