"""The picture of ``fabfile/``'s packages, drawn from its imports as they are: Graphviz's DOT text.

Each package (and each top-level module) is a box, placed on the rank of its layer in
``pyproject.toml``'s import-linter contract, top first; an arrow is an import, read from the
code with grimp (the graph import-linter checks). An arrow that a longer path already implies
is left out (a transitive reduction), so that the picture shows the layering, not every line.
"""
from __future__ import annotations

import tomllib
from pathlib import Path

import grimp

from fabfile.paths import PROJECT


def layers(pyproject: Path = PROJECT / "pyproject.toml") -> list[list[str]]:
    """The contract's layers, top first, each a list of modules (``fabfile.data | fabfile.host``)."""
    contract = tomllib.loads(pyproject.read_text())["tool"]["importlinter"]["contracts"][0]
    return [[name.strip() for name in layer.split("|")] for layer in contract["layers"]]


def imports(modules: list[str]) -> set[tuple[str, str]]:
    """(importer, imported) between ``modules``, each counted with what is inside it."""
    graph = grimp.build_graph("fabfile", cache_dir=None)
    return {(a, b) for a in modules for b in modules
            if a != b and graph.direct_import_exists(importer=a, imported=b, as_packages=True)}


def reduced(edges: set[tuple[str, str]]) -> set[tuple[str, str]]:
    """``edges`` without those a path of two or more edges already gives (the graph has no circle)."""
    after: dict[str, set[str]] = {}
    for a, b in edges:
        after.setdefault(a, set()).add(b)

    def reachable(start: str, skip: tuple[str, str]) -> set[str]:
        seen, todo = set(), [start]
        while todo:
            node = todo.pop()
            for nxt in after.get(node, ()):
                if (node, nxt) != skip and nxt not in seen:
                    seen.add(nxt)
                    todo.append(nxt)
        return seen

    return {(a, b) for a, b in edges if b not in reachable(a, (a, b))}


def dot() -> str:
    """The DOT text: one rank per layer, the reduced imports as arrows."""
    ranks = layers()
    modules = [m for rank in ranks for m in rank]
    lines = ["digraph packages {", '  rankdir=TB; nodesep=0.25; ranksep=0.35;',
             '  node [shape=box, style="rounded,filled", fillcolor="#eef3f8", fontname="sans-serif", fontsize=11];',
             '  edge [color="#667788", arrowsize=0.6];']
    for rank in ranks:
        names = " ".join(f'"{m}"' for m in rank)
        lines.append(f"  {{ rank=same; {names} }}")
    for module in modules:
        lines.append(f'  "{module}" [label="{module.removeprefix("fabfile.")}"];')
    for a, b in sorted(reduced(imports(modules))):
        lines.append(f'  "{a}" -> "{b}";')
    lines.append("}")
    return "\n".join(lines) + "\n"
