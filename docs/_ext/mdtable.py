"""Markdown table cells from plain text: escaped outside code spans, so that ``<root>`` or ``*`` stay text."""
from __future__ import annotations


def cell(text: str) -> str:
    """``text`` as one Markdown table cell: ``|`` escaped everywhere, ``<`` ``*`` ``_`` outside `code`."""
    parts = text.replace("\n", " ").split("`")
    for index in range(0, len(parts), 2):  # the even parts are outside code spans
        for character in "\\<*_[":
            parts[index] = parts[index].replace(character, "\\" + character)
    return "`".join(parts).replace("|", "\\|")


def table(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> str:
    """A Markdown table; the cells are taken as they are (escape them with ``cell``)."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines) + "\n"
