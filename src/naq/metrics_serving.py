"""Where the workers of one host keep their Prometheus metrics and who serves them.

Each worker process writes its metrics to files of its own in one directory per port
(prometheus-client's multiprocess mode); whichever worker binds the port serves ``/metrics``
with the sum over every file there, the others try the port again at each heartbeat, so a
survivor takes over when the serving worker exits. :mod:`naq.metrics` defines the metrics.

The directory is ``$PROMETHEUS_MULTIPROC_DIR`` when that is set (the process is in
multiprocess mode already, or is meant to be), else ``$NAQ_METRICS_DIR``, else
``<temp dir>/naq-metrics-<port>``: the workers of one port must share one, and workers
of another port use another (one directory is served whole).
"""

from __future__ import annotations

import errno
import os
import re
import tempfile
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from loguru import logger

from .errors import ConfigurationError

if TYPE_CHECKING:
    from types import ModuleType
    from wsgiref.simple_server import WSGIServer

#: How to get prometheus-client.
INSTALL_HINT = "pip install 'naq[metrics]'"
#: A metrics file's name: ``<kind>_<pid>.db``.
_FILE_RE = re.compile(r"(?P<kind>[a-z_]+)_(?P<pid>\d+)\.db")


def prometheus_client() -> ModuleType:
    """The ``prometheus_client`` module, or a :class:`ConfigurationError` saying how to get it."""
    try:
        import prometheus_client as module
    except ImportError:
        raise ConfigurationError(
            f"metrics need prometheus-client, which is not installed: {INSTALL_HINT}"
        ) from None
    return module


def metrics_dir(port: int) -> Path:
    """The directory the metrics of the workers serving ``port`` are kept in."""
    chosen = os.environ.get("PROMETHEUS_MULTIPROC_DIR") or os.environ.get("NAQ_METRICS_DIR")
    return Path(chosen) if chosen else Path(tempfile.gettempdir()) / f"naq-metrics-{port}"


def enter_multiprocess_mode(directory: Path) -> None:
    """Make the metrics this process creates from now on live in files in ``directory``.

    prometheus-client picks its value class when ``prometheus_client.values`` is imported
    (multiprocess when ``PROMETHEUS_MULTIPROC_DIR`` is set then); a process that imported it
    earlier is switched here, by setting that variable and the class. A process already in
    that mode keeps its class (a second one would write the same files)."""
    from prometheus_client import values

    directory.mkdir(parents=True, exist_ok=True)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(directory)
    if not getattr(values.ValueClass, "_multiprocess", False):
        values.ValueClass = values.MultiProcessValue()  # type: ignore[no-untyped-call]


def _files_by_pid(directory: Path) -> dict[int, list[Path]]:
    found: dict[int, list[Path]] = {}
    for path in directory.iterdir():
        match = _FILE_RE.fullmatch(path.name)
        if match is not None:
            found.setdefault(int(match.group("pid")), []).append(path)
    return found


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def clear_if_stale(directory: Path) -> None:
    """Remove every metrics file of ``directory`` when none belongs to a running process: a
    new group of workers starts its counters from 0 (Prometheus sees a counter reset); while
    one still runs, the files of those that exited stay (their jobs stay counted)."""
    files = _files_by_pid(directory)
    if any(_alive(pid) for pid in files):
        return
    for paths in files.values():
        for path in paths:
            path.unlink(missing_ok=True)


def forget_process(directory: Path, pid: int) -> None:
    """Drop the live gauges (in flight, worker info, queue gauges) of process ``pid``; its
    counters stay."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(pid, str(directory))  # type: ignore[no-untyped-call]


def forget_dead_processes(directory: Path) -> None:
    """:func:`forget_process` each process that ended without doing it itself (killed)."""
    for pid, paths in _files_by_pid(directory).items():
        if any(p.name.startswith("gauge_live") for p in paths) and not _alive(pid):
            forget_process(directory, pid)


class MetricsServer:
    """``/metrics`` on ``host:port`` with the metrics of every process of ``directory``,
    served by this process once it could bind the port."""

    def __init__(self, host: str, port: int, directory: Path) -> None:
        self.host = host
        self.port = port
        self.directory = directory
        self._httpd: WSGIServer | None = None
        self._thread: threading.Thread | None = None
        self._told_in_use = False

    @property
    def serving(self) -> bool:
        """Whether this process serves the port."""
        return self._httpd is not None

    def try_serve(self, *, first: bool = False) -> bool:
        """Serve the port if it is free; False if another process holds it. Any other
        failure to bind is a :class:`ConfigurationError` on the ``first`` try (a bad host, a
        port this user may not bind), logged on later ones."""
        if self._httpd is not None:
            return True
        client = prometheus_client()
        from prometheus_client import multiprocess

        registry: Any = client.CollectorRegistry()
        multiprocess.MultiProcessCollector(  # type: ignore[no-untyped-call]
            registry, path=str(self.directory)
        )
        try:
            self._httpd, self._thread = client.start_http_server(
                self.port, addr=self.host, registry=registry
            )
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                if not self._told_in_use:
                    logger.info(
                        "metrics port {} is in use (another worker of this host serves it?); "
                        "this worker's metrics are kept in {} for whoever serves it, and it "
                        "tries the port again at each heartbeat",
                        self.port,
                        self.directory,
                    )
                    self._told_in_use = True
                return False
            message = f"cannot serve metrics on {self.host}:{self.port}: {exc}"
            if first:
                raise ConfigurationError(message) from None
            logger.warning("{}", message)
            return False
        logger.info(
            "serving metrics on http://{}:{}/metrics (workers of {})",
            self.host,
            self.port,
            self.directory,
        )
        self._told_in_use = False
        return True

    def stop(self) -> None:
        """Stop serving (blocks until the server thread noticed: up to half a second)."""
        httpd, thread = self._httpd, self._thread
        self._httpd = self._thread = None
        if httpd is None:
            return
        httpd.shutdown()
        httpd.server_close()
        if thread is not None:
            thread.join(timeout=2.0)
