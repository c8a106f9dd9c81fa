"""Griffe extension: Sphinx cross-reference roles in naq's docstrings shown as code.

naq's docstrings name other objects the Sphinx way (``:class:`~naq.errors.ConfigurationError```,
``:func:`load_settings```), which Markdown would print as they are. While mkdocstrings loads
the docstrings, each role becomes a code span of its target: the last part of the dotted
name with ``~`` (as Sphinx shows it), the whole name otherwise, or the title of a
``Title <target>`` form.
"""

from __future__ import annotations

import re
from typing import Any

import griffe

ROLE = re.compile(r":(?:py:)?(?:class|func|meth|attr|data|mod|exc|obj|const):`([^`]+)`")


def shown_name(target: str) -> str:
    """What Sphinx would show for the text of a role (``~a.b.C`` is ``C``)."""
    titled = re.fullmatch(r"(.+?)\s*<[^>]+>", target)
    if titled:
        return titled.group(1)
    if target.startswith("~"):
        return target[1:].rsplit(".", 1)[-1]
    return target.lstrip("!")


def plain_roles(text: str) -> str:
    """``text`` with every Sphinx cross-reference role turned into a Markdown code span."""
    return ROLE.sub(lambda match: f"`{shown_name(match.group(1))}`", text)


class SphinxRolesAsCode(griffe.Extension):
    """Rewrite the roles of every docstring as code spans, once its package is loaded (so
    docstrings other extensions set while loading are rewritten too)."""

    def on_object(self, *, obj: griffe.Object, **_: Any) -> None:
        """Rewrite ``obj``'s own docstring, if it has one."""
        if obj.docstring is not None:
            obj.docstring.value = plain_roles(obj.docstring.value)
