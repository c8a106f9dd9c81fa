"""The reference pages of the docs site cover what they claim to: every public name, every
error class, every ``NAQ_*`` variable and ``Settings`` field, every CLI command.

Fast checks of the page sources (no MkDocs run: CI builds the site with ``make docs``)."""

from __future__ import annotations

import importlib
import importlib.util
import re
from collections.abc import Iterator
from dataclasses import fields
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import typer

import naq
from naq.cli.app import app
from naq.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
SRC = ROOT / "src" / "naq"

#: A ``NAQ_*`` word (not the tail of a longer name such as ``_NAQ_CODE``): environment
#: variables, and the stream names and constant the page lists under "Not settings".
VARIABLE_LIKE = re.compile(r"(?<![A-Za-z0-9_])NAQ_[A-Z_]+")


def page(name: str) -> str:
    return (DOCS / name).read_text(encoding="utf-8")


def names_on(text: str, name: str) -> bool:
    """Whether ``text`` names ``name`` as a whole word (not as part of a longer name)."""
    return re.search(rf"(?<![A-Za-z0-9_]){re.escape(name)}(?![A-Za-z0-9_])", text) is not None


def directives(text: str) -> list[str]:
    """The identifiers of the page's mkdocstrings blocks (``::: naq.Queue``)."""
    return re.findall(r"^::: (\S+)\s*$", text, flags=re.MULTILINE)


def resolve(identifier: str) -> object:
    """The object a mkdocstrings identifier names (a module, or an attribute of one)."""
    parts = identifier.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            found: Any = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for attribute in parts[cut:]:
            found = getattr(found, attribute)
        return found
    raise ImportError(identifier)


def test_api_page_names_every_public_name() -> None:
    text = page("reference/api.md")
    missing = [name for name in naq.__all__ if not names_on(text, f"naq.{name}")]
    assert not missing, f"docs/reference/api.md does not name naq.{', naq.'.join(missing)}"


@pytest.mark.parametrize("name", ["reference/api.md", "reference/errors.md"])
def test_every_rendered_identifier_exists(name: str) -> None:
    blocks = directives(page(name))
    assert blocks
    for identifier in blocks:
        resolve(identifier)  # raises for a name that was renamed or removed


def error_classes() -> list[str]:
    return [
        name
        for name in naq.__all__
        if isinstance(getattr(naq, name), type) and issubclass(getattr(naq, name), BaseException)
    ]


def test_errors_page_renders_every_error_class() -> None:
    rendered = set(directives(page("reference/errors.md")))
    assert len(error_classes()) >= 17
    missing = [name for name in error_classes() if f"naq.{name}" not in rendered]
    assert not missing, f"docs/reference/errors.md has no '::: naq.X' block for {missing}"
    table = page("reference/errors.md").split("## The classes")[0]
    untabled = [name for name in error_classes() if not names_on(table, name)]
    assert not untabled, f"docs/reference/errors.md: not in the tree or table: {untabled}"


def source_files() -> Iterator[Path]:
    for path in SRC.rglob("*"):
        if path.is_file() and path.suffix in {".py", ".html", ".js", ".css", ".txt"}:
            yield path


def test_configuration_page_names_every_naq_variable() -> None:
    found = {
        word
        for path in source_files()
        for word in VARIABLE_LIKE.findall(path.read_text(encoding="utf-8"))
    }
    assert {"NAQ_NATS_URL", "NAQ_SIGNING_KEY", "NAQ_UVLOOP"} <= found
    text = page("configuration.md")
    missing = sorted(word for word in found if word not in text)
    assert not missing, f"docs/configuration.md does not name {missing}"


def test_configuration_page_names_every_settings_field() -> None:
    text = page("configuration.md")
    missing = [item.name for item in fields(Settings) if f"`{item.name}`" not in text]
    assert not missing, f"docs/configuration.md does not name the Settings fields {missing}"


def load_gen(name: str) -> ModuleType:
    """A module of docs/_gen (build code of the site, not a package)."""
    spec = importlib.util.spec_from_file_location(name, DOCS / "_gen" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def load_cli_hook() -> ModuleType:
    return load_gen("cli_reference")


def test_sphinx_roles_become_code_spans() -> None:
    roles = load_gen("sphinx_roles")
    text = "Raises :class:`~naq.errors.ConfigurationError`; see :func:`load_settings` and "
    text += ":meth:`the queue <naq.Queue.enqueue>`."
    assert roles.plain_roles(text) == (
        "Raises `ConfigurationError`; see `load_settings` and `the queue`."
    )


def test_comments_above_attributes_become_their_docstrings() -> None:
    comments = load_gen("comment_docstrings")
    lines = (
        "class A:",
        "    #: first line",
        "    #: second line",
        "    x: int = 1",
        "    y = 2  #: y",
    )
    assert comments.comment_above(lines, 4) == "first line\nsecond line"
    assert comments.comment_above(lines, 5) == "y"
    assert comments.comment_above(lines, 2) == ""


def command_paths(command: Any, prefix: str) -> Iterator[str]:
    """``naq``, ``naq worker``, ``naq dlq list``...: every command of the CLI."""
    yield prefix
    for name, sub in sorted(getattr(command, "commands", {}).items()):
        if not sub.hidden:
            yield from command_paths(sub, f"{prefix} {name}")


def test_cli_reference_is_generated_with_every_command() -> None:
    hook = load_cli_hook()
    assert hook.MARKER in page("reference/cli.md")
    generated = hook.cli_markdown()
    headings = set(re.findall(r"^#+ `([^`]+)`$", generated, flags=re.MULTILINE))
    commands = set(command_paths(typer.main.get_command(app), "naq"))
    assert len(commands) > 20
    assert commands <= headings, sorted(commands - headings)
    assert generated.startswith("## `naq`")  # below the page's own title
