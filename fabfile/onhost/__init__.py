"""Python scripts that run on the host with its own ``python3`` (stdlib only).

Each is sent as the text of ``python3 -c`` with quoted arguments, so the host
needs nothing of ours installed; each prints one JSON document or exits non-zero.
"""
from pathlib import Path


def source(name: str) -> str:
    """The text of the script ``name`` (``facts``, ``health``)."""
    return (Path(__file__).parent / f"{name}.py").read_text()
