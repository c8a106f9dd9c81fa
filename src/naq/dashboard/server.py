"""Running the dashboard: :func:`serve` checks the address, listens, connects to NATS and
serves the app with uvicorn until SIGINT or SIGTERM.

The app's lifespan (its NATS connection) runs around uvicorn rather than inside it, so a
missing server is one clear :class:`~naq.NaqConnectionError` and not uvicorn's lifespan
traceback; the socket is bound first, so a port in use is one clear line too. The token is
handed to the app only: it is never logged (uvicorn's access log shows paths, and the token
never travels in one)."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import ipaddress
import logging
import signal
import socket
import threading
from collections.abc import Generator

import uvicorn

from .. import eventloop
from ..errors import ConfigurationError
from ..settings import Settings
from .app import create_app

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8080
#: Seconds open requests (live streams) get to end when the server stops.
SHUTDOWN_GRACE = 3

_log = logging.getLogger("uvicorn.error")


def is_loopback(host: str) -> bool:
    """Whether ``host`` is a loopback address (``127.0.0.0/8``, ``::1``) or ``localhost``."""
    if host.lower().rstrip(".") == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_bind(host: str, token: str | None) -> None:
    """Refuse (:class:`~naq.ConfigurationError`) to listen beyond loopback without a token."""
    if not token and not is_loopback(host):
        raise ConfigurationError(
            f"refusing to listen on {host} without a token: set NAQ_DASHBOARD_TOKEN or --token"
        )


def listen(host: str, port: int) -> socket.socket:
    """A listening socket on ``host:port`` (``0``: a free port), or one clear
    :class:`~naq.ConfigurationError`."""
    bare = host.strip("[]")
    family = socket.AF_INET6 if ":" in bare else socket.AF_INET
    try:
        return socket.create_server((bare, port), family=family)
    except socket.gaierror as exc:
        raise ConfigurationError(f"cannot listen on {host}: {exc.strerror}") from None
    except OSError as exc:
        why = "address already in use" if exc.errno == errno.EADDRINUSE else exc.strerror
        raise ConfigurationError(f"cannot listen on {host}:{port}: {why}") from None


def serve(host: str, port: int, token: str | None, settings: Settings) -> None:
    """Serve the dashboard on ``host:port`` until SIGINT/SIGTERM. ``token`` (default
    ``settings.dashboard_token``): what every request must carry; required unless ``host``
    is a loopback address."""
    token = token or settings.dashboard_token
    check_bind(host, token)
    eventloop.run(serve_async(host, port, token, settings))


async def serve_async(host: str, port: int, token: str | None, settings: Settings) -> None:
    """:func:`serve` on the running event loop (no address check)."""
    sock = listen(host, port)
    try:
        app = create_app(settings, token=token)
        config = uvicorn.Config(
            app,
            lifespan="off",
            log_level=_uvicorn_level(settings.log_level),
            server_header=False,
            timeout_graceful_shutdown=SHUTDOWN_GRACE,
        )
        server = _Server(config)
        async with app.router.lifespan_context(app):
            bound_host, bound_port = sock.getsockname()[:2]
            shown = f"[{bound_host}]" if ":" in bound_host else bound_host
            _log.info("naq dashboard on http://%s:%d (Ctrl+C to stop)", shown, bound_port)
            await server.serve(sockets=[sock])
    finally:
        sock.close()


def _uvicorn_level(level: str) -> str:
    """uvicorn's log level for naq's ``NAQ_LOG_LEVEL``."""
    if level in ("TRACE", "DEBUG"):
        return level.lower()
    if level in ("WARNING", "ERROR", "CRITICAL"):
        return "warning"
    return "info"


class _Server(uvicorn.Server):
    """uvicorn's server, stopping on SIGINT/SIGTERM through the event loop and without
    raising the signal again after (uvicorn does), so the lifespan around it closes the NATS
    connection and the command exits 0."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        loop = asyncio.get_running_loop()
        signals = (signal.SIGINT, signal.SIGTERM)
        for sig in signals:
            loop.add_signal_handler(sig, self.handle_exit, sig, None)
        try:
            yield
        finally:
            for sig in signals:
                loop.remove_signal_handler(sig)
