"""The embedded default store: one SQLite file in WAL mode, written in batches by one thread.

A write call serializes its rows in the calling task, enqueues them and waits for the commit of
the batch that holds them.  One flusher task (in the store's own nursery) drains the queue into
one transaction per batch of at most ``batch_max`` rows, on one writer connection used only from
one long-lived writer thread (answering through the trio token); it parks on an event while there
is nothing to write.  :meth:`SqliteStore.write_records` writes a recorder's whole batch (events,
checkpoints, record updates and records, in order) in one transaction.  Reads go through a second connection with its own limiter.  Opening checks the file before
changing anything: a file that is not SQLite, a SQLite database that is not a corral store or a
schema newer than this code is refused with the path and the reason, and left untouched.

``read_only=True`` opens an existing store for reading only: one ``mode=ro`` connection (with
``immutable=1`` when no ``-wal`` file is beside it, so that reading creates no ``-wal``/``-shm``
files), no WAL switch and no migration; every write raises :class:`StoreReadOnly`.  A store that
cannot be written (a read-only file or directory) is refused by a writable open with
:class:`StoreReadOnly`, before anything is changed.
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Self, TypeVar

import trio

from actors._groups import is_cancellation
from actors.log import get_logger

from .errors import StoreError, StoreReadOnly
from .recording import EncodedEvent, JobUpdate
from .records import (
    Checkpoint,
    EventRow,
    JobRecord,
    Lease,
    ProcessGroupRow,
    StoreStats,
)
from .sqlite_checkpoint import Checkpointer
from .sqlite_open import Migration, StoreFile, describe
from .sqlite_rows import CHECKPOINTS, GROUPS, JOBS, LEASES, Rows, Table
from .sqlite_schema import MIGRATIONS
from .sqlite_writer import BatchWriter, Op, Write, execute_batch

__all__ = ["MIGRATIONS", "Migration", "SqliteStore"]

_log = get_logger(__name__)

_T = TypeVar("_T")



class SqliteStore:
    """A :class:`~runtime.store.Store` in one SQLite file (created, with its directories, if absent).

    ``busy_timeout`` is how long a transaction waits for another connection's lock before failing
    with "database is locked"; ``batch_max`` caps the rows of one write transaction (one call's rows
    are never split).  Use as ``async with SqliteStore(path) as store: ...``; it opens once.
    A write cancelled while it waits is still committed with its batch.  ``read_only=True``: an
    existing store, read and never written or migrated (writes raise :class:`StoreReadOnly`).
    """

    persistent = True
    """A file: records outlive the process, so the runtime holds a lease and sweeps dead ones."""

    def __init__(self, path: str | os.PathLike[str], *, busy_timeout: float = 5.0,
                 batch_max: int = 512, read_only: bool = False) -> None:
        if os.fspath(path) in ("", ":memory:"):
            raise ValueError("SqliteStore needs a file path; use MemoryStore for an in-memory store")
        if batch_max < 1:
            raise ValueError("batch_max must be >= 1")
        self.path = Path(path)
        self.busy_timeout = busy_timeout
        self.batch_max = batch_max
        self.read_only = read_only
        self._rows = Rows()
        self._state = "new"  # new -> open -> closing -> closed
        self._writer: sqlite3.Connection | None = None
        self._reader: sqlite3.Connection | None = None
        self._read_limiter: trio.CapacityLimiter | None = None
        self._nursery_cm: Any = None
        self._batches: BatchWriter | None = None
        self._checkpointer: Checkpointer | None = None
        self._writer_waits = True  # the writer connection's busy timeout: busy_timeout, or 0 (inline)

    # -- lifecycle --------------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        if self._state != "new":
            raise RuntimeError(f"SqliteStore({self.path}) can be opened only once")
        self._state = "opening"
        # _execute_batch looked up per batch (a test breaks the disk by replacing it)
        checkpointer = Checkpointer(self.path, self._file().connect)
        batches = BatchWriter(self.path, self.batch_max, lambda batch, wait: self._execute_batch(batch, wait),
                              self._writes_stopped, checkpointer.committed)
        self._batches, self._checkpointer = batches, checkpointer
        self._read_limiter = trio.CapacityLimiter(1)
        try:
            self._writer, self._reader = await trio.to_thread.run_sync(
                self._open_sync, limiter=batches.limiter)
            self._nursery_cm = trio.open_nursery()
            nursery = await self._nursery_cm.__aenter__()
        except BaseException:
            self._state = "closed"
            self._close_connections_sync()
            raise
        nursery.start_soon(batches.run, name=f"corral.store.flusher:{self.path}")
        if not self.read_only:
            nursery.start_soon(checkpointer.run, name=f"corral.store.checkpointer:{self.path}")
        self._state = "open"
        _log.debug("store_opened", path=str(self.path))
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        if self._state not in ("open", "closing"):
            return
        self._state = "closing"
        assert self._batches is not None and self._checkpointer is not None
        self._batches.close()
        self._checkpointer.close()
        try:
            # the flusher commits what is queued and returns; each transaction is shielded and
            # bounded by busy_timeout, so closing under cancellation loses no accepted write
            await self._nursery_cm.__aexit__(None, None, None)
        except BaseException as closing_exc:
            # in a cancelled scope the nursery's exit raises Cancelled: let the body's own
            # exception go on instead (cancellation is level-triggered and comes again)
            if exc is None or not is_cancellation(closing_exc):
                raise
        finally:
            self._state = "closed"
            with trio.CancelScope(shield=True):
                await trio.to_thread.run_sync(self._close_reader_sync, limiter=self._read_limiter)
                await trio.to_thread.run_sync(self._close_writer_sync, limiter=self._batches.limiter)
            _log.debug("store_closed", path=str(self.path), transactions=self._batches.transactions)

    def stats(self) -> StoreStats:
        """A snapshot of the write counters (``pending_writes`` counts rows queued or in flight)."""
        b = self._batches
        if b is None:
            return StoreStats(transactions=0, rows_written=0, pending_writes=0, bytes_written=0)
        return StoreStats(transactions=b.transactions, rows_written=b.rows_written,
                          pending_writes=b.pending_rows, bytes_written=b.bytes_written,
                          checkpoints=self._checkpointer.checkpoints if self._checkpointer else 0)

    def _writes_stopped(self) -> None:
        """The flusher is gone (closing, or cancelled): refuse new writes."""
        if self._state == "open":
            self._state = "closing"

    # -- jobs -------------------------------------------------------------------------------------

    async def put_job(self, rec: JobRecord) -> None:
        """Insert or replace ``rec``."""
        await self.write_records([rec])

    async def update_job(self, job_id: str, **fields: Any) -> None:
        """Set ``fields`` of job ``job_id`` (``updated_at`` defaults to now).

        Raises ``TypeError`` for a field :class:`JobRecord` does not have, :class:`StoreError`
        when there is no such job.
        """
        sql, params = self._rows.update(job_id, fields, time.time())
        count = await self._write(sql, params, want_rowcount=True)
        if count == 0:
            raise StoreError(self.path, f"update_job: no job {job_id!r}")

    async def claim_job(self, job_id: str, owner: str | None, new_owner: str) -> bool:
        """Make ``new_owner`` the job's runtime if ``owner`` still is (one atomic statement)."""
        count = await self._write("UPDATE jobs SET runtime_id = ?, updated_at = ? WHERE job_id = ? "
                                  "AND runtime_id IS ?", [(new_owner, time.time(), job_id, owner)],
                                  want_rowcount=True)
        return count > 0

    async def get_job(self, job_id: str) -> JobRecord | None:
        """The job ``job_id``, or ``None``."""
        rows = await self._select(f"{self._rows.jobs_select} WHERE job_id = ?", (job_id,))
        return self._job(rows[0]) if rows else None

    async def list_jobs(self, *, states: Iterable[str] | None = None, runtime_id: str | None = None,
                        limit: int | None = None) -> list[JobRecord]:
        """Jobs newest first (by ``created_at``), filtered by ``states`` and ``runtime_id``."""
        where: list[str] = []
        args: list[Any] = []
        if states is not None:
            wanted = list(states)
            if not wanted:
                return []
            where.append(f"state IN ({', '.join('?' for _ in wanted)})")
            args.extend(wanted)
        if runtime_id is not None:
            where.append("runtime_id = ?")
            args.append(runtime_id)
        sql = self._rows.jobs_select
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY created_at DESC, rowid DESC"
        if limit is not None:
            sql += " LIMIT ?"
            args.append(max(limit, 0))
        return [self._job(row) for row in await self._select(sql, tuple(args))]

    def _job(self, row: tuple[Any, ...]) -> JobRecord:
        try:
            rec: JobRecord = self._rows.record(JOBS, row)
        except ValueError as exc:
            raise StoreError(self.path, f"unreadable job record: {exc}") from exc
        return rec

    # -- events and checkpoints -------------------------------------------------------------------

    async def append_events(self, rows: Sequence[EventRow]) -> None:
        """Record ``rows`` in one transaction; an existing ``(job_id, seq)`` is replaced."""
        await self.write_records(rows)

    async def read_events(self, job_id: str, from_seq: int = 0) -> list[EventRow]:
        """Events of ``job_id`` with ``seq >= from_seq``, in seq order."""
        rows = await self._select(f"{self._rows.events_select} WHERE job_id = ? AND seq >= ? ORDER BY seq",
                                  (job_id, from_seq))
        return [self._rows.event(row) for row in rows]

    async def put_checkpoint(self, cp: Checkpoint) -> None:
        """Record ``cp``, replacing the previous checkpoint of its step."""
        await self._put(CHECKPOINTS, [cp])

    async def get_checkpoints(self, job_id: str) -> dict[str, Checkpoint]:
        """The latest checkpoint of each step of ``job_id``."""
        rows = await self._select(f"{CHECKPOINTS.select} WHERE job_id = ?", (job_id,))
        cps = (self._rows.record(CHECKPOINTS, row) for row in rows)
        return {cp.step: cp for cp in cps}

    # -- leases and process groups ----------------------------------------------------------------

    async def put_lease(self, lease: Lease) -> None:
        """Insert or replace the lease of ``lease.runtime_id``."""
        await self._put(LEASES, [lease])

    async def list_leases(self) -> list[Lease]:
        """Every lease, oldest first."""
        rows = await self._select(f"{LEASES.select} ORDER BY created_at, rowid", ())
        return [self._rows.record(LEASES, row) for row in rows]

    async def delete_lease(self, runtime_id: str) -> None:
        """Remove the lease of ``runtime_id``."""
        await self._write("DELETE FROM leases WHERE runtime_id = ?", [(runtime_id,)])

    async def put_process_group(self, row: ProcessGroupRow) -> None:
        """Insert or replace the process group with ``row.marker``."""
        await self._put(GROUPS, [row])

    async def delete_process_group(self, marker: str) -> None:
        """Remove the process group with ``marker``."""
        await self._write("DELETE FROM process_groups WHERE marker = ?", [(marker,)])

    async def list_process_groups(self, runtime_id: str | None = None) -> list[ProcessGroupRow]:
        """Process groups (of ``runtime_id``, or all) in the order they were first put."""
        if runtime_id is None:
            rows = await self._select(f"{GROUPS.select} ORDER BY rowid", ())
        else:
            rows = await self._select(f"{GROUPS.select} WHERE runtime_id = ? ORDER BY rowid",
                                      (runtime_id,))
        return [self._rows.record(GROUPS, row) for row in rows]

    async def delete_process_groups(self, runtime_id: str) -> None:
        """Remove every process group of ``runtime_id``."""
        await self._write("DELETE FROM process_groups WHERE runtime_id = ?", [(runtime_id,)])

    # -- writing ----------------------------------------------------------------------------------

    async def _put(self, table: Table, recs: Sequence[Any]) -> None:
        if not recs:
            self._check_open()
            await trio.lowlevel.checkpoint()
            return
        await self._write(table.upsert, [self._rows.params(table, rec) for rec in recs])

    async def _write(self, sql: str, params: list[tuple[Any, ...]], *,
                     want_rowcount: bool = False) -> int:
        """Enqueue one write and wait for the commit of its batch; returns its rowcount."""
        return (await self._batches_write([(sql, params)], want_rowcount=want_rowcount))[0]

    async def write_records(
            self, batch: Sequence[EventRow | EncodedEvent | Checkpoint | JobRecord | JobUpdate]) -> None:
        """Persist ``batch`` in order in one transaction (event rows, checkpoints, job records and
        updates; :func:`~runtime.store.write_batch` uses it).  :class:`StoreError` when an update
        names no job (the whole batch is still committed)."""
        if not batch:
            self._check_open()
            await trio.lowlevel.checkpoint()
            return
        ops, updates = self._rows.ops(batch, time.time())
        counts = await self._batches_write(ops, want_rowcount=bool(updates))
        self._rows.committed(ops)
        for i, job_id in updates:
            if counts[i] == 0:
                raise StoreError(self.path, f"update_job: no job {job_id!r}")

    async def _batches_write(self, ops: list[Op], *, want_rowcount: bool) -> list[int]:
        self._check_open()
        if self.read_only:
            raise StoreReadOnly(self.path, "opened read-only: cannot write to it")
        assert self._batches is not None
        return await self._batches.write_ops(ops, want_rowcount=want_rowcount)

    def _execute_batch(self, batch: list[Write], wait: bool) -> list[list[int]]:
        """Run ``batch`` in one transaction on the writer connection (in the writer thread, or
        inline with ``wait`` false: then a lock held elsewhere fails at once, nothing written)."""
        writer = self._writer
        assert writer is not None
        if wait != self._writer_waits:  # set only on a change: the pragma costs what a small insert does
            writer.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout * 1000) if wait else 0}")
            self._writer_waits = wait
        return execute_batch(writer, batch)

    def _check_open(self) -> None:
        if self._state != "open":
            raise StoreError(self.path, f"the store is {self._state}, not open")

    # -- reading ----------------------------------------------------------------------------------

    async def _select(self, sql: str, args: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        self._check_open()
        return await self._run_read(self._select_sync, sql, args)

    async def _run_read(self, fn: Callable[..., _T], *args: Any) -> _T:
        try:
            return await trio.to_thread.run_sync(fn, *args, limiter=self._read_limiter)
        except sqlite3.Error as exc:
            raise StoreError(self.path, f"read failed: {describe(exc)}") from exc

    def _select_sync(self, sql: str, args: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        assert self._reader is not None
        return self._reader.execute(sql, args).fetchall()

    # -- opening and closing (worker threads) -----------------------------------------------------

    def _open_sync(self) -> tuple[sqlite3.Connection | None, sqlite3.Connection]:
        opener = self._file()
        writer, reader = (None, opener.open_read_only()) if self.read_only else opener.open_writable()
        # a read-only open of an older schema has no ``bare`` column (a writable one is migrated)
        self._rows.bare_events = any(col[1] == "bare" for col in reader.execute("PRAGMA table_info(events)"))
        self._rows.flow_table = reader.execute("SELECT 1 FROM sqlite_master WHERE name = 'flows'").fetchone() is not None
        return writer, reader

    def _file(self) -> StoreFile:
        return StoreFile(self.path, self.busy_timeout, MIGRATIONS)  # read at each use: tests add migrations

    def _close_reader_sync(self) -> None:
        if self._reader is not None:
            self._reader.close()
            self._reader = None

    def _close_writer_sync(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def _close_connections_sync(self) -> None:
        self._close_reader_sync()
        self._close_writer_sync()
