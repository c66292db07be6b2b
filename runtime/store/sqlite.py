"""The embedded default store: one SQLite file in WAL mode, written in batches by one thread.

A write call serializes its rows in the calling task, enqueues them and waits for the commit of
the batch that holds them.  One flusher task (in the store's own nursery) drains the queue into
one transaction per batch of at most ``batch_max`` rows, on one writer connection reached only
through ``trio.to_thread`` with a limiter of one; it parks on an event while there is nothing to
write.  Reads go through a second connection with its own limiter.  Opening checks the file before
changing anything: a file that is not SQLite, a SQLite database that is not a corral store or a
schema newer than this code is refused with the path and the reason, and left untouched.

``read_only=True`` opens an existing store for reading only: one ``mode=ro`` connection (with
``immutable=1`` when no ``-wal`` file is beside it, so that reading creates no ``-wal``/``-shm``
files), no WAL switch and no migration; every write raises :class:`StoreReadOnly`.  A store that
cannot be written (a read-only file or directory) is refused by a writable open with
:class:`StoreReadOnly`, before anything is changed.
"""

from __future__ import annotations

import collections
import json
import os
import sqlite3
import stat
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Self, TypeVar

import attrs
import cattrs
import trio

from actors.log import get_logger

from .errors import StoreCorrupt, StoreError, StoreReadOnly, StoreSchemaTooNew, StoreWriteFailed
from .records import (
    JSON_FIELD,
    Checkpoint,
    EventRow,
    JobRecord,
    Lease,
    ProcessGroupRow,
    StoreStats,
    prepare_job_update,
)

__all__ = ["MIGRATIONS", "Migration", "SqliteStore"]

_log = get_logger(__name__)

_T = TypeVar("_T")

_SQLITE_HEADER = b"SQLite format 3\x00"
_MARKER_KEY = "format"
_MARKER_VALUE = "corral-store"
_SQLITE_READONLY = 8
_SQLITE_CORRUPT = 11
_SQLITE_NOTADB = 26


@attrs.frozen
class Migration:
    """Statements that take the schema from ``version - 1`` to ``version`` (one transaction)."""

    version: int
    statements: tuple[str, ...]


MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, (
        "CREATE TABLE corral_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
        f"INSERT INTO corral_meta (key, value) VALUES ('{_MARKER_KEY}', '{_MARKER_VALUE}')",
        """CREATE TABLE jobs (
            job_id TEXT PRIMARY KEY, flow_name TEXT NOT NULL, flow TEXT NOT NULL,
            inputs TEXT NOT NULL, state TEXT NOT NULL, reason TEXT, error TEXT,
            outputs TEXT NOT NULL, record TEXT NOT NULL, runtime_id TEXT,
            created_at REAL NOT NULL, updated_at REAL NOT NULL, finished_at REAL,
            next_seq INTEGER NOT NULL, resume_payload TEXT NOT NULL)""",
        "CREATE INDEX jobs_by_created ON jobs (created_at)",
        "CREATE INDEX jobs_by_state ON jobs (state, created_at)",
        "CREATE INDEX jobs_by_runtime ON jobs (runtime_id, created_at)",
        # rows append in rowid order; only the small (job_id, seq) index takes the interleaving
        # of many jobs' writes (a WITHOUT ROWID table rewrote ~2.5x the pages per batch)
        """CREATE TABLE events (
            job_id TEXT NOT NULL, seq INTEGER NOT NULL, type TEXT NOT NULL, ts REAL NOT NULL,
            payload TEXT NOT NULL, UNIQUE (job_id, seq))""",
        """CREATE TABLE checkpoints (
            job_id TEXT NOT NULL, step TEXT NOT NULL, outputs TEXT NOT NULL,
            iteration INTEGER NOT NULL, attempt INTEGER NOT NULL,
            PRIMARY KEY (job_id, step)) WITHOUT ROWID""",
        """CREATE TABLE leases (
            runtime_id TEXT PRIMARY KEY, pid INTEGER NOT NULL, started REAL NOT NULL,
            host TEXT NOT NULL, created_at REAL NOT NULL)""",
        """CREATE TABLE process_groups (
            marker TEXT PRIMARY KEY, runtime_id TEXT NOT NULL, job_id TEXT NOT NULL,
            pgid INTEGER NOT NULL)""",
        "CREATE INDEX process_groups_by_runtime ON process_groups (runtime_id)",
    )),
)
"""Schema migrations in order; append ``Migration(2, ...)`` to evolve the schema."""


@attrs.frozen
class _Table:
    """A record class stored in one table whose columns are the class's fields."""

    name: str
    cls: type
    columns: tuple[str, ...]
    json_columns: frozenset[str]
    upsert: str
    select: str


def _table(name: str, cls: type, keys: tuple[str, ...]) -> _Table:
    fields = attrs.fields(cls)
    columns = tuple(f.name for f in fields)
    cols = ", ".join(f'"{c}"' for c in columns)
    marks = ", ".join("?" for _ in columns)
    updates = ", ".join(f'"{c}" = excluded."{c}"' for c in columns if c not in keys)
    upsert = (f"INSERT INTO {name} ({cols}) VALUES ({marks}) "
              f"ON CONFLICT ({', '.join(keys)}) DO UPDATE SET {updates}")
    return _Table(name, cls, columns, frozenset(f.name for f in fields if f.metadata.get(JSON_FIELD)),
                  upsert, f"SELECT {cols} FROM {name}")


_JOBS = _table("jobs", JobRecord, ("job_id",))
_EVENTS = _table("events", EventRow, ("job_id", "seq"))
_CHECKPOINTS = _table("checkpoints", Checkpoint, ("job_id", "step"))
_LEASES = _table("leases", Lease, ("runtime_id",))
_GROUPS = _table("process_groups", ProcessGroupRow, ("marker",))


@attrs.define(eq=False)
class _Write:
    """One write call waiting in the queue: ``params`` for one ``executemany`` of ``sql``."""

    sql: str
    params: list[tuple[Any, ...]]
    nbytes: int
    want_rowcount: bool = False
    done: trio.Event = attrs.Factory(trio.Event)
    rowcount: int = -1
    committed: bool = False
    error: BaseException | None = None

    @property
    def rows(self) -> int:
        return len(self.params)


def _nbytes(params: Iterable[tuple[Any, ...]]) -> int:
    return sum(len(v) if isinstance(v, str | bytes) else 8 for p in params for v in p)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, sqlite3.Error):
        return str(exc) or type(exc).__name__
    return f"{type(exc).__name__}: {exc}"


def _only_cancelled(exc: BaseException) -> bool:
    if isinstance(exc, BaseExceptionGroup):
        return exc.split(trio.Cancelled)[1] is None
    return isinstance(exc, trio.Cancelled)


def _make_converter() -> cattrs.Converter:
    """Records <-> row dicts.  JSON fields hold data already unstructured by the caller: their
    dicts pass through as they are (``json.dumps`` checks them), not walked value by value."""
    conv = cattrs.Converter()
    conv.register_unstructure_hook(dict, lambda value: value)
    return conv


def _latest_version() -> int:
    return MIGRATIONS[-1].version


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
        self._conv = _make_converter()
        self._state = "new"  # new -> open -> closing -> closed
        self._writer: sqlite3.Connection | None = None
        self._reader: sqlite3.Connection | None = None
        self._write_limiter: trio.CapacityLimiter | None = None
        self._read_limiter: trio.CapacityLimiter | None = None
        self._nursery_cm: Any = None
        self._queue: collections.deque[_Write] = collections.deque()
        self._wake = trio.Event()
        self._transactions = 0
        self._rows_written = 0
        self._pending_rows = 0
        self._bytes_written = 0

    # -- lifecycle --------------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        if self._state != "new":
            raise RuntimeError(f"SqliteStore({self.path}) can be opened only once")
        self._state = "opening"
        self._write_limiter = trio.CapacityLimiter(1)
        self._read_limiter = trio.CapacityLimiter(1)
        try:
            self._writer, self._reader = await trio.to_thread.run_sync(
                self._open_sync, limiter=self._write_limiter)
            self._nursery_cm = trio.open_nursery()
            nursery = await self._nursery_cm.__aenter__()
        except BaseException:
            self._state = "closed"
            self._close_connections_sync()
            raise
        nursery.start_soon(self._flusher, name=f"corral.store.flusher:{self.path}")
        self._state = "open"
        _log.debug("store_opened", path=str(self.path))
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        if self._state not in ("open", "closing"):
            return
        self._state = "closing"
        self._wake.set()
        try:
            # the flusher commits what is queued and returns; each transaction is shielded and
            # bounded by busy_timeout, so closing under cancellation loses no accepted write
            await self._nursery_cm.__aexit__(None, None, None)
        except BaseException as closing_exc:
            # in a cancelled scope the nursery's exit raises Cancelled: let the body's own
            # exception go on instead (cancellation is level-triggered and comes again)
            if exc is None or not _only_cancelled(closing_exc):
                raise
        finally:
            self._state = "closed"
            with trio.CancelScope(shield=True):
                await trio.to_thread.run_sync(self._close_reader_sync, limiter=self._read_limiter)
                await trio.to_thread.run_sync(self._close_writer_sync, limiter=self._write_limiter)
            _log.debug("store_closed", path=str(self.path), transactions=self._transactions)

    def stats(self) -> StoreStats:
        """A snapshot of the write counters (``pending_writes`` counts rows queued or in flight)."""
        return StoreStats(transactions=self._transactions, rows_written=self._rows_written,
                          pending_writes=self._pending_rows, bytes_written=self._bytes_written)

    # -- jobs -------------------------------------------------------------------------------------

    async def put_job(self, rec: JobRecord) -> None:
        """Insert or replace ``rec``."""
        await self._put(_JOBS, [rec])

    async def update_job(self, job_id: str, **fields: Any) -> None:
        """Set ``fields`` of job ``job_id`` (``updated_at`` defaults to now).

        Raises ``TypeError`` for a field :class:`JobRecord` does not have, :class:`StoreError`
        when there is no such job.
        """
        fields = prepare_job_update(job_id, fields, time.time())
        names = list(fields)
        sets = ", ".join(f'"{name}" = ?' for name in names)
        values = tuple(self._column_value(_JOBS, name, fields[name]) for name in names)
        params = [(*values, job_id)]
        count = await self._write(f"UPDATE jobs SET {sets} WHERE job_id = ?", params,
                                  want_rowcount=True)
        if count == 0:
            raise StoreError(self.path, f"update_job: no job {job_id!r}")

    async def get_job(self, job_id: str) -> JobRecord | None:
        """The job ``job_id``, or ``None``."""
        rows = await self._select(f"{_JOBS.select} WHERE job_id = ?", (job_id,))
        return self._from_row(_JOBS, rows[0]) if rows else None

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
        sql = _JOBS.select
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY created_at DESC, rowid DESC"
        if limit is not None:
            sql += " LIMIT ?"
            args.append(max(limit, 0))
        return [self._from_row(_JOBS, row) for row in await self._select(sql, tuple(args))]

    # -- events and checkpoints -------------------------------------------------------------------

    async def append_events(self, rows: Sequence[EventRow]) -> None:
        """Record ``rows`` in one transaction; an existing ``(job_id, seq)`` is replaced."""
        await self._put(_EVENTS, rows)

    async def read_events(self, job_id: str, from_seq: int = 0) -> list[EventRow]:
        """Events of ``job_id`` with ``seq >= from_seq``, in seq order."""
        rows = await self._select(f"{_EVENTS.select} WHERE job_id = ? AND seq >= ? ORDER BY seq",
                                  (job_id, from_seq))
        return [self._from_row(_EVENTS, row) for row in rows]

    async def put_checkpoint(self, cp: Checkpoint) -> None:
        """Record ``cp``, replacing the previous checkpoint of its step."""
        await self._put(_CHECKPOINTS, [cp])

    async def get_checkpoints(self, job_id: str) -> dict[str, Checkpoint]:
        """The latest checkpoint of each step of ``job_id``."""
        rows = await self._select(f"{_CHECKPOINTS.select} WHERE job_id = ?", (job_id,))
        cps = (self._from_row(_CHECKPOINTS, row) for row in rows)
        return {cp.step: cp for cp in cps}

    # -- leases and process groups ----------------------------------------------------------------

    async def put_lease(self, lease: Lease) -> None:
        """Insert or replace the lease of ``lease.runtime_id``."""
        await self._put(_LEASES, [lease])

    async def list_leases(self) -> list[Lease]:
        """Every lease, oldest first."""
        rows = await self._select(f"{_LEASES.select} ORDER BY created_at, rowid", ())
        return [self._from_row(_LEASES, row) for row in rows]

    async def delete_lease(self, runtime_id: str) -> None:
        """Remove the lease of ``runtime_id``."""
        await self._write("DELETE FROM leases WHERE runtime_id = ?", [(runtime_id,)])

    async def put_process_group(self, row: ProcessGroupRow) -> None:
        """Insert or replace the process group with ``row.marker``."""
        await self._put(_GROUPS, [row])

    async def delete_process_group(self, marker: str) -> None:
        """Remove the process group with ``marker``."""
        await self._write("DELETE FROM process_groups WHERE marker = ?", [(marker,)])

    async def list_process_groups(self, runtime_id: str | None = None) -> list[ProcessGroupRow]:
        """Process groups (of ``runtime_id``, or all) in the order they were first put."""
        if runtime_id is None:
            rows = await self._select(f"{_GROUPS.select} ORDER BY rowid", ())
        else:
            rows = await self._select(f"{_GROUPS.select} WHERE runtime_id = ? ORDER BY rowid",
                                      (runtime_id,))
        return [self._from_row(_GROUPS, row) for row in rows]

    async def delete_process_groups(self, runtime_id: str) -> None:
        """Remove every process group of ``runtime_id``."""
        await self._write("DELETE FROM process_groups WHERE runtime_id = ?", [(runtime_id,)])

    # -- conversion -------------------------------------------------------------------------------

    def _column_value(self, table: _Table, column: str, value: Any) -> Any:
        plain = self._conv.unstructure(value)
        return json.dumps(plain, separators=(",", ":")) if column in table.json_columns else plain

    def _to_params(self, table: _Table, rec: Any) -> tuple[Any, ...]:
        data = self._conv.unstructure(rec)
        return tuple(json.dumps(data[c], separators=(",", ":")) if c in table.json_columns
                     else data[c] for c in table.columns)

    def _from_row(self, table: _Table, row: tuple[Any, ...]) -> Any:
        data = {c: json.loads(v) if c in table.json_columns else v
                for c, v in zip(table.columns, row, strict=True)}
        return self._conv.structure(data, table.cls)

    # -- writing ----------------------------------------------------------------------------------

    async def _put(self, table: _Table, recs: Sequence[Any]) -> None:
        if not recs:
            self._check_open()
            await trio.lowlevel.checkpoint()
            return
        await self._write(table.upsert, [self._to_params(table, rec) for rec in recs])

    async def _write(self, sql: str, params: list[tuple[Any, ...]], *,
                     want_rowcount: bool = False) -> int:
        """Enqueue one write and wait for the commit of its batch; returns its rowcount."""
        self._check_open()
        if self.read_only:
            raise StoreReadOnly(self.path, "opened read-only: cannot write to it")
        op = _Write(sql, params, _nbytes(params), want_rowcount)
        self._queue.append(op)
        self._pending_rows += op.rows
        self._wake.set()
        await op.done.wait()
        if op.error is not None:
            raise StoreWriteFailed(
                self.path, f"write transaction failed: {_describe(op.error)}") from op.error
        return op.rowcount

    async def _flusher(self) -> None:
        """Drain the queue one batch (one transaction) at a time; park while it is empty."""
        try:
            while True:
                if not self._queue:
                    if self._state != "open":
                        return
                    self._wake = trio.Event()
                    await self._wake.wait()
                    continue
                await self._flush_batch()
        finally:
            # gone (cancelled, or closing): refuse new writes, fail any left (none in practice)
            if self._state == "open":
                self._state = "closing"
            while self._queue:
                op = self._queue.popleft()
                self._pending_rows -= op.rows
                op.error = RuntimeError("the store closed before this write was committed")
                op.done.set()

    async def _flush_batch(self) -> None:
        batch: list[_Write] = []
        rows = 0
        while self._queue and (not batch or rows + self._queue[0].rows <= self.batch_max):
            op = self._queue.popleft()
            batch.append(op)
            rows += op.rows
        try:
            error = await self._commit(batch)
            if error is not None and len(batch) > 1 and not isinstance(error, sqlite3.OperationalError):
                # a call's own bad data (constraint, unsupported value): retry each call alone so
                # one caller's mistake does not fail its batch-mates
                for op in batch:
                    op.error = None
                    await self._commit([op])
        finally:
            self._pending_rows -= rows
            for op in batch:
                if not op.committed and op.error is None:
                    op.error = RuntimeError("the write was interrupted before it was committed")
                op.done.set()

    async def _commit(self, batch: list[_Write]) -> BaseException | None:
        """Run ``batch`` as one transaction; record the outcome on its calls; return the error."""
        try:
            # a started transaction always finishes (bounded by busy_timeout): never half-known
            with trio.CancelScope(shield=True):
                counts = await trio.to_thread.run_sync(self._execute_batch, batch,
                                                       limiter=self._write_limiter)
        except Exception as exc:
            _log.warning("store_write_failed", path=str(self.path), calls=len(batch),
                         rows=sum(op.rows for op in batch), error=_describe(exc))
            for op in batch:
                op.error = exc
            return exc
        self._transactions += 1
        self._rows_written += sum(op.rows for op in batch)
        self._bytes_written += sum(op.nbytes for op in batch)
        for op, count in zip(batch, counts, strict=True):
            op.rowcount = count
            op.committed = True
        return None

    def _execute_batch(self, batch: list[_Write]) -> list[int]:
        """Run ``batch`` in one transaction on the writer connection (in a worker thread)."""
        conn = self._writer
        assert conn is not None
        counts: list[int] = []
        conn.execute("BEGIN IMMEDIATE")
        try:
            i = 0
            while i < len(batch):
                op = batch[i]
                if op.want_rowcount:
                    counts.append(conn.executemany(op.sql, op.params).rowcount)
                    i += 1
                    continue
                # consecutive calls of the same statement go in one executemany
                j = i
                params: list[tuple[Any, ...]] = []
                while j < len(batch) and batch[j].sql == op.sql and not batch[j].want_rowcount:
                    params.extend(batch[j].params)
                    j += 1
                conn.executemany(op.sql, params)
                counts.extend([-1] * (j - i))
                i = j
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                try:
                    conn.execute("ROLLBACK")
                except sqlite3.Error:
                    pass
            raise
        return counts

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
            raise StoreError(self.path, f"read failed: {_describe(exc)}") from exc

    def _select_sync(self, sql: str, args: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        assert self._reader is not None
        return self._reader.execute(sql, args).fetchall()

    # -- opening and closing (worker threads) -----------------------------------------------------

    def _connect(self, target: str | None = None, *, uri: bool = False) -> sqlite3.Connection:
        return sqlite3.connect(target or os.fspath(self.path), timeout=self.busy_timeout,
                               isolation_level=None, check_same_thread=False, uri=uri)

    def _sqlite_error(self, exc: sqlite3.Error, doing: str) -> StoreError:
        code = getattr(exc, "sqlite_errorcode", None)
        if code is not None and code & 0xFF in (_SQLITE_CORRUPT, _SQLITE_NOTADB):
            return StoreCorrupt(self.path, f"{doing}: {_describe(exc)}")
        if code is not None and code & 0xFF == _SQLITE_READONLY:
            return StoreReadOnly(self.path, f"{doing}: {_describe(exc)}")
        return StoreError(self.path, f"{doing}: {_describe(exc)}")

    def _read_only_uri(self) -> str:
        """A ``mode=ro`` URI; ``immutable=1`` too when no writer left a ``-wal`` file, so that a
        read creates no ``-wal``/``-shm`` files (and works in a read-only directory)."""
        uri = self.path.resolve().as_uri() + "?mode=ro"
        wal = self.path.with_name(self.path.name + "-wal")
        return uri if wal.exists() else uri + "&immutable=1"

    def _open_read_only_sync(self) -> sqlite3.Connection:
        try:
            st = self.path.stat()
        except FileNotFoundError:
            raise StoreError(self.path, "no such store (a read-only open creates nothing)") from None
        except OSError as exc:
            raise StoreError(self.path, f"cannot stat it: {exc}") from exc
        if not stat.S_ISREG(st.st_mode):
            raise StoreError(self.path, "is not a regular file")
        if st.st_size == 0:
            raise StoreError(self.path, "is an empty file, not a corral store")
        self._inspect_sync()
        try:
            return self._connect(self._read_only_uri(), uri=True)
        except sqlite3.Error as exc:
            raise self._sqlite_error(exc, "cannot open it read-only") from exc

    def _check_writable_sync(self, st: os.stat_result | None) -> None:
        """Refuse a store this process cannot write, before anything is changed."""
        directory = self.path.parent
        if st is not None and not os.access(self.path, os.W_OK):
            raise StoreReadOnly(self.path, "is read-only (no write access to the file); it can only be read")
        wal = self.path.with_name(self.path.name + "-wal")
        if directory.is_dir() and not os.access(directory, os.W_OK | os.X_OK) and not wal.exists():
            raise StoreReadOnly(self.path, f"its directory {directory} is read-only (SQLite needs to create "
                                           "its -wal and -shm files there); it can only be read")

    def _open_sync(self) -> tuple[sqlite3.Connection | None, sqlite3.Connection]:
        if self.read_only:
            return None, self._open_read_only_sync()
        path = self.path
        try:
            st: os.stat_result | None = path.stat()
        except FileNotFoundError:
            st = None
        except OSError as exc:
            raise StoreError(path, f"cannot stat it: {exc}") from exc
        if st is not None and not stat.S_ISREG(st.st_mode):
            raise StoreError(path, "is not a regular file")
        self._check_writable_sync(st)
        if st is not None and st.st_size > 0:
            self._inspect_sync()  # refuses a foreign or newer file before anything is written
        elif st is None:
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise StoreError(path, f"cannot create its directory: {exc}") from exc
        try:
            writer = self._connect()
        except sqlite3.Error as exc:
            raise self._sqlite_error(exc, "cannot open it") from exc
        try:
            mode = writer.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise StoreError(path, f"cannot switch it to WAL journal mode (got {mode!r})")
            writer.execute("PRAGMA synchronous=NORMAL")
            self._migrate_sync(writer)
            reader = self._connect()
            reader.execute("PRAGMA synchronous=NORMAL")
        except sqlite3.Error as exc:
            writer.close()
            raise self._sqlite_error(exc, "cannot open it") from exc
        except BaseException:
            writer.close()
            raise
        return writer, reader

    def _inspect_sync(self) -> None:
        """Refuse a file that is not a corral store (or is one of a newer schema), read-only."""
        try:
            with open(self.path, "rb") as f:
                head = f.read(len(_SQLITE_HEADER))
        except OSError as exc:
            raise StoreError(self.path, f"cannot read it: {exc}") from exc
        if head != _SQLITE_HEADER:
            raise StoreCorrupt(self.path, "is not a SQLite database (no SQLite header); left as it is")
        try:
            conn = self._connect(self._read_only_uri(), uri=True)
        except sqlite3.Error as exc:
            raise self._sqlite_error(exc, "cannot open it read-only") from exc
        try:
            self._check_schema(conn)
        finally:
            conn.close()

    def _check_schema(self, conn: sqlite3.Connection) -> int:
        """The schema version of ``conn``'s database, after checking it is ours and not newer."""
        try:
            tables = sorted(r[0] for r in conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table'"))
            version = int(conn.execute("PRAGMA user_version").fetchone()[0])
            marked = "corral_meta" in tables and conn.execute(
                "SELECT value FROM corral_meta WHERE key = ?", (_MARKER_KEY,)).fetchone() == (
                _MARKER_VALUE,)
        except sqlite3.Error as exc:
            raise self._sqlite_error(exc, "cannot read its schema; left as it is") from exc
        if (tables or version) and not marked:
            raise StoreError(self.path, (
                f"is a SQLite database but not a corral store (user_version {version}, tables: "
                f"{', '.join(tables[:8]) or 'none'}); left as it is"))
        latest = _latest_version()
        if version > latest:
            raise StoreSchemaTooNew(self.path, (
                f"was written by a newer corral (schema {version}, this code knows {latest}); "
                "left as it is"))
        if marked and version < 1:
            raise StoreCorrupt(self.path, "has the corral marker but schema version 0")
        return version

    def _migrate_sync(self, conn: sqlite3.Connection) -> None:
        conn.execute("BEGIN IMMEDIATE")
        try:
            version = self._check_schema(conn)  # again, under the write lock
            for migration in MIGRATIONS:
                if migration.version <= version:
                    continue
                for statement in migration.statements:
                    conn.execute(statement)
                conn.execute(f"PRAGMA user_version = {int(migration.version)}")
                _log.info("store_migrated", path=str(self.path), version=migration.version)
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

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
