"""Progress a running job reports (``current_job().set_progress``): stored in its record by
compare-and-set (best effort: never over an outcome), and given to ``on_progress`` hooks."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from loguru import logger

from ..hooks import HookRunner, JobRun
from ..models import FINAL_STATUS_VALUES, JobStatus
from ..results import ResultStore


class ProgressReports:
    """Takes the progress reports of a worker's running jobs (on its event loop)."""

    def __init__(
        self,
        results: ResultStore,
        result_ttl: int,
        hooks: HookRunner,
        running_hook: Callable[[str], JobRun | None],
        spawn: Callable[[Any], None],
    ) -> None:
        self._results = results
        self._result_ttl = result_ttl
        self._hooks = hooks
        self._running_hook = running_hook
        self._spawn = spawn

    def report(self, job_id: str, fraction: float, message: str | None) -> None:
        """``job_id`` is ``fraction`` done: store it, and tell the ``on_progress`` hooks."""
        self._spawn(self._store(job_id, fraction, message))
        if self._hooks.has("on_progress"):
            run = self._running_hook(job_id)
            if run is not None:
                run.progress, run.progress_message = fraction, message
                self._hooks.fire("on_progress", run)

    async def _store(self, job_id: str, fraction: float, message: str | None) -> None:
        try:
            found = await self._results.get_entry(job_id)
            if found is None:
                return
            record, revision = found
            if record.status in FINAL_STATUS_VALUES:
                return  # the outcome is stored; progress must not touch it
            record.status = JobStatus.RUNNING.value
            record.progress, record.progress_message = fraction, message
            await self._results.update(record, revision, self._result_ttl)
        except Exception as exc:  # noqa: BLE001 - progress is best effort
            logger.debug("progress update for {} skipped: {}", job_id, exc)
