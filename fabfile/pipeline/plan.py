"""The full plan of a deploy: pins, buildout files, programs, restarts and the backup.

What ``deploy --plan`` adds to the release and uploads that ``deploy.describe_plan``
lists. The facts come from this machine (the bundle) and from the host by read-only
commands: the current release's files (one ``python3 -c`` that reads them), what runs,
and whether there is data to back up. Nothing here changes the host.
"""
from __future__ import annotations

import configparser
import difflib
import json
import re
import shlex
import tarfile
from dataclasses import dataclass

from rich.markup import escape

from ..build import bundle as bundles
from .. import commands
from ..data import job as datajob
from ..build import dists
from ..programs import supervisor
from ..switch import job as switch
from ..data.backup import inventory, site_settings
from ..build.bundle import Bundle
from ..remote.site import Facts, Site

# Run on the host: print {name: text or null} for the files named, read in a release directory.
READ_FILES = """\
import json, os, sys
base = sys.argv[1]
found = {}
for name in sys.argv[2:]:
    try:
        with open(os.path.join(base, name), encoding="utf-8", errors="replace") as handle:
            found[name] = handle.read()
    except OSError:
        found[name] = None
print(json.dumps(found))
"""
NOT_DIFFED = {bundles.MANIFEST}
MAX_DIFF_LINES = 200   # a diff longer than this is cut, saying how many lines were left out


@dataclass(frozen=True)
class Release:
    """One side of the comparison: its files' texts and sha256s, and its pins."""
    files: dict[str, str]           # name -> sha256, as its manifest says
    texts: dict[str, str | None]    # name -> text (only the files read)
    pins: dict[str, str]            # canonical name -> version, from the distributions it holds


def pins_of(manifest: dict | None) -> dict[str, str]:
    """``{canonical name: version}`` of every distribution a manifest lists (eggs and third-party)."""
    found = {}
    for filename in (manifest or {}).get("dists", {}):
        named = dists.identify(filename)
        if named:
            found[named[0]] = str(named[1])
    return found


def pin_changes(before: dict[str, str], after: dict[str, str]) -> list[str]:
    """One line per pin that changes: ``name: old -> new``, ``added``, ``removed``; sorted by name."""
    lines = []
    for name in sorted(set(before) | set(after)):
        old, new = before.get(name), after.get(name)
        if old == new:
            continue
        if old is None:
            lines.append(f"  {name}: added {new}")
        elif new is None:
            lines.append(f"  {name}: removed (was {old})")
        else:
            lines.append(f"  {name}: {old} -> {new}")
    return lines


def file_diff(name: str, old: str | None, new: str | None) -> list[str]:
    """A unified diff of one file, current release against the bundle."""
    diff = list(difflib.unified_diff((old or "").splitlines(), (new or "").splitlines(),
                                     f"current/{name}" if old is not None else "/dev/null",
                                     f"new/{name}" if new is not None else "/dev/null", lineterm=""))
    if len(diff) > MAX_DIFF_LINES:
        diff = [*diff[:MAX_DIFF_LINES], f"... {len(diff) - MAX_DIFF_LINES} more lines"]
    return diff


def remote_files(*sides: Release) -> dict[str, str]:
    """``{file in the release: URL}`` of the remote ``extends`` either side froze (see remotefiles)."""
    return {entry["file"]: url for side in sides
            for url, entry in json.loads(side.texts.get(bundles.MANIFEST) or "{}").get("extends", {}).items()}


def changed_files(before: Release, after: Release) -> list[str]:
    """The bundle's files (not the manifest) whose content differs from the current release's."""
    names = (set(before.files) | set(after.files)) - NOT_DIFFED
    return sorted(n for n in names if before.files.get(n) != after.files.get(n))


def supervisor_programs(text: str | None) -> set[str] | None:
    """The programs a release's supervisord.conf runs (blue/green twins as one), or None without one."""
    if text is None:
        return None
    parser = configparser.RawConfigParser(interpolation=None, strict=False)
    parser.read_string(text)
    return {re.sub(r"-(blue|green)$", "", s[8:]) for s in parser.sections() if s.startswith("program:")}


def uses_pin(script: str | None, name: str, version: str) -> bool:
    """Whether a bin script's ``sys.path`` names the egg ``name`` at ``version`` (``NAME-VERSION-py3...``)."""
    if not script:
        return False
    fold = lambda text: re.sub(r"[-_.]+", "_", text.lower())
    return f"{fold(name)}_{fold(version)}_py" in fold(script)


def without_pins(text: str | None, names: set[str]) -> str | None:
    """A host buildout file without the lines pinning ``names`` (our eggs' new versions change it)."""
    if text is None:
        return None
    return "\n".join(line for line in text.splitlines()
                     if dists.canonicalize_name(line.split("=", 1)[0].strip()) not in names)


def restarts(site: Site, facts: Facts, before: Release, after: Release, running: set[str],
             new_programs: set[str]) -> list[str]:
    """Which programs the switch will (re)start and why, by the switch job's rule.

    The front's instances restart in every rolling switch; a program outside the front restarts
    only when its own files change (its command, ``bin/`` script, ``parts/<name>/``: see
    ``onhost/switch.py`` ``fingerprint``). Those files exist only after the build, so: a script
    that names an egg whose pin changes restarts; a change to the buildout files may restart it."""
    config = site.config
    if facts.current is None:
        return [f"  {p.name}: starts (first deploy)" for p in config.programs]
    mode = config.switch
    if mode == "stopstart":
        return [f"  {p.name}: restarts (stopstart: every program is stopped, then started)"
                for p in config.programs]
    in_front = set(config.front.instances) if config.front else set()
    changed = {name: (before.pins[name], after.pins.get(name)) for name in before.pins
               if before.pins[name] != after.pins.get(name)}
    eggs = {dists.canonicalize_name(egg) for egg in (*bundles_eggs(before), *bundles_eggs(after))}
    profile_changed = [n for n in changed_files(before, after) if n != supervisor.CONFIG_IN_RELEASE and not (
        n == bundles.HOST_BUILDOUT_FILE
        and without_pins(before.texts.get(n), eggs) == without_pins(after.texts.get(n), eggs))]
    lines = []
    for program in config.programs:
        name = program.name
        if name in in_front:
            why = ("rolling: taken out of the front, restarted with the new code, put back" if mode == "rolling"
                   else "bluegreen: the other set starts with the new code, then the front flips")
            lines.append(f"  {name}: restarts ({why})")
            continue
        script = before.texts.get(f"bin/{shlex.split(program.command)[0].rsplit('/', 1)[-1]}") \
            if shlex.split(program.command)[0].startswith("bin/") else None
        uses = [f"{pin} {old} -> {new or 'removed'}" for pin, (old, new) in sorted(changed.items())
                if uses_pin(script, pin, old)]
        if name in new_programs:
            lines.append(f"  {name}: starts (a new program)")
        elif name not in running:
            lines.append(f"  {name}: starts (not running now)")
        elif uses:
            lines.append(f"  {name}: restarts (its script uses {', '.join(uses)})")
        elif profile_changed:
            lines.append(f"  {name}: may restart (buildout files change: {', '.join(profile_changed)}; it "
                         f"restarts only if its bin script or parts/{name} change, known after the build)")
        else:
            lines.append(f"  {name}: kept running (its script names no changed pin; no buildout file changes)")
    return lines


def bundles_eggs(side: Release) -> list[str]:
    """Our develop eggs on one side, from its manifest's ``eggs``."""
    return list(json.loads(side.texts.get(bundles.MANIFEST) or "{}").get("eggs", {}))


def read_bundle(bundle: Bundle) -> Release:
    """The bundle's files, as this machine made them."""
    with tarfile.open(bundle.archive) as archive:
        texts = {member.name: archive.extractfile(member).read().decode("utf-8", "replace")
                 for member in archive.getmembers() if member.isfile()}
    manifest = json.loads(texts[bundles.MANIFEST])
    return Release(manifest["files"], texts, pins_of(manifest))


def read_current(site: Site, facts: Facts) -> Release:
    """The current release's files (and its programs' bin scripts), in one read-only command."""
    manifest = facts.manifest or {}
    files = dict(manifest.get("files", {}))
    if facts.current is None:
        return Release({}, {}, {})
    scripts = [shlex.split(p.command)[0] for p in site.config.programs]
    names = sorted({*files, bundles.MANIFEST, *(s for s in scripts if s.startswith("bin/"))})
    result = site.run(commands.python(site.config.python, READ_FILES, site.path("releases", facts.current), *names),
                      changes=False)
    return Release(files, json.loads(result.stdout), pins_of(manifest))


def backup_line(site: Site, facts: Facts) -> str:
    """Whether the deploy backs up before the switch (``[backup] before_deploy`` and data there)."""
    if not site.config.backup_before_deploy:
        return "backup: none ([backup] before_deploy = false)"
    if facts.current is None:
        return "backup: none (nothing deployed yet)"
    try:
        settings = site_settings(site, facts.current)
        exists = inventory(datajob.DataShell(site), settings).data["storages"][settings.main.name]["live"]["exists"]
    except Exception as error:  # noqa: BLE001 - the plan says it cannot tell rather than failing the deploy
        return f"backup: runs before the switch if there is data (cannot tell: {error})"
    if not exists:
        return f"backup: none (no data yet in {settings.main.live})"
    return f"backup: runs before the switch ([backup] before_deploy = true), tagged {facts.current}"


def describe(site: Site, facts: Facts, bundle: Bundle) -> list[str]:
    """The full plan's lines beyond release, eggs and uploads: pins, files, programs, restarts, backup."""
    before, after = read_current(site, facts), read_bundle(bundle)
    lines = []
    pins = pin_changes(before.pins, after.pins) if facts.current else []
    lines.append(f"pins: {len(pins)} change" if facts.current else "pins: all new (first deploy)")
    lines += pins
    changed = changed_files(before, after)
    lines.append(f"buildout files: {len(changed)} change" if facts.current else "buildout files: all new (first deploy)")
    urls = remote_files(before, after)
    for name in changed if facts.current else []:
        lines += ["  " + line for line in file_diff(urls.get(name, name), before.texts.get(name),
                                                     after.texts.get(name))]
    running = set(site.run(switch.running_programs(site.config), changes=False).stdout.split()) \
        if facts.current else set()
    wanted = {p.name for p in site.config.programs}
    had = supervisor_programs(before.texts.get(supervisor.CONFIG_IN_RELEASE))
    if had is None and facts.current:
        had, source = running, "what runs now"
    else:
        source = "the current release's supervisord.conf"
    had = had or set()
    added, removed = sorted(wanted - had), sorted(had - wanted)
    if facts.current:
        lines.append(f"programs (against {source}): "
                     + ("; ".join(filter(None, [added and "added " + " ".join(added),
                                                removed and "removed " + " ".join(removed)])) or "unchanged"))
    lines.append("restarts:")
    lines += restarts(site, facts, before, after, running, set(added) if facts.current else set())
    lines += [f"  {name}: stops (no longer one of [services] programs)" for name in removed]
    lines.append(backup_line(site, facts))
    return [escape(line) for line in lines]  # a diff's [section] lines are text, not rich markup
