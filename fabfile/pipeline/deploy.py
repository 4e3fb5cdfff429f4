"""The deploy's steps on one host: bundle, push, build beside the serving release, switch and check.
``rollout`` runs them over every host of a config."""
from __future__ import annotations

import json
import time
from datetime import datetime, timezone

from invoke import Exit, UnexpectedExit

from ..build import bundle as bundles
from ..front import certificates, haproxy as front
from .. import commands, output
from ..build import datadirs, dists, hosteggs, venv
from ..switch import hooks, job as switch
from . import releases
from ..buildout.profile import ProfileError
from ..build.bundle import Bundle
from ..build.dists import DistError, sha256
from ..build.eggs import EggBuildError
from ..remote.site import Facts, Site, who

def missing_dists(bundle: Bundle, facts: Facts, index: str | None = None):
    """The distributions whose sha256 the host does not have yet; with a package ``index``
    the host downloads the rest itself, so only our eggs and the venv's tools."""
    ours = {dists.canonicalize_name(name) for name in (*bundle.eggs, *bundle.tools)}
    return [d for d in bundle.dists if facts.dists.get(d.name) != d.sha256
            and (index is None or dists.identify(d.name)[0] in ours)]


def push(site: Site, facts: Facts, bundle: Bundle, release_id: str) -> int:
    """Upload what the host lacks, check it, and unpack the bundle into ``releases/<id>``; bytes sent."""
    incoming = site.config.incoming_path
    site.run(commands.and_then(commands.make_directories(incoming, site.path("releases"), site.config.eggs_path),
                               commands.make_directories(site.path("var"), mode="0700")))
    sent = 0
    missing = missing_dists(bundle, facts, site.config.index)
    for dist in missing:
        site.put(dist.path, f"{incoming}/{dist.name}")
        sent += dist.path.stat().st_size
    archive = f"bundle-{bundle.digest}.tar.gz"
    site.put(bundle.archive, f"{incoming}/{archive}")
    sent += bundle.archive.stat().st_size
    checksums = {d.name: d.sha256 for d in missing}
    sums = "".join(f"{digest}  {name}\n" for name, digest in sorted(checksums.items()))
    try:
        site.run(commands.verify_checksums(incoming, {**checksums, archive: sha256(bundle.archive)}))
    except UnexpectedExit as failure:
        raise Exit(f"uploads did not arrive intact, nothing was changed: {failure.result.stdout.strip()}", 1)
    steps = [commands.unpack(f"{incoming}/{archive}", site.path("releases", release_id))]
    if missing:
        steps[:0] = [commands.join("mv", "-f", "--", *(f"{incoming}/{name}" for name in sorted(checksums)),
                                   site.config.dists_path),
                     commands.append_text(f"{site.config.dists_path}/SHA256SUMS", sums)]
    site.run(commands.and_then(*steps))
    return sent


def ensure_venv(site: Site, facts: Facts, tools: dict[str, str]) -> bool:
    """``<root>/venv`` with exactly the pinned zc.buildout and supervisor; False when it already was
    (bootstrap-host made it, or an earlier deploy)."""
    if facts.venv == venv.requirements(tools):
        output.say("  [dim]ok[/] <root>/venv as pinned")
        return False
    site.run(venv.make(site.config, tools))
    return True


def build(site: Site, release_id: str, color: str = "blue") -> None:
    """Run buildout in the new release, offline, while the old release keeps serving; under blue/green
    as the set that is not serving (``color``)."""
    release_dir = site.path("releases", release_id)
    profile = bundles.GREEN_BUILDOUT_FILE if color == "green" else bundles.HOST_BUILDOUT_FILE
    pid_file = f"{release_dir}/.deploy/buildout.pid"
    site.run(commands.and_then(
        datadirs.link_for_build(site.config, release_dir),
        commands.make_directories(f"{release_dir}/.deploy"),
    ))
    private = write_secrets(site)
    started = time.monotonic()
    buildout = commands.with_pid_file(pid_file, *hosteggs.build_command(site.config, profile),
                                      env=venv.pip_offline(site.config))
    try:
        site.run(commands.in_directory(release_dir, buildout))
    except UnexpectedExit as failure:
        tail = "\n".join((failure.result.stdout + failure.result.stderr).strip().splitlines()[-25:])
        raise Exit(f"buildout failed in {release_dir}; current is untouched:\n{site.config.redact(tail)}", 1)
    except BaseException:
        site.run(commands.kill_from_pid_file(pid_file), warn=True)
        raise
    for left in datadirs.make_data_directories(site, release_dir):
        output.say(f"  [yellow]not copied to {site.path()}: {left} (made in var/ while building)[/]")
    built = json.dumps({"who": who(), "when": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                        "seconds": round(time.monotonic() - started, 1)})
    if private:  # buildout records each part's options, a secret override's value too
        site.run(commands.join("chmod", "go-rwx", f"{release_dir}/.installed.cfg"))
    site.run(commands.and_then(commands.remove(pid_file),
                               commands.write_file(f"{release_dir}/.deploy/color", color + "\n"),
                               commands.write_file(f"{release_dir}/.deploy/built.json", built)))


def build_release(site: Site, facts: Facts, bundle: Bundle, release_id: str) -> int:
    """push, python for buildout, buildout: ``releases/<id>`` built beside the serving release, which
    keeps serving; the bytes sent. ``deploy`` and ``push`` both build through here."""
    with output.step("push"):
        sent = push(site, facts, bundle, release_id)
    with output.step("python for buildout"):
        ensure_venv(site, facts, bundle.tools)
    with output.step("buildout"):
        build(site, release_id, new_color(site, facts))
    return sent


def write_secrets(site: Site) -> bool:
    """``<root>/secrets.cfg``, the overrides that hold secrets, written over SFTP as 0600 (never on a
    command line) before buildout reads it; False when no override holds a secret."""
    text = bundles.secrets_buildout(site.config)
    if text is None:
        return False
    site.write_private(site.path(bundles.SECRETS_FILE), text)
    return True


def new_color(site: Site, facts: Facts) -> str:
    """The set a new release is built as: under blue/green, the one that does not serve now."""
    if site.config.switch != "bluegreen" or facts.current is None:
        return "blue"
    return "green" if facts.color == "blue" else "blue"


def switch_and_check(site: Site, release_id: str, leaving: str | None, live: str = "blue") -> dict:
    """Switch on the host (one job that finishes or goes back by itself); its verdict, or exit 1."""
    if site.config.front and not site.config.front.admin:  # a fleet's app host: the front is elsewhere
        with output.step("front"):
            output.say(front.apply(site, live))
        if site.config.front.tls == "acme":
            with output.step("certificate"):
                done, message = certificates.obtain(site)
            output.say(message if done else f"[yellow]warning: {message}[/]")
    verdict = switch.run_switch(site, release_id, leaving, live=live, with_hooks=True)
    if verdict["result"] == "ok":
        output.say(f"restarted: {switch.describe(verdict)}")
        return verdict
    marked = "marked bad" if verdict["result"] == "rolled-back" else "not marked bad (not its fault)"
    back = switch.what_serves(site, verdict, leaving)
    raise Exit(f"deploy of {release_id} failed ({site.config.redact(verdict.get('error', '?'))}); "
               f"{back}; {release_id} {marked}", 1)


def run_hook_before_deploy(site: Site) -> None:
    """``[hooks] before_deploy`` here, in the buildout directory; failing stops the deploy before anything
    is sent."""
    if not site.config.hook("before_deploy"):
        return
    with output.step("before_deploy hook"):
        result = hooks.run_local(site, "before_deploy")
    if not result.ok:
        raise Exit(f"{result.describe()}: nothing was sent to {site.config.name}", 1)


def run_hook_before_switch(site: Site, release_id: str) -> None:
    """``[hooks] before_switch`` on the host in the new release; failing: no switch, the release marked bad."""
    if not site.config.hook("before_switch"):
        return
    with output.step("before_switch hook"):
        result = hooks.run_on_host(site, "before_switch", site.path("releases", release_id), release_id)
    if result and not result.ok:  # None: --dry
        releases.mark_bad(site, release_id, result.describe())
        raise Exit(f"{result.describe()}; nothing was switched, {release_id} marked bad", 1)


def describe_plan(site: Site, facts: Facts, bundle: Bundle, release_id: str) -> list[str]:
    """What a deploy of ``bundle`` would do, in lines: release, eggs, uploads, no-op."""
    missing = missing_dists(bundle, facts, site.config.index)
    lines = [f"release {release_id} for {site.config.name} ({facts.target.key})"]
    before = facts.current_eggs
    for name, version in sorted(bundle.eggs.items()):
        if before.get(name) != version:
            lines.append(f"egg {name}: {before.get(name, 'none')} -> {version}")
    lines.append(f"upload {len(missing)} of {len(bundle.dists)} distributions "
                 f"({sum(d.path.stat().st_size for d in missing)} bytes)"
                 + "".join(f"\n  {d.name}" for d in missing))
    noop = facts.current is not None and bundles.digest_of(facts.current) == bundle.digest
    lines.append("no-op: the host already runs this content" if noop else "not a no-op")
    return lines


def prepare(site: Site, facts: Facts, allow_dirty: bool, wheels: list | None = None) -> Bundle:
    """release-eggs (unless a fleet's first host made ``wheels``), pin and bundle, locally, for this
    host's platform."""
    if wheels is None:
        wheels = release_wheels(site, facts, allow_dirty)
    try:
        with output.step("bundle"):
            return bundles.make(site.config, facts.target, wheels)
    except (ProfileError, DistError) as error:
        raise Exit(str(error), 1)


def release_wheels(site: Site, facts: Facts, allow_dirty: bool) -> list:
    """The develop eggs as wheels, a new version for changed source only."""
    if allow_dirty and not site.config.allow_dirty:
        raise Exit(f"{site.config.path}: [deploy] allow_dirty = false: {site.config.name} "
                   f"takes committed code only", 2)
    known = tuple(str(found[1]) for found in map(dists.identify, facts.dists) if found)
    try:
        with output.step("release-eggs"):
            return bundles.release_eggs(site.config, known=known, allow_dirty=allow_dirty)
    except (bundles.DirtyCheckout, ProfileError, EggBuildError, DistError) as error:
        raise Exit(str(error), 1)
