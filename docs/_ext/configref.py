"""The configuration reference, made from the schema the loader checks against and the meanings beside it.

Every section and key of ``fabfile.config.schema.SCHEMA`` becomes a row: its kind, its default
and one line of meaning (``fabfile.config.keydocs``; collective.recipe.backup's own names from
``fabfile.config.crb``). A key without a meaning stops the docs build.
"""
from __future__ import annotations

from collections.abc import Iterator

from fabfile.config import crb, keydocs, schema

from mdtable import cell, table

WORDS = ("required", "you", "none")  # defaults that are words, not values


def section_title(section: str) -> str:
    """``[program:NAME]`` for ``program:*``: how a section is written in a hostconfig."""
    return f"[{section[:-1]}NAME]" if section.endswith(":*") else f"[{section}]"


def key_title(key: str) -> str:
    """``section:option`` for ``*``: the form any key of ``[green]`` and ``[overrides]`` takes."""
    return "section:option" if key == "*" else key


def anchor(section: str) -> str:
    """The target of a section's table, for links from other pages: ``config-front``, ``config-program-name``."""
    return "config-" + section.replace(":*", "-name")


def entry(section: str, key: str) -> tuple[str, str]:
    """(default, meaning) of a key: its own, ``[host]``'s for a fleet's host, or CRB's for CRB's names."""
    own = keydocs.KEYS.get(section, {})
    if key in own:
        return own[key]
    if section == "host:*" and key in keydocs.KEYS["host"]:
        default, meaning = keydocs.KEYS["host"][key]
        return default, f"as `[host] {key}`, for this host: {meaning}"
    if schema.SCHEMA[section][key] == "crb":
        option = crb.OPTIONS[key]
        sets = f"sets `{option.ours}`" if option.ours else "means nothing here (a warning at load time)"
        return option.default, f"collective.recipe.backup's name; {sets}: {option.meaning}"
    raise LookupError(f"[{section}] {key}: no meaning in fabfile/config/keydocs.py: add one beside the schema")


def shown_default(default: str) -> str:
    """A default as a cell: a bare value in code, words and composed texts as they are, none as a dash."""
    if not default:
        return "—"
    if default in WORDS or "`" in default or " " in default:
        return cell(default)
    return f"`{default}`"


def rows() -> Iterator[tuple[str, str, str, str, str]]:
    """(section, key, kind, default, meaning) of every key the loader accepts, in the schema's order."""
    for section, keys in schema.SCHEMA.items():
        for key, kind in keys.items():
            default, meaning = entry(section, key)
            yield section, key, kind, default, meaning


def render() -> str:
    """The reference as Markdown: a table per section, then the kinds."""
    out = []
    by_section: dict[str, list] = {}
    for section, key, kind, default, meaning in rows():
        by_section.setdefault(section, []).append(
            (f"`{key_title(key)}`", f"[{kind}](#config-kinds)", shown_default(default), cell(meaning)))
    for section, section_rows in by_section.items():
        out.append(f"({anchor(section)})=\n## `{section_title(section)}`\n")
        out.append(table(("key", "kind", "default", "meaning"), section_rows))
    out.append("(config-kinds)=\n## Kinds\n")
    used = dict.fromkeys(row[2] for row in rows())
    out.append(table(("kind", "a value is"), [(f"`{kind}`", cell(keydocs.KINDS[kind])) for kind in used]))
    return "\n".join(out)
