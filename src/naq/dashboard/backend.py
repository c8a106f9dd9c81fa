"""What the dashboard reads and does, over one NATS connection it holds for its lifetime:
the same library calls the CLI and the Python API make (no logic of its own)."""

from __future__ import annotations

from ..admin import list_queues, list_workers
from ..job import JobInfo, QueueInfo, WorkerInfo
from ..queue import Queue
from ..settings import Settings
from ..transport import Connection


class Backend:
    """The dashboard's connection and the operations on it."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.conn = Connection(settings, name="naq-dashboard")

    async def start(self) -> None:
        """Connect (a missing server is one clear :class:`~naq.NaqConnectionError`)."""
        await self.conn.connect()

    async def stop(self) -> None:
        """Disconnect."""
        await self.conn.close()

    @property
    def connected(self) -> bool:
        """Whether NATS is reachable now (the pages show a banner while it is not)."""
        return self.conn.is_connected

    def queue(self, name: str | None = None) -> Queue:
        """A :class:`~naq.Queue` on the dashboard's connection."""
        return Queue(name, connection=self.conn, settings=self.settings)

    async def workers(self) -> list[WorkerInfo]:
        """The live workers."""
        return await list_workers(self.conn)

    async def queues(self) -> list[QueueInfo]:
        """Every queue with its counts."""
        return await list_queues(self.conn)

    async def job(self, job_id: str) -> JobInfo:
        """Everything known about a job (:class:`~naq.JobNotFoundError` if unknown)."""
        return await self.queue().get_job_info(job_id)
