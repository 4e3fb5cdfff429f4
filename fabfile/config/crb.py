"""collective.recipe.backup (CRB) as it is: its option names in ``[backup]``, and its buildout part.

A site moving from CRB brings its configuration unchanged. Every option CRB 4 to 6 knows
is accepted with CRB's syntax and default, in the hostconfig's ``[backup]`` or in a
buildout part with ``recipe = collective.recipe.backup`` (the hostconfig's ``[backup]``
wins), and becomes one of our ``[backup]`` keys. An option that means nothing here is
said at load time (file, section, key and why), never dropped silently. Paths in the
buildout part are the buildout's: ``${buildout:directory}/var/...`` is ``<root>/var/...``
on the host (``var`` is shared by every release); anything else inside the buildout
would be inside a release, and is refused.
"""
from __future__ import annotations

import posixpath
from dataclasses import dataclass
from pathlib import Path

from ..buildout import parts as buildoutparts
from ..buildout import profile as buildoutfiles

RECIPE = "collective.recipe.backup"
TRUE, FALSE = ("true", "yes", "on", "1"), ("false", "no", "off", "0")


@dataclass(frozen=True)
class Option:
    default: str          # CRB's default
    ours: str | None      # the [backup] key it sets here; None: it means nothing here
    meaning: str          # what it does here (docs: the CRB table and the configuration reference; load-time warnings)


OPTIONS: dict[str, Option] = {
    "additional_filestorages": Option("", "additional_filestorages",
                                      "more filestorages, one a line: name [datafs [blobdir]]; each gets its own "
                                      "repositories, and with a blobdir its own blob backups"),
    "alternative_restore_source": Option("", "alternative_restore_source",
                                         "Data FSBACKUPS [BLOBBACKUPS]: where restore --alternative (altrestore) "
                                         "takes the backups from"),
    "alternative_restore_sources": Option("", "alternative_restore_source",
                                          "CRB's old spelling of alternative_restore_source"),
    "archive_blob": Option("false", "blob_archive", "true: each backup's blobs as one tar archive"),
    "backup_blobs": Option("true", "blobstorage", "false: no blob backups (blobstorage empty)"),
    "blob_storage": Option("the zeoserver/zope2instance part's blob-storage", "blobstorage",
                           "the live blobstorage"),
    "blob-storage": Option("the zeoserver/zope2instance part's blob-storage", "blobstorage",
                           "CRB's other spelling of blob_storage"),
    "blob_timestamps": Option("true", None, "every blob backup is named after its backup's time here: "
                                            "there is no other way (false is not possible)"),
    "blobbackuplocation": Option("var/blobstoragebackups", "blob_location", "where the blob backups go"),
    "blobsnapshotlocation": Option("var/blobstoragesnapshots", "blob_snapshot_location",
                                   "where the snapshots' blobs go"),
    "blobziplocation": Option("var/blobstoragezips", "blob_zip_location", "where backup --zip puts its blob archive"),
    "compress_blob": Option("false", "blob_archive", "with archive_blob: the archive is a .tar.gz"),
    "datafs": Option("var/filestorage/Data.fs", "filestorage", "the live Data.fs"),
    "debug": Option("false", "debug", "repozo runs with --verbose, and its output is shown"),
    "enable_fullbackup": Option("true", None, "backup --full is always there"),
    "enable_snapshotrestore": Option("true", "enable_snapshotrestore", "false: restore --snapshot is refused"),
    "enable_zipbackup": Option("false", "enable_zipbackup",
                               "backup --zip and restore --zip (here they are there unless this is false)"),
    "full": Option("false", "full", "true: every backup is a full one"),
    "gzip": Option("true", "gzip", "repozo --gzip"),
    "gzip_blob": Option("false", "blob_archive", "CRB's old spelling of archive_blob"),
    "incremental_blobs": Option("false", "incremental_blobs",
                                "with archive_blob: an incremental backup's blob archive holds only what changed "
                                "since the previous archive (GNU tar --listed-incremental, a .snar record beside "
                                "each archive); a restore unpacks the full archive and each delta up to the date"),
    "keep": Option("2", "keep", "full backups kept, each with its incrementals (0: all)"),
    "keep_blob_days": Option("14", "keep_blob_days", "days of blob backups kept when there is no filestorage "
                                                     "backup to follow (only_blobs)"),
    "location": Option("var/backups", "location", "where the filestorage backups go"),
    "locationprefix": Option("var", "locationprefix", "the directory every backup location not given goes "
                                                      "under (here: <root>/backups)"),
    "only_blobs": Option("false", "only_blobs", "back up and restore the blobstorages only, no repozo"),
    "post_command": Option("", "post_command", "run after a good backup (several lines: each in turn)"),
    "pre_command": Option("", "pre_command", "run before a backup; failing stops it (several lines: each in turn)"),
    "quick": Option("true", "quick", "repozo --quick"),
    "rsync_hard_links_on_first_copy": Option("false", "rsync_hard_links_on_first_copy",
                                             "the first blob copy is hard links to the live blobs"),
    "rsync_options": Option("", "rsync_options", "more options for rsync -a when blobs are copied"),
    "snapshotlocation": Option("var/snapshotbackups", "snapshot_location", "where the snapshots go"),
    "use_rsync": Option("true", "use_rsync", "false: blobs are copied with cp -a (no hard links)"),
    "ziplocation": Option("var/zipbackups", "zip_location", "where backup --zip puts its filestorage backup"),
}
PATHS = {"blob_storage", "blob-storage", "datafs", "blobbackuplocation", "blobsnapshotlocation", "blobziplocation",
         "location", "snapshotlocation", "ziplocation", "locationprefix"}
BUILDOUT_KEYS = {"recipe"}  # a buildout part's own options: not CRB's


class CRBError(Exception):
    """A CRB option that cannot be taken as it is; the message names file, section and key."""


def truth(value: str, where: str) -> bool:
    if value.strip().lower() in TRUE:
        return True
    if value.strip().lower() in FALSE:
        return False
    raise CRBError(f"{where}: {value!r} is not true or false")


def commands_line(value: str) -> str:
    """CRB runs each line of pre_command/post_command in turn: here one line, each joined by &&."""
    return " && ".join(line.strip() for line in value.splitlines() if line.strip())


def additional(value: str, where: str, path) -> str:
    """``name [datafs [blobdir]]`` lines (CRB) as our ``name:datafs:blobdir`` entries, one a line."""
    entries = []
    for line in value.splitlines():
        words = line.split()
        if not words or words[0].startswith("#"):
            continue
        if len(words) == 1:
            entries.extend(words)  # a bare name, or our own name:path
            continue
        if len(words) > 3:
            raise CRBError(f"{where}: {line.strip()!r} is not 'name [datafs [blobdir]]'")
        entries.append(":".join([words[0], *(path(w, where) for w in words[1:])]))
    return "\n".join(entries)


def translate(options: dict[str, str], where: str, path=None) -> tuple[dict[str, str], list[str]]:
    """CRB's options (``{name: value}``, from ``where``: "file: [section]") as our ``[backup]`` keys, and
    what was said about those that mean nothing here. ``path`` turns a buildout part's path into ours
    (in the hostconfig, paths and commands are already ours: one line, relative to <root>/var or backups)."""
    in_buildout = path is not None
    path = path or (lambda value, at: value)
    ours: dict[str, str] = {}
    said: list[str] = []
    for name, value in options.items():
        at = f"{where} {name}"
        option = OPTIONS[name]
        if option.ours is None:
            said.append(f"{at}: ignored: {option.meaning}")
            continue
        if name in PATHS:
            value = path(value.strip(), at)
        if name == "additional_filestorages":
            value = additional(value, at, path)
        elif name in ("pre_command", "post_command") and in_buildout:
            value = commands_line(value)
        elif name == "backup_blobs":
            if truth(value, at):
                continue
            value = ""
        elif name in ("archive_blob", "gzip_blob"):
            if not truth(value, at):
                continue
            value = "tar.gz" if truth(options.get("compress_blob", "false"), at) else "tar"
        elif name == "incremental_blobs" and truth(value, at) and not any(
                truth(options.get(k, "false"), at) for k in ("archive_blob", "gzip_blob")) and in_buildout:
            said.append(f"{at}: ignored: incremental_blobs is used only with archive_blob = true")
            continue
        elif name == "compress_blob":
            truth(value, at)
            if not any(truth(options.get(k, "false"), at) for k in ("archive_blob", "gzip_blob")):
                said.append(f"{at}: ignored: compress_blob is used only with archive_blob = true")
            continue
        if option.ours in ours and ours[option.ours] != value and name not in ("blob_storage", "blob-storage"):
            raise CRBError(f"{at}: sets {option.ours} a second time ({ours[option.ours]!r} and {value!r}): pick one")
        if name in ("blob_storage", "blob-storage") and "backup_blobs" in options \
                and not truth(options["backup_blobs"], at):
            continue  # backup_blobs = false wins: no blobs
        ours[option.ours] = value
    return ours, said


def site_path(value: str, root: str, shared: tuple[str, ...], where: str) -> str:
    """A path of the buildout part as it is on the host: ``${buildout:directory}/var/x`` (or ``var/x``) is
    ``<root>/var/x``; an absolute path stays; anything else inside the buildout is refused."""
    if "~" in value.split("/")[0] or "$" in value.replace("${buildout:directory}", ""):
        raise CRBError(f"{where}: {value!r}: ~ and environment variables are this machine's, not the host's: "
                       f"give an absolute path")
    inside = value.replace("${buildout:directory}", "").lstrip("/") if value.startswith("${buildout:directory}") \
        else (None if value.startswith("/") else value)
    if inside is None:
        return posixpath.normpath(value)
    inside = posixpath.normpath(inside)
    if any(inside == s or inside.startswith(s + "/") for s in shared):
        return posixpath.join(root, inside)
    raise CRBError(f"{where}: {value!r} is inside the buildout, which on the host is a release (replaced by "
                   f"every deploy); only {', '.join(shared)} is kept between releases: put it under "
                   f"${{buildout:directory}}/var or give an absolute path")


def find_part(profile) -> tuple[str | None, list[str]]:
    """The CRB part of a buildout (the first in ``parts``, else the first such section), and what was said
    about other CRB parts (only one is read)."""
    names = [s for s in profile.sections if buildoutparts.option(profile, s, "recipe").split(":")[0] == RECIPE]
    parts = buildoutparts.option(profile, "buildout", "parts").split()
    ordered = [p for p in parts if p in names] + [s for s in names if s not in parts]
    said = [f"[{other}] ({RECIPE}): not read, only [{ordered[0]}] is" for other in ordered[1:]]
    return (ordered[0] if ordered else None), said


def from_buildout(profile_path: Path, root: str, shared: tuple[str, ...]) -> tuple[dict[str, str], list[str]]:
    """Our ``[backup]`` keys from the buildout's CRB part, with the storages of its zeoserver/zope2instance
    parts when the part gives none (as CRB finds them); ({}, []) without such a part."""
    try:
        profile = buildoutfiles.read_profile(profile_path)
    except (buildoutfiles.ProfileError, OSError, ValueError):
        return {}, []  # the deploy says what is wrong with the profile
    part, said = find_part(profile)
    if part is None:
        return {}, []
    where = f"{profile_path}: [{part}]"
    options = {}
    for key in buildoutparts.options(profile, part):
        if key in BUILDOUT_KEYS:
            continue
        if key not in OPTIONS:
            said.append(f"{where} {key}: ignored: not an option of {RECIPE}")
            continue
        options[key] = buildoutparts.option(profile, part, key)
    for key, value in buildoutparts.zope_storages(profile).items():
        crb_key = {"filestorage": "datafs", "blobstorage": "blob_storage"}[key]
        if value and crb_key not in options and not (crb_key == "blob_storage" and "blob-storage" in options):
            options[crb_key] = value
    ours, more = translate(options, where, lambda value, at: site_path(value, root, shared, at))
    return ours, said + more
