"""Packaging: one version source, shown by ``naq --version``, and the installed metadata."""

from __future__ import annotations

import importlib.metadata
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

import naq
from naq.__about__ import __version__

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"


def test_the_version_is_written_only_in_about() -> None:
    project = tomllib.loads(PYPROJECT.read_text())
    assert "version" not in project["project"]
    assert "version" in project["project"]["dynamic"]
    assert project["tool"]["hatch"]["version"]["path"] == "src/naq/__about__.py"
    assert naq.__version__ is __version__


def test_installed_metadata_reads_the_same_version() -> None:
    assert importlib.metadata.version("naq") == __version__


def test_installed_metadata_declares_the_mit_license() -> None:
    meta = importlib.metadata.metadata("naq")
    assert meta["License-Expression"] == "MIT"
    assert "LICENSE" in (meta.get_all("License-File") or [])


@pytest.mark.parametrize("flag", ["--version", "-V"])
def test_cli_prints_its_version_and_exits_0(flag: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "naq", flag], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"naq {__version__}\n"
