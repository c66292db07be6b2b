"""The SQLite store's writer: callers' rows batched into one transaction at a time.

A write call enqueues its rows and waits for the commit of the batch that holds them.  One
flusher task (:meth:`BatchWriter.run`, in the store's nursery) drains the queue into one
transaction per batch of at most ``batch_max`` rows, on one writer connection reached only from
its own long-lived thread (:class:`~runtime.store.sqlite_thread.WriterThread`); it parks on an
event while there is nothing to write.  A started transaction always finishes (shielded, bounded by the busy timeout).

A small batch (at most ``INLINE_ROWS`` rows and ``INLINE_BYTES`` bytes) is committed on the trio
thread itself, without the thread round trip that costs more than its commit: in WAL mode with
``synchronous=NORMAL`` and the checkpoints moved off the write path
(:class:`~runtime.store.sqlite_checkpoint.Checkpointer`) such a commit writes a few pages to the
log and syncs nothing.  It never waits for a lock there: when another connection holds the write
lock it is run on the writer thread instead, where the busy timeout applies.
"""

from __future__ import annotations

import collections
import math
import sqlite3
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import attrs
import trio

from actors.log import get_logger

from .errors import StoreWriteFailed
from .sqlite_open import describe
from .sqlite_thread import WriterThread

__all__ = ["INLINE_BYTES", "INLINE_ROWS", "BatchWriter", "Execute", "Op", "Write", "execute_batch", "is_busy"]

_log = get_logger("runtime.store.sqlite")


Op = tuple[str, list[tuple[Any, ...]]]
"""One statement and the parameters of its ``executemany``."""

INLINE_ROWS = 128
"""A 10-step durable job's end (~41 rows) fits, and what a few durable jobs ending together write:
128 event rows commit in ~0.5-0.8 ms here, so the loop is never held long; larger batches go to the
writer thread (whose commit, contending for the GIL with a busy loop, costs more CPU in all: with
64, 1000 concurrent durable jobs went to the thread now and then and cost ~5% more)."""
INLINE_BYTES = 128 << 10

GATHER_ROUNDS = 16
GATHER_ROWS = 32
"""A committer whose batch is this small gives runnable tasks up to ``GATHER_ROUNDS`` schedule points
to join it, until two rounds in a row bring nothing (trio runs each round's tasks in a shuffled
order, so the committer often runs before a job ending in the same round): 1000 ``record="off"``
jobs ending together commit ~13 rows per transaction (~7 with 8 rounds, ~2 with none; CPU per job
-7% and -18%: jobs spawned one per round end about one per round, so the rounds bound the batch;
32 rounds bring ~24 rows and no less CPU, and a longer wait for each).  A committer
that finds no other task runnable as it begins (a lone job) stops after the first round that
brings nothing: one schedule point.  Up to 32 rows, so a few durable jobs' ends (11 rows each for
a 2-step job) share a commit: 1000 concurrent durable jobs commit in ~240 transactions instead of
~610 at 8 rows (CPU per job -13%; bytes per job unchanged now that a job row holds its flow's
digest -- with the flow inline, bigger batches split the job table's pages, +10% bytes)."""

_SQLITE_BUSY = 5
_SQLITE_LOCKED = 6


def is_busy(exc: BaseException) -> bool:
    """Whether ``exc`` is SQLite's "database is locked" (another connection holds the lock)."""
    code = getattr(exc, "sqlite_errorcode", None)
    return isinstance(exc, sqlite3.OperationalError) and code is not None and code & 0xFF in (
        _SQLITE_BUSY, _SQLITE_LOCKED)


@attrs.define(eq=False)
class Write:
    """One write call waiting in the queue: its statements, run in order in one transaction."""

    ops: list[Op]
    rows: int
    nbytes: int
    want_rowcount: bool = False
    done: trio.Event = attrs.Factory(trio.Event)
    rowcounts: list[int] = attrs.Factory(list)
    committed: bool = False
    error: BaseException | None = None


def _nbytes(params: Iterable[tuple[Any, ...]]) -> int:
    """Approximate bytes of ``params``: text and blobs by length, anything else 8 (plain loops and
    exact classes: 3x the speed of a generator of isinstance checks, on every write)."""
    n = 0
    for p in params:
        for v in p:
            n += len(v) if v.__class__ is str or v.__class__ is bytes else 8
    return n


def _fits_inline(rows: int, nbytes: int) -> bool:
    """Whether a batch this size commits on the trio thread (else in the writer thread)."""
    return rows <= INLINE_ROWS and nbytes <= INLINE_BYTES


def execute_batch(conn: sqlite3.Connection, batch: list[Write]) -> list[list[int]]:
    """Run ``batch`` in one transaction on ``conn`` (in the writer thread): every call's statements
    in order, consecutive runs of one statement in one ``executemany``; each call's rowcounts."""
    counts: list[list[int]] = [[] for _ in batch]
    conn.execute("BEGIN IMMEDIATE")
    try:
        sql: str | None = None
        params: list[tuple[Any, ...]] = []
        for i, op in enumerate(batch):
            for statement, rows in op.ops:
                if op.want_rowcount:
                    if sql is not None:
                        conn.executemany(sql, params)
                        sql, params = None, []
                    counts[i].append(conn.executemany(statement, rows).rowcount)
                    continue
                if statement != sql:
                    if sql is not None:
                        conn.executemany(sql, params)
                    sql, params = statement, []
                params.extend(rows)
        if sql is not None:
            conn.executemany(sql, params)
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            try:
                conn.execute("ROLLBACK")
            except sqlite3.Error:
                pass
        raise
    return counts


Execute = Callable[[list[Write], bool], list[list[int]]]
"""Runs a batch in one transaction; the flag says whether it may wait for another connection's lock."""


class BatchWriter:
    """Batches of writes, one transaction each, run by ``execute`` (small ones inline, the rest in
    the writer thread); ``on_commit(nbytes)`` hears of each commit."""

    def __init__(self, path: Path, batch_max: int, execute: Execute, on_stopped: Callable[[], None],
                 on_commit: Callable[[int], None] | None = None) -> None:
        self.path = path
        self.batch_max = batch_max
        self._execute = execute
        self._on_stopped = on_stopped
        self._on_commit = on_commit
        self.limiter = trio.CapacityLimiter(1)
        self.closing = False
        self._queue: collections.deque[Write] = collections.deque()
        self._wake = trio.Event()
        self._thread: WriterThread | None = None
        self._busy = False  # a batch is being committed (by the flusher or by a caller)
        self.transactions = 0
        self.rows_written = 0
        self.pending_rows = 0
        self.bytes_written = 0

    def close(self) -> None:
        """Commit what is queued, then let :meth:`run` return."""
        self.closing = True
        self._wake.set()

    async def write(self, sql: str, params: list[tuple[Any, ...]], *, want_rowcount: bool = False) -> int:
        """Enqueue one statement and wait for the commit of its batch; returns its rowcount."""
        return (await self.write_ops([(sql, params)], want_rowcount=want_rowcount))[0]

    async def write_ops(self, ops: list[Op], *, want_rowcount: bool = False) -> list[int]:
        """Enqueue statements that commit together, in order, and wait for that commit; their
        rowcounts (``-1`` each unless ``want_rowcount``).

        When no batch is being committed and what is queued is small, the caller commits it
        itself (after the gather's schedule points, so that the tasks already runnable join it):
        the flusher task is not woken, and nobody waits on anybody's wake-up."""
        rows = nbytes = 0
        for _, params in ops:
            rows += len(params)
            nbytes += _nbytes(params)
        op = Write(ops, rows, nbytes, want_rowcount)
        self._queue.append(op)
        self.pending_rows += op.rows
        if self._busy or self._thread is None or self.pending_rows > INLINE_ROWS:
            if not self._busy:
                self._wake.set()
            await op.done.wait()
        else:
            await self._turn(op)
        if op.error is not None:
            raise StoreWriteFailed(
                self.path, f"write transaction failed: {describe(op.error)}") from op.error
        return op.rowcounts or [-1] * len(ops)

    async def _turn(self, op: Write | None) -> None:
        """Commit the queue -- until ``op`` is committed, or one batch for the flusher -- as the one
        committer (never cancelled: the schedule point is shielded, a commit on the thread too)."""
        self._busy = True
        try:
            if self.pending_rows <= INLINE_ROWS:
                await self._gather()
            else:  # (a chunk at a time is committed inline: the loop runs between chunks)
                await trio.lowlevel.cancel_shielded_checkpoint()
            await self._flush_batch()
            while op is not None and not op.done.is_set():
                await trio.lowlevel.cancel_shielded_checkpoint()
                await self._flush_batch()
        finally:
            self._busy = False
            if op is not None and (self._queue or self.closing):
                self._wake.set()  # what came meanwhile, or the close waiting for this commit

    async def _gather(self) -> None:
        """Group commit: the tasks already runnable (other jobs ending, say) add their writes to
        this batch before it is taken, instead of one commit each -- while the batch is small, until
        two rounds in a row bring nothing (one, when no other task was runnable at the start), up
        to ``GATHER_ROUNDS``."""
        idle = 0
        alone = not trio.lowlevel.current_statistics().tasks_runnable
        for _ in range(GATHER_ROUNDS):
            before = self.pending_rows
            await trio.lowlevel.cancel_shielded_checkpoint()
            if self.pending_rows > GATHER_ROWS:
                return
            idle = idle + 1 if self.pending_rows == before else 0
            if idle > 1 or (idle and alone):
                return

    async def run(self) -> None:
        """Commit what callers did not (a batch queued while another was committing, a large
        one); park while there is nothing to do."""
        self._thread = WriterThread(f"corral.store.writer:{self.path}")
        try:
            while True:
                if not self._queue or self._busy:
                    if self.closing and not self._busy:
                        return
                    self._wake = trio.Event()
                    await self._wake.wait()
                    continue
                await self._turn(None)
        finally:
            # gone (cancelled, or closing): refuse new writes, fail any left (none in practice)
            self.closing = True
            self._on_stopped()
            while self._queue:
                op = self._queue.popleft()
                self.pending_rows -= op.rows
                op.error = RuntimeError("the store closed before this write was committed")
                op.done.set()
            thread, self._thread = self._thread, None
            thread.stop()
            with trio.CancelScope(shield=True):
                await trio.to_thread.run_sync(thread.join)

    async def _flush_batch(self) -> None:
        batch: list[Write] = []
        rows = nbytes = 0
        # small writes commit inline, a chunk that fits at a time (not a thread round trip for all
        # that queued meanwhile: under load that grows every next batch); a large one in the thread
        if self._queue and _fits_inline(self._queue[0].rows, self._queue[0].nbytes):
            max_rows, max_bytes = min(self.batch_max, INLINE_ROWS), float(INLINE_BYTES)
        else:
            max_rows, max_bytes = self.batch_max, math.inf
        while self._queue and (not batch or (rows + self._queue[0].rows <= max_rows
                                             and nbytes + self._queue[0].nbytes <= max_bytes)):
            op = self._queue.popleft()
            batch.append(op)
            rows += op.rows
            nbytes += op.nbytes
        try:
            error = await self._commit(batch, rows, nbytes)
            if error is not None and len(batch) > 1 and not isinstance(error, sqlite3.OperationalError):
                # a call's own bad data (constraint, unsupported value): retry each call alone so
                # one caller's mistake does not fail its batch-mates
                for op in batch:
                    op.error = None
                    await self._commit([op], op.rows, op.nbytes)
        finally:
            self.pending_rows -= rows
            for op in batch:
                if not op.committed and op.error is None:
                    op.error = RuntimeError("the write was interrupted before it was committed")
                op.done.set()

    async def _commit(self, batch: list[Write], rows: int, nbytes: int) -> BaseException | None:
        """Run ``batch`` (``rows`` rows, ``nbytes`` bytes) as one transaction; record the outcome
        on its calls; return the error."""
        try:
            counts = self._inline(batch) if _fits_inline(rows, nbytes) else None
            if counts is None:
                # a started transaction always finishes (bounded by busy_timeout): never half-known
                with trio.CancelScope(shield=True):
                    assert self._thread is not None
                    threaded: list[list[int]] = await self._thread.run(self._execute, batch, True)
                counts = threaded
        except Exception as exc:
            _log.warning("store_write_failed", path=str(self.path), calls=len(batch),
                         rows=rows, error=describe(exc))
            for op in batch:
                op.error = exc
            return exc
        self.transactions += 1
        self.rows_written += rows
        self.bytes_written += nbytes
        if self._on_commit is not None:
            self._on_commit(nbytes)
        for op, count in zip(batch, counts, strict=True):
            op.rowcounts = count
            op.committed = True
        return None

    def _inline(self, batch: list[Write]) -> list[list[int]] | None:
        """Commit a small ``batch`` right here (its rowcounts), or ``None`` when the write lock is
        held elsewhere (rolled back, nothing written: the writer thread runs it)."""
        try:
            return self._execute(batch, False)
        except sqlite3.OperationalError as exc:
            if is_busy(exc):
                return None
            raise
