"""The :class:`Store` protocol every store implements."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from types import TracebackType
from typing import Any, Protocol, Self, runtime_checkable

from .records import Checkpoint, EventRow, JobRecord, Lease, ProcessGroupRow, StoreStats

__all__ = ["Store"]


@runtime_checkable
class Store(Protocol):
    """Where jobs, events, checkpoints, leases and process groups are kept.

    A store is an async context manager: entering opens it, leaving flushes pending writes and
    closes it.  Every method but :meth:`stats` is async.  A write returns once it is committed.
    """

    @property
    def persistent(self) -> bool:
        """Whether what is written outlives this process (a file, a server), so that records
        must be JSON-safe copies, leases are held and dead runtimes are swept at start."""
        ...

    async def __aenter__(self) -> Self:
        """Open the store."""
        ...

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        """Flush pending writes and close."""
        ...

    async def put_job(self, rec: JobRecord) -> None:
        """Insert or replace ``rec``."""
        ...

    async def update_job(self, job_id: str, **fields: Any) -> None:
        """Set ``fields`` of a stored job (``updated_at`` defaults to now).

        Raises ``TypeError`` for an unknown field and :class:`StoreError` for an unknown job.
        """
        ...

    async def claim_job(self, job_id: str, owner: str | None, new_owner: str) -> bool:
        """Atomically make ``new_owner`` the ``runtime_id`` of job ``job_id`` if it still is
        ``owner``; False (nothing changed) if the job is gone or another runtime claimed it first."""
        ...

    async def get_job(self, job_id: str) -> JobRecord | None:
        """The job ``job_id``, or ``None``."""
        ...

    async def list_jobs(self, *, states: Iterable[str] | None = None, runtime_id: str | None = None,
                        limit: int | None = None) -> list[JobRecord]:
        """Jobs newest first (by ``created_at``), optionally filtered by state and runtime."""
        ...

    async def append_events(self, rows: Sequence[EventRow]) -> None:
        """Record ``rows`` (possibly of several jobs) together; a row with an existing
        ``(job_id, seq)`` replaces it."""
        ...

    async def read_events(self, job_id: str, from_seq: int = 0) -> list[EventRow]:
        """Events of ``job_id`` with ``seq >= from_seq``, in seq order."""
        ...

    async def put_checkpoint(self, cp: Checkpoint) -> None:
        """Record ``cp``; it replaces the previous checkpoint of its step."""
        ...

    async def get_checkpoints(self, job_id: str) -> dict[str, Checkpoint]:
        """The latest checkpoint of each step of ``job_id``, by step name."""
        ...

    async def put_lease(self, lease: Lease) -> None:
        """Insert or replace the lease of ``lease.runtime_id``."""
        ...

    async def list_leases(self) -> list[Lease]:
        """Every lease, oldest first."""
        ...

    async def delete_lease(self, runtime_id: str) -> None:
        """Remove the lease of ``runtime_id`` (no error when there is none)."""
        ...

    async def put_process_group(self, row: ProcessGroupRow) -> None:
        """Insert or replace the process group with ``row.marker``."""
        ...

    async def delete_process_group(self, marker: str) -> None:
        """Remove the process group with ``marker`` (no error when there is none)."""
        ...

    async def list_process_groups(self, runtime_id: str | None = None) -> list[ProcessGroupRow]:
        """Process groups (of ``runtime_id``, or all), in the order they were first put."""
        ...

    async def delete_process_groups(self, runtime_id: str) -> None:
        """Remove every process group of ``runtime_id``."""
        ...

    def stats(self) -> StoreStats:
        """A snapshot of the write counters."""
        ...
