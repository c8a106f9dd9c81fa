"""Running ``python -m naq ...`` as a real subprocess, for tests of what the user sees."""

from __future__ import annotations

import fcntl
import os
import select
import signal
import struct
import subprocess
import sys
import termios
import time
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


def run_in_terminal(
    command: list[str], env: dict[str, str], answer: str | None = None, timeout: float = 90.0
) -> tuple[int, str]:
    """Run ``command`` with stdin/stdout/stderr on a 120x40 pseudo-terminal, answering a y/N
    prompt with ``answer`` (one must come then); returns the exit code and everything it
    wrote, raw (colour and cursor codes kept, ``\\r\\n`` as ``\\n``)."""
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    proc = subprocess.Popen(
        command,
        cwd=ROOT,
        env=env,
        stdin=slave,
        stdout=slave,
        stderr=slave,
        start_new_session=True,
    )
    os.close(slave)
    out = b""
    answered = answer is None
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.2)
            if ready:
                try:
                    chunk = os.read(master, 65536)
                except OSError:  # EIO: the child closed the terminal
                    break
                if not chunk:
                    break
                out += chunk
                if not answered and b"[y/N]" in out:
                    assert answer is not None
                    os.write(master, answer.encode() + b"\n")
                    answered = True
            elif proc.poll() is not None:
                break
        code = proc.wait(30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
        os.close(master)
    text = out.decode(errors="replace").replace("\r\n", "\n")
    assert answered, f"no [y/N] prompt seen; output:\n{text}"
    return code, text
