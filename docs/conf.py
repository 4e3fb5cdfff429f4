"""Sphinx configuration: the manual in MyST Markdown, with the references generated from the code."""
import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
sys.path[:0] = [str(DOCS / "_ext"), str(DOCS.parent)]  # our extensions; fabfile/ and tasks.py for the references

project = "buildout-deploy"
author = "buildout-deploy's authors"
extensions = ["myst_parser", "sphinx.ext.graphviz", "references"]
source_suffix = {".md": "markdown"}
exclude_patterns = ["_build", "_generated", "requirements.txt"]
myst_heading_anchors = 4            # [text](page.md#a-heading) links, checked by the build
myst_enable_extensions = ["colon_fence"]
graphviz_output_format = "svg"
html_theme = "alabaster"
html_theme_options = {"description": "one-command deploys, rollbacks and backups of zc.buildout sites",
                      "page_width": "1200px", "sidebar_width": "240px"}  # room for the reference tables
html_static_path = []
smartquotes = False                 # --to stays two hyphens, as typed
