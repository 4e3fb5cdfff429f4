"""The manual cannot drift from the code: the references list what the loader accepts and the tasks take.

The configuration and task references are the Markdown the docs build includes
(``docs/_ext/configref.py``, ``docs/_ext/taskref.py``); these tests read that text as a
reader would, and hold it against the loader's own check of a key (``schema.check_known``)
and against the tasks ``fab`` and ``invoke`` list. The README stays a front page whose links
land (the docs build checks its own links; the README is not part of it).
"""
from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

import pytest

from fabfile.config import hostconfig, keydocs, schema
from fabfile.config.model import ConfigError

PROJECT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT / "docs" / "_ext"))

import configref  # noqa: E402  (docs/_ext: what the docs build runs)
import taskref  # noqa: E402

SECTION = re.compile(r"^## `\[(?P<section>[^\]]+)\]`$")
ROW = re.compile(r"^\| `(?P<key>[^`]+)` \|")
TASK = re.compile(r"^### `(?P<command>fab|invoke) (?P<name>[^`]+)`$")


def reference_keys(markdown: str) -> set[tuple[str, str]]:
    """(section, key) of every row of the configuration reference, as written there: ``program:NAME``."""
    keys, section = set(), None
    for line in markdown.splitlines():
        if found := SECTION.match(line):
            section = found["section"]
        elif line.startswith("## "):
            section = None  # the kinds' table, not keys
        elif section and (found := ROW.match(line)):
            keys.add((section, found["key"]))
    return keys


def schema_keys() -> set[tuple[str, str]]:
    """(section, key) of every key the schema holds, written as a hostconfig writes them."""
    return {(section.replace("*", "NAME"), "section:option" if key == "*" else key)
            for section, keys in schema.SCHEMA.items() for key in keys}


def test_the_configuration_reference_lists_every_key_of_the_schema_and_nothing_else():
    listed = reference_keys(configref.render())
    assert len(listed) > 100
    assert listed - schema_keys() == set(), "in the reference, not in the schema"
    assert schema_keys() - listed == set(), "in the schema, missing from the reference"


def test_the_loader_accepts_every_key_of_the_reference():
    for section, key in reference_keys(configref.render()):
        concrete = section.replace("NAME", "x")
        schema.check_known(concrete, "ports:x" if key == "section:option" else key, f"[{section}] {key}")


def test_the_loader_refuses_a_key_the_reference_does_not_list():
    listed = reference_keys(configref.render())
    assert ("front", "hsts") in listed and ("front", "hsts_max_age") not in listed
    with pytest.raises(ConfigError, match="unknown key"):
        schema.check_known("front", "hsts_max_age", "[front] hsts_max_age")


def test_every_meaning_beside_the_schema_names_a_key_and_a_kind_it_has():
    for section, keys in keydocs.KEYS.items():
        assert set(keys) <= set(schema.SCHEMA[section]), section
        for key, (default, meaning) in keys.items():
            assert meaning and "\n" not in meaning, (section, key)
    kinds = {kind for keys in schema.SCHEMA.values() for kind in keys.values()}
    assert kinds <= set(keydocs.KINDS), kinds - set(keydocs.KINDS)


def literal_defaults() -> dict[tuple[str, str], object]:
    """``get(SECTION, KEY, LITERAL)`` in hostconfig.py: the defaults the loader applies, as written there."""
    tree = ast.parse(Path(hostconfig.__file__).read_text())
    found = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "get" and len(node.args) == 3 \
                and all(isinstance(a, ast.Constant) for a in node.args):
            found[(node.args[0].value, node.args[1].value)] = node.args[2].value
    return found


def test_the_documented_defaults_are_those_the_loader_applies():
    defaults = literal_defaults()
    assert len(defaults) > 40
    for (section, key), value in defaults.items():
        if value is None:
            continue
        shown = str(value).lower() if isinstance(value, bool) else str(value)
        documented = keydocs.KEYS[section][key][0]
        if shown == "":  # an empty default: none (the meaning says what that is)
            assert documented in ("", "none"), (section, key, documented)
        else:
            assert documented.strip("`") == shown, (section, key, documented, shown)


def test_the_task_reference_lists_every_task_with_its_options():
    import fabfile
    import tasks
    markdown = taskref.render()
    listed = {(m["command"], m["name"]) for m in map(TASK.match, markdown.splitlines()) if m}
    expected = {("fab", name) for name in fabfile.ns.task_names} | {("invoke", name) for name in tasks.ns.task_names}
    assert listed == expected
    for name in fabfile.ns.task_names:
        section = markdown.split(f"### `fab {name}`\n", 1)[1].split("\n### ", 1)[0]
        first_line = fabfile.ns[name].__doc__.strip().splitlines()[0]
        assert first_line in section.replace("\\", ""), name  # its --list line, Markdown's escapes aside
        for argument in fabfile.ns[name].get_arguments():
            flag = argument.names[0]
            assert (f"`{flag.upper()}`" if argument.positional else f"`--{flag}`") in section, (name, flag)


def test_the_readme_is_a_front_page_of_at_most_250_lines():
    lines = (PROJECT / "README.md").read_text().splitlines()
    assert len(lines) <= 250, len(lines)


def test_the_readme_names_every_task_and_the_layers():
    import fabfile
    import tasks
    readme = (PROJECT / "README.md").read_text()
    for name in [*fabfile.ns.task_names, *tasks.ns.task_names]:
        assert f"| `{name}` |" in readme, name
    for layer in ("tasks", "pipeline", "state", "data", "host", "sites", "switch", "front", "remote", "build",
                  "programs", "config", "buildout", "backups"):
        assert re.search(rf"^  (\S+/ )?{layer}/ ", readme, re.M), layer


def slug(heading: str) -> str:
    """A heading's anchor as GitHub and MyST make it: lower case, punctuation dropped, spaces as dashes."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def test_the_readme_links_to_pages_and_headings_that_exist():
    readme = (PROJECT / "README.md").read_text()
    links = re.findall(r"\]\(((?!https?:)[^)#]+)(?:#([^)]+))?\)", readme)
    assert len(links) > 15
    for target, anchor in links:
        page = PROJECT / target
        assert page.is_file(), target
        if anchor:
            headings = re.findall(r"^#{1,6} (.+)$", page.read_text(), re.M)
            assert anchor in {slug(h) for h in headings}, (target, anchor)
