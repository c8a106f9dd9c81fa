"""The job functions of the progress example (the worker imports them as ``tasks``)."""

from __future__ import annotations

import time

import naq


def import_rows(rows: int, step_seconds: float) -> int:
    """Import ``rows`` rows, one a step, reporting progress after each."""
    job = naq.current_job()
    for done in range(1, rows + 1):
        time.sleep(step_seconds)  # the real work
        job.set_progress(done / rows, f"{done}/{rows} rows imported")
    return rows
