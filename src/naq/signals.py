"""SIGTERM/SIGINT handling for naq's long-running loops (worker, scheduler)."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import threading
from collections.abc import Callable

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def install_stop_handlers(
    loop: asyncio.AbstractEventLoop, on_signal: Callable[[int], None]
) -> bool:
    """Call ``on_signal(signum)`` on SIGTERM/SIGINT; only possible in the main thread.

    Returns False where handlers cannot be installed (another thread, no loop support)."""
    if threading.current_thread() is not threading.main_thread():
        return False
    for sig in STOP_SIGNALS:
        try:
            loop.add_signal_handler(sig, on_signal, sig)
        except (NotImplementedError, RuntimeError):
            return False
    return True


def remove_stop_handlers(loop: asyncio.AbstractEventLoop) -> None:
    """Undo :func:`install_stop_handlers`."""
    if threading.current_thread() is not threading.main_thread():
        return
    for sig in STOP_SIGNALS:
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.remove_signal_handler(sig)
