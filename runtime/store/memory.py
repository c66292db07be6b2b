"""A store in dicts, for tests and runtimes that need no durability.

Memory stays flat in a long-lived worker: beyond ``max_finished_jobs`` finished jobs (those with
``finished_at`` set), the job that finished first is evicted with its events and checkpoints.
Unfinished jobs are never evicted.  Records are kept as given (they are frozen; do not mutate
their dicts after storing them).
"""

from __future__ import annotations

import collections
import itertools
import time
from collections.abc import Iterable, Sequence
from types import TracebackType
from typing import Any, Self

import attrs
import trio

from .errors import StoreError
from .records import (
    Checkpoint,
    EventRow,
    JobRecord,
    Lease,
    ProcessGroupRow,
    StoreStats,
    prepare_job_update,
)

__all__ = ["MemoryStore"]

_PATH = ":memory:"


class MemoryStore:
    """A :class:`~runtime.store.Store` in dicts.  ``async with MemoryStore() as store: ...``.

    It may be opened again after it was closed; its contents stay.
    """

    persistent = False
    """In memory: gone with the process (records may hold the job's own dicts, no lease is held)."""

    def __init__(self, *, max_finished_jobs: int = 10_000) -> None:
        if max_finished_jobs < 0:
            raise ValueError("max_finished_jobs must be >= 0")
        self.max_finished_jobs = max_finished_jobs
        self._open = False
        self._jobs: dict[str, JobRecord] = {}
        self._order: dict[str, int] = {}  # job_id -> insertion number (tie-break for newest first)
        self._counter = itertools.count()
        self._finished: collections.OrderedDict[str, None] = collections.OrderedDict()
        self._events: dict[str, dict[int, EventRow]] = {}
        self._checkpoints: dict[str, dict[str, Checkpoint]] = {}
        self._leases: dict[str, Lease] = {}
        self._groups: dict[str, ProcessGroupRow] = {}
        self._transactions = 0
        self._rows_written = 0

    async def __aenter__(self) -> Self:
        await trio.lowlevel.checkpoint()
        self._open = True
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        self._open = False

    def stats(self) -> StoreStats:
        """Write calls as ``transactions``; nothing is ever pending; ``bytes_written`` is 0."""
        return StoreStats(transactions=self._transactions, rows_written=self._rows_written,
                          pending_writes=0, bytes_written=0)

    @property
    def jobs_held(self) -> int:
        """How many job records the store holds now (finished ones are bounded)."""
        return len(self._jobs)

    # -- jobs -------------------------------------------------------------------------------------

    async def put_job(self, rec: JobRecord) -> None:
        """Insert or replace ``rec``."""
        await self._begin(1)
        self._set_job(rec)

    async def update_job(self, job_id: str, **fields: Any) -> None:
        """Set ``fields`` of job ``job_id`` (``updated_at`` defaults to now)."""
        fields = prepare_job_update(job_id, fields, time.time())
        self._check_open()
        await trio.lowlevel.checkpoint()
        rec = self._jobs.get(job_id)
        if rec is None:
            raise StoreError(_PATH, f"update_job: no job {job_id!r}")
        self._count(1)
        self._set_job(attrs.evolve(rec, **fields))

    async def claim_job(self, job_id: str, owner: str | None, new_owner: str) -> bool:
        """Make ``new_owner`` the job's runtime if ``owner`` still is."""
        self._check_open()
        await trio.lowlevel.checkpoint()
        rec = self._jobs.get(job_id)
        if rec is None or rec.runtime_id != owner:
            return False
        self._count(1)
        self._set_job(attrs.evolve(rec, runtime_id=new_owner, updated_at=time.time()))
        return True

    async def get_job(self, job_id: str) -> JobRecord | None:
        """The job ``job_id``, or ``None``."""
        await self._begin()
        return self._jobs.get(job_id)

    async def list_jobs(self, *, states: Iterable[str] | None = None, runtime_id: str | None = None,
                        limit: int | None = None) -> list[JobRecord]:
        """Jobs newest first (by ``created_at``), filtered by ``states`` and ``runtime_id``."""
        await self._begin()
        wanted = None if states is None else set(states)
        found = [rec for rec in self._jobs.values()
                 if (wanted is None or rec.state in wanted)
                 and (runtime_id is None or rec.runtime_id == runtime_id)]
        found.sort(key=lambda rec: (rec.created_at, self._order[rec.job_id]), reverse=True)
        return found if limit is None else found[:max(limit, 0)]

    # -- events and checkpoints -------------------------------------------------------------------

    async def append_events(self, rows: Sequence[EventRow]) -> None:
        """Record ``rows``; an existing ``(job_id, seq)`` is replaced."""
        await self._begin(len(rows))
        for row in rows:
            self._events.setdefault(row.job_id, {})[row.seq] = row

    async def read_events(self, job_id: str, from_seq: int = 0) -> list[EventRow]:
        """Events of ``job_id`` with ``seq >= from_seq``, in seq order."""
        await self._begin()
        events = self._events.get(job_id, {})
        return [events[seq] for seq in sorted(events) if seq >= from_seq]

    async def put_checkpoint(self, cp: Checkpoint) -> None:
        """Record ``cp``, replacing the previous checkpoint of its step."""
        await self._begin(1)
        self._checkpoints.setdefault(cp.job_id, {})[cp.step] = cp

    async def get_checkpoints(self, job_id: str) -> dict[str, Checkpoint]:
        """The latest checkpoint of each step of ``job_id``."""
        await self._begin()
        return dict(self._checkpoints.get(job_id, {}))

    # -- leases and process groups ----------------------------------------------------------------

    async def put_lease(self, lease: Lease) -> None:
        """Insert or replace the lease of ``lease.runtime_id``."""
        await self._begin(1)
        self._leases[lease.runtime_id] = lease

    async def list_leases(self) -> list[Lease]:
        """Every lease, oldest first."""
        await self._begin()
        return sorted(self._leases.values(), key=lambda lease: lease.created_at)

    async def delete_lease(self, runtime_id: str) -> None:
        """Remove the lease of ``runtime_id``."""
        await self._begin(1)
        self._leases.pop(runtime_id, None)

    async def put_process_group(self, row: ProcessGroupRow) -> None:
        """Insert or replace the process group with ``row.marker``."""
        await self._begin(1)
        self._groups[row.marker] = row

    async def delete_process_group(self, marker: str) -> None:
        """Remove the process group with ``marker``."""
        await self._begin(1)
        self._groups.pop(marker, None)

    async def list_process_groups(self, runtime_id: str | None = None) -> list[ProcessGroupRow]:
        """Process groups (of ``runtime_id``, or all) in the order they were first put."""
        await self._begin()
        return [g for g in self._groups.values() if runtime_id is None or g.runtime_id == runtime_id]

    async def delete_process_groups(self, runtime_id: str) -> None:
        """Remove every process group of ``runtime_id``."""
        await self._begin(1)
        for marker in [m for m, g in self._groups.items() if g.runtime_id == runtime_id]:
            del self._groups[marker]

    # -- internals --------------------------------------------------------------------------------

    def _check_open(self) -> None:
        if not self._open:
            raise StoreError(_PATH, "the store is not open")

    async def _begin(self, rows: int | None = None) -> None:
        self._check_open()
        await trio.lowlevel.checkpoint()
        if rows is not None:
            self._count(rows)

    def _count(self, rows: int) -> None:
        self._transactions += 1
        self._rows_written += rows

    def _set_job(self, rec: JobRecord) -> None:
        job_id = rec.job_id
        if job_id not in self._order:
            self._order[job_id] = next(self._counter)
        self._jobs[job_id] = rec
        if rec.finished_at is None:
            self._finished.pop(job_id, None)
            return
        if job_id not in self._finished:
            self._finished[job_id] = None
        while len(self._finished) > self.max_finished_jobs:
            old, _ = self._finished.popitem(last=False)
            self._jobs.pop(old, None)
            self._order.pop(old, None)
            self._events.pop(old, None)
            self._checkpoints.pop(old, None)
