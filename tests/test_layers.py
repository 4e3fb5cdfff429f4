"""The import-layering contract of ``fabfile/``: every arrow points down, no circle, no import
hidden in a function to dodge one (but in a task, which loads its engine when it runs).

The layers are named in ``pyproject.toml`` (``[tool.importlinter]``) and in the README's layout
section and docs/architecture.md (whose picture is drawn from this graph); import-linter checks them with grimp's graph, which counts the imports inside functions too.
"""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import grimp

PROJECT = Path(__file__).resolve().parent.parent
PACKAGE = PROJECT / "fabfile"


def test_every_import_points_down_the_layers_of_pyproject():
    checked = subprocess.run([Path(sys.executable).parent / "lint-imports", "--no-cache"], cwd=PROJECT,
                             capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "1 kept, 0 broken" in checked.stdout


def strongly_connected(edges: dict[str, list[str]]) -> list[list[str]]:
    """The circles of a graph (Tarjan's strongly connected components of more than one node)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    circles: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for other in edges.get(node, ()):
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            circle = []
            while True:
                member = stack.pop()
                circle.append(member)
                if member == node:
                    break
            if len(circle) > 1:
                circles.append(sorted(circle))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return circles


def test_the_circle_finder_finds_a_circle_of_three():
    assert strongly_connected({"a": ["b"], "b": ["c"], "c": ["a"], "d": ["a"]}) == [["a", "b", "c"]]
    assert strongly_connected({"a": ["b"], "b": [], "c": ["a"]}) == []


def test_no_module_of_fabfile_imports_itself_back_through_others(monkeypatch):
    monkeypatch.syspath_prepend(str(PROJECT))
    graph = grimp.build_graph("fabfile", cache_dir=None)
    edges = {module: sorted(graph.find_modules_directly_imported_by(module)) for module in graph.modules}
    assert strongly_connected(edges) == []


def test_no_module_imports_one_of_ours_inside_a_function():
    hidden = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if "onhost" in path.parts:  # scripts run on the host as one file: no package to import from
            continue
        if "tasks" in path.parts:  # a task loads its engine when it runs: fab --list reads only the tasks
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                for inner in ast.walk(node):
                    if isinstance(inner, ast.ImportFrom) and (inner.level or (inner.module or "").startswith("fabfile")):
                        hidden.append(f"{path.relative_to(PROJECT)}:{inner.lineno}")
    assert hidden == []
