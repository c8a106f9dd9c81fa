"""Griffe extension: ``#:`` comments as the docstrings of the attributes they describe.

naq documents attributes and dataclass fields the Sphinx way, with ``#:`` comment lines
just above them (or ``#:`` at the end of the line). Griffe reads only string docstrings, so
this extension gives each attribute without one the text of its ``#:`` comments.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import griffe


@functools.cache
def source_lines(path: Path) -> tuple[str, ...]:
    """The lines of a source file (read once per build)."""
    return tuple(path.read_text(encoding="utf-8").splitlines())


def comment_above(lines: tuple[str, ...], lineno: int) -> str:
    """The ``#:`` comment of the statement on line ``lineno`` (1-based): the contiguous
    ``#:`` lines just above it, else a trailing ``#: ...`` on the line itself."""
    found: list[str] = []
    index = lineno - 2
    while index >= 0 and lines[index].strip().startswith("#:"):
        found.insert(0, lines[index].strip()[2:].strip())
        index -= 1
    if found:
        return "\n".join(found)
    code, marker, trailing = lines[lineno - 1].partition("  #: ")
    return trailing.strip() if marker and code.strip() else ""


class CommentDocstrings(griffe.Extension):
    """Give attributes their ``#:`` comments as docstrings."""

    def on_attribute_instance(self, *, attr: griffe.Attribute, **_: Any) -> None:
        """Set ``attr``'s docstring from its ``#:`` comment, unless it has a docstring."""
        if attr.docstring is not None or attr.lineno is None:
            return
        path = attr.filepath
        if not isinstance(path, Path) or path.suffix != ".py":
            return
        text = comment_above(source_lines(path), attr.lineno)
        if text:
            attr.docstring = griffe.Docstring(text, lineno=attr.lineno, parent=attr)
