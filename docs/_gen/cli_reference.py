"""MkDocs hook: the CLI reference, generated from naq's typer app at every build.

``docs/reference/cli.md`` holds the marker line ``<!-- naq-cli-reference -->``; this hook
replaces it with the Markdown that typer itself writes for ``naq.cli.app`` (``typer
naq.cli.app utils docs``), run with the Python that runs MkDocs, so the page describes the
``naq`` installed beside it. Any failure stops the build: the page never ships empty or stale.
"""

from __future__ import annotations

import subprocess
import sys
from typing import Any

MARKER = "<!-- naq-cli-reference -->"
PAGE = "reference/cli.md"


class CliReferenceError(RuntimeError):
    """The CLI reference could not be generated; the message says why."""


def cli_markdown() -> str:
    """Every command, subcommand and option of ``naq``, as Markdown whose top heading is
    level 2 (the page keeps its own title)."""
    command = [sys.executable, "-m", "typer", "naq.cli.app", "utils", "docs", "--name", "naq"]
    done = subprocess.run(command, capture_output=True, text=True, check=False, timeout=120)
    if done.returncode != 0 or not done.stdout.strip():
        raise CliReferenceError(
            f"{' '.join(command[1:])} failed (exit {done.returncode}): {done.stderr.strip()}"
        )
    lines = done.stdout.strip().splitlines()
    if lines[0].startswith("# "):  # the app's own title: one level below the page title
        lines[0] = "#" + lines[0]
    return "\n".join(lines) + "\n"


def on_page_markdown(markdown: str, *, page: Any, **_: Any) -> str:
    """Fill the CLI reference page; leave every other page as it is."""
    if page.file.src_uri != PAGE:
        return markdown
    if MARKER not in markdown:
        raise CliReferenceError(f"{PAGE} lost its marker line {MARKER}")
    return markdown.replace(MARKER, cli_markdown())
