"""naq's logging, following loguru's convention for libraries.

``import naq`` disables naq's records (``logger.disable("naq")``): a program that imports naq
sees none of naq's lines until it turns them on, with :func:`setup_logging` (loguru users, and
``naq worker`` / ``naq scheduler``) or :func:`log_to_stdlib` (programs using only the standard
``logging`` module). Neither removes a sink the application added, nor filters out a record of
the application.

The one sink naq may take the place of is loguru's default handler (id 0, which prints every
record to stderr). Rule: if that handler is still installed, naq replaces it by one stderr sink
of its own that prints the application's records as the default handler did (at
``LOGURU_LEVEL``, ``DEBUG`` unless set) and naq's at the level asked for, in naq's format. If it
is gone, the application configured loguru itself: naq adds no stderr sink and its records go to
the application's sinks. Calling these functions again replaces naq's own sinks, so output is
never duplicated.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
from typing import TYPE_CHECKING

from loguru import logger

from .errors import ConfigurationError

if TYPE_CHECKING:
    from loguru import Message

#: Format of naq's stderr sink (loguru adds the traceback of a record's exception after it).
STDERR_FORMAT = "<green>{time:HH:mm:ss.SSS}</green> <level>{level: <7}</level> {message}"

_DEFAULT_HANDLER_ID = 0
_lock = threading.Lock()
_stderr_sink: int | None = None  # naq's replacement of loguru's default handler
_stdlib_sink: int | None = None  # the bridge to ``logging``


def setup_logging(level: str | int = "INFO") -> None:
    """Enable naq's log records and make sure they are printed (naq's at ``level`` and up).

    If loguru's default handler is still installed, it is replaced by one stderr sink showing
    the application's records as before and naq's at ``level``; otherwise naq's records go to
    the sinks the application added, whose levels decide (see the module's documentation for
    the rule). Raises :class:`~naq.errors.ConfigurationError` for an unknown level.
    """
    naq_level = _level_number(level)
    logger.enable("naq")
    with _lock:
        _install_stderr_sink(naq_level)


def log_to_stdlib(level: str | int = "DEBUG") -> None:
    """Forward naq's log records at ``level`` and above to the standard ``logging`` module.

    Each record goes to ``logging.getLogger(<the naq module's name>)`` with its level, message,
    source location and exception, so the application's ``logging`` configuration decides what
    is shown (e.g. ``logging.basicConfig(level=logging.INFO)``). Loguru levels without a
    ``logging`` equivalent keep their number and name (``SUCCESS`` is 25, ``TRACE`` 5).
    If loguru's default handler is still installed, naq's records stop going there (the
    application's own loguru records still do), so they are not printed twice.
    """
    global _stdlib_sink
    levelno = _level_number(level)
    logger.enable("naq")
    with _lock:
        if _stdlib_sink is not None:
            _remove(_stdlib_sink)
        _stdlib_sink = logger.add(_forward_to_stdlib, level=levelno, filter="naq", format="")
        if _stderr_sink is None:
            _install_stderr_sink(None)


def _install_stderr_sink(naq_level: int | None) -> None:
    """Put naq's stderr sink in the place of loguru's default handler (or of naq's previous
    stderr sink); ``naq_level=None`` leaves naq's records out of it. Adds nothing when the
    application removed that handler (or naq's sink): it configured loguru itself."""
    global _stderr_sink
    replaced = _stderr_sink if _stderr_sink is not None else _DEFAULT_HANDLER_ID
    _stderr_sink = None
    if not _remove(replaced):
        return
    app_level = _default_handler_level()
    levels: dict[str | None, str | int | bool] = {
        "": app_level,
        "naq": False if naq_level is None else naq_level,
    }
    lowest = app_level if naq_level is None else min(app_level, naq_level)
    _stderr_sink = logger.add(sys.stderr, level=lowest, format=STDERR_FORMAT, filter=levels)


def _remove(sink_id: int) -> bool:
    """Remove a sink; False if it was already gone."""
    try:
        logger.remove(sink_id)
    except ValueError:
        return False
    return True


def _default_handler_level() -> int:
    """The level loguru gave its default handler (``LOGURU_LEVEL``, else ``DEBUG``)."""
    try:
        return logger.level(os.environ.get("LOGURU_LEVEL", "DEBUG")).no
    except ValueError:
        return logger.level("DEBUG").no


def _level_number(level: str | int) -> int:
    """A loguru level's number, from its name (any case) or a number; a clear error if not."""
    if isinstance(level, bool) or not isinstance(level, str | int):
        raise ConfigurationError(f"log level must be a level name or a number, got {level!r}")
    if isinstance(level, int):
        if level < 0:
            raise ConfigurationError(f"log level must not be negative, got {level}")
        return level
    try:
        return logger.level(level.strip().upper()).no
    except ValueError:
        raise ConfigurationError(
            f"unknown log level {level!r} (one of TRACE, DEBUG, INFO, SUCCESS, WARNING, ERROR, "
            "CRITICAL)"
        ) from None


def _forward_to_stdlib(message: Message) -> None:
    """The loguru sink of :func:`log_to_stdlib`: one naq record into ``logging``."""
    record = message.record
    std_logger = logging.getLogger(record["name"] or "naq")
    levelno = record["level"].no
    if not std_logger.isEnabledFor(levelno):
        return
    error = record["exception"]
    std_record = std_logger.makeRecord(
        std_logger.name,
        levelno,
        record["file"].path,
        record["line"],
        record["message"],
        (),
        (error.type, error.value, error.traceback) if error is not None else None,  # type: ignore[arg-type]
        record["function"],
    )
    std_record.levelname = record["level"].name
    std_logger.handle(std_record)
