"""Running ``python -m naq ...`` as a real subprocess, for tests of what the user sees."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
#: Runs the ``naq`` command after the test's own code (``python -c``: argv[0] is ``-c``).
_MAIN = "import sys\nfrom naq.cli.app import main\nsys.argv = ['naq', *sys.argv[1:]]\nmain()\n"


@dataclass(frozen=True)
class CliResult:
    """Exit code and output of one ``naq`` command."""

    code: int
    stdout: str
    stderr: str

    @property
    def error_lines(self) -> list[str]:
        """The non-empty lines written to stderr."""
        return [line for line in self.stderr.splitlines() if line.strip()]


def naq_cli(
    *args: str, env: dict[str, str] | None = None, timeout: float = 60.0, python_code: str = ""
) -> CliResult:
    """Run ``naq ARGS`` with no inherited ``NAQ_*`` variables plus ``env``; with
    ``python_code``, that code runs first in the same interpreter (e.g. to hide a module)."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith("NAQ_")}
    environ.update(env or {})
    if python_code:
        command = [sys.executable, "-c", f"{python_code}\n{_MAIN}", *args]
    else:
        command = [sys.executable, "-m", "naq", *args]
    proc = subprocess.run(
        command,
        env=environ,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )
    return CliResult(proc.returncode, proc.stdout, proc.stderr)


def table_row(table: str, field: str) -> str:
    """The value of ``field`` in a two-column table the CLI printed ("" when missing)."""
    for line in table.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("│┃|").split("│")]
        if len(cells) == 2 and cells[0] == field:
            return cells[1]
    return ""
