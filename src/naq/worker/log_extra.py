"""A running job's identity in log records: ``job_id``, ``queue`` and ``attempt`` in ``extra``.

Loguru merges the mapping held in its context variable (the one ``logger.contextualize()``
sets) into the ``extra`` of every record logged in that context, by the job's code and by naq.
``logger.contextualize()`` costs about 2 µs per job (a generator-based context manager taking a
lock); setting that variable directly costs a few hundred nanoseconds, which matters on a
worker's per-job path. The variable is not part of loguru's public API: if a loguru version no
longer has it, jobs' records simply carry no job fields (tests/test_logging.py checks them).
"""

from __future__ import annotations

import contextvars
import importlib
from typing import Any

from ..context import JobContext

LogExtraToken = contextvars.Token[dict[str, Any]]


def _loguru_context() -> contextvars.ContextVar[dict[str, Any]] | None:
    """Loguru's context variable behind ``logger.contextualize()``, if this version has it."""
    try:
        module = importlib.import_module("loguru._logger")
    except ImportError:  # pragma: no cover - a loguru laid out differently
        return None
    var = getattr(module, "context", None)
    return var if isinstance(var, contextvars.ContextVar) else None


_extra = _loguru_context()


def bind_job_to_logs(ctx: JobContext) -> LogExtraToken | None:
    """Add ``ctx``'s ``job_id``, ``queue`` and ``attempt`` to the ``extra`` of the records
    logged in the current context (thread or task); returns the token to undo it with."""
    if _extra is None:  # pragma: no cover - see the module's documentation
        return None
    fields = {"job_id": ctx.job_id, "queue": ctx.queue_name, "attempt": ctx.attempt}
    outer = _extra.get()
    return _extra.set({**outer, **fields} if outer else fields)


def unbind_job_from_logs(token: LogExtraToken | None) -> None:
    """Undo :func:`bind_job_to_logs` (a pool thread runs many jobs, one after another)."""
    if token is not None and _extra is not None:
        _extra.reset(token)
