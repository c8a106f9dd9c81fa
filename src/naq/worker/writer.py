"""How the worker stores what became of a job: intermediate and final records (a final one
handed to the job's dependants when others depend on it), dead letters, and the removal of a
cancel request once it was honoured. Every write is retried while NATS is briefly away."""

from __future__ import annotations

from typing import TYPE_CHECKING

from loguru import logger

from ..cancellation import remove_request
from ..errors import WriteConflictError
from ..models import JobEnvelope, JobStatus
from .delivery import Delivery
from .writes import with_retries, write_retried

if TYPE_CHECKING:
    from .pipeline import Parts


class OutcomeWriter:
    """Stores outcomes for the :class:`~naq.worker.pipeline.JobPipeline`."""

    def __init__(self, parts: Parts) -> None:
        self.p = parts

    async def store(self, job_id: str, data: bytes, ttl: int) -> None:
        """Store a job's (non-final) record, encoded."""
        store = self.p.results
        await write_retried(
            f"storing the outcome of {job_id}",
            lambda: store.put_encoded_nowait(job_id, data, ttl),
        )

    async def forget_request(self, job_id: str) -> None:
        """Forget the cancel request of ``job_id`` (honoured), here and in NATS."""
        self.p.cancel_requests.forget(job_id)
        try:
            await remove_request(self.p.results.connection, job_id)
        except Exception as exc:  # noqa: BLE001 - it expires by itself
            logger.debug("could not remove the cancel request of {}: {}", job_id, exc)

    async def store_final(
        self, envelope: JobEnvelope, data: bytes, status: JobStatus, *, refused: bool = False
    ) -> None:
        """Store a job's final record (encoded). The write is refused when others depend on
        the job: then its outcome is handed to them too (see :mod:`naq.dependencies`).
        ``refused``: the conditional write was tried and refused already."""
        store, job_id, ttl = self.p.results, envelope.id, self.p.records.ttl(envelope)
        try:
            if refused:
                raise WriteConflictError(f"others depend on job {job_id}")
            await write_retried(
                f"storing the outcome of {job_id}",
                lambda: store.put_final_nowait(job_id, data, ttl),
            )
        except WriteConflictError:
            await with_retries(
                f"handing the outcome of {job_id} to its dependants",
                lambda: self.p.dependencies.store_final(job_id, data, status.value),
            )
        if envelope.depends_on:
            await self.after_final(envelope, status.value, redelivered=False)

    async def after_final(self, envelope: JobEnvelope, status: str, *, redelivered: bool) -> None:
        """Dependency bookkeeping once a job's final record is stored: its edges go (its
        dependencies may expire again) and, after a redelivery, its dependants are
        handed its outcome again (its worker may have died half-way)."""
        deps = self.p.dependencies
        try:
            if redelivered and await deps.has_dependants(envelope.id):
                await with_retries(
                    f"handing the outcome of {envelope.id} to its dependants",
                    lambda: deps.finished(envelope.id, status),
                )
            if envelope.depends_on:
                await with_retries(
                    f"removing the dependency edges of {envelope.id}",
                    lambda: deps.settled(envelope.id, envelope.depends_on),
                )
        except WriteConflictError as exc:
            logger.warning("dependency bookkeeping of job {} failed: {}", envelope.id, exc)

    async def dead_letter(
        self, delivery: Delivery, reason: str, kind: str, job_id: str | None
    ) -> None:
        """Keep ``delivery``'s message in the dead-letter stream with ``reason``."""
        msg = delivery.msg
        await with_retries(
            "storing a dead letter",
            lambda: self.p.dead_letters.publish(
                queue=delivery.queue,
                payload=msg.data,
                reason=reason,
                kind=kind,
                job_id=job_id,
                original_headers=msg.headers,
                dedupe_key=delivery.dedupe_key(),
            ),
        )
