"""Sphinx extension: writes the references and the package picture into ``docs/_generated/`` as the build starts.

The pages ``reference/configuration.md``, ``reference/tasks.md`` and ``architecture.md``
include them, so the site always shows what the code accepts, runs and imports; a file is
rewritten only when it changed.
"""
from __future__ import annotations

from pathlib import Path

import configref
import packagegraph
import taskref

GENERATED = {"configuration.md": configref.render, "tasks.md": taskref.render, "packages.dot": packagegraph.dot}


def write(directory: Path) -> None:
    """Each reference into ``directory``, left alone when its text is the same."""
    directory.mkdir(exist_ok=True)
    for name, render in GENERATED.items():
        path, text = directory / name, render()
        if not path.is_file() or path.read_text() != text:
            path.write_text(text)


def write_references(app) -> None:
    """On ``builder-inited``: the generated files beside the pages that include them."""
    write(Path(app.srcdir) / "_generated")


def setup(app):
    app.connect("builder-inited", write_references)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
