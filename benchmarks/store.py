"""Store write throughput: rows/s of ``SqliteStore.append_events`` from concurrent writers, next to
the floor of a bare ``sqlite3`` ``executemany`` of the same rows (already serialized) in one
transaction into the same schema, on a fresh file with the same pragmas (WAL, synchronous=NORMAL).
Opening the store and creating the schema are outside the timing.

    python benchmarks/store.py [--json] [--quick] [--repeats N] [--writers N] [--rows N]

``floor_rows_per_s(params)`` is reused by ``benchmarks/recorder.py``.
"""

from __future__ import annotations

import json
import sqlite3
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import trio

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _common import emit, options, quiet_logs, repeat, row

from runtime.store import EventRow, SqliteStore
from runtime.store.sqlite import MIGRATIONS

FLOOR = "bare sqlite3 executemany, 1 transaction, same schema"
INSERT = "INSERT INTO events (job_id, seq, type, ts, payload) VALUES (?, ?, ?, ?, ?)"


def payload(writer: int, i: int) -> dict:
    return {"step": f"s{writer}", "channel": "text", "text": f"delta {i} of writer {writer} " * 3}


def events(writer: int, rows: int) -> list[EventRow]:
    return [EventRow(f"job{writer}", i, "step_stream", 1.7e9 + i, payload(writer, i)) for i in range(rows)]


def params_of(rows: Sequence[EventRow]) -> list[tuple[Any, ...]]:
    """``rows`` as the parameters of the events INSERT (payload serialized outside the timing)."""
    return [(e.job_id, e.seq, e.type, e.ts, json.dumps(e.payload, separators=(",", ":"))) for e in rows]


def floor_rows_per_s(params: Sequence[tuple[Any, ...]]) -> float:
    """Rows/s of one bare ``executemany`` of ``params`` into a fresh file with the store's schema."""
    with tempfile.TemporaryDirectory() as tmp:
        conn = sqlite3.connect(Path(tmp) / "floor.db", isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        for migration in MIGRATIONS:
            for statement in migration.statements:
                conn.execute(statement)
        t0 = time.perf_counter()
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany(INSERT, params)
        conn.execute("COMMIT")
        elapsed = time.perf_counter() - t0
        conn.close()
    return len(params) / elapsed


async def corral_write(path: Path, writers: int, rows: int, per_call: int) -> float:
    batches = [events(w, rows) for w in range(writers)]
    async with SqliteStore(path) as store:

        async def writer(rows_of_writer: list[EventRow]) -> None:
            for i in range(0, len(rows_of_writer), per_call):
                await store.append_events(rows_of_writer[i:i + per_call])

        t0 = time.perf_counter()
        async with trio.open_nursery() as nursery:
            for batch in batches:
                nursery.start_soon(writer, batch)
        elapsed = time.perf_counter() - t0
        assert store.stats().rows_written == writers * rows
    return writers * rows / elapsed


def corral_rows_per_s(writers: int, rows: int, per_call: int) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        return trio.run(corral_write, Path(tmp) / "corral.db", writers, rows, per_call)


def main() -> None:
    def add(p):
        p.add_argument("--writers", type=int, default=None, help="concurrent writers (default 50)")
        p.add_argument("--rows", type=int, default=None, help="rows per writer (default 200)")

    args = options(__doc__, add)
    quiet_logs()
    writers = args.writers or (10 if args.quick else 50)
    per_writer = args.rows or (40 if args.quick else 200)
    serial = 200 if args.quick else 2_000
    rows = []
    for label, w, n, per_call in (
        (f"{writers} writers x {per_writer} rows, 1 row/call", writers, per_writer, 1),
        (f"{writers} writers x {per_writer} rows, 20 rows/call", writers, per_writer, 20),
        (f"1 writer x {serial} rows, 1 row/call", 1, serial, 1),
    ):
        params = params_of([e for i in range(w) for e in events(i, n)])
        base = repeat(lambda p=params: floor_rows_per_s(p), args.repeats)
        value = repeat(lambda w=w, n=n, c=per_call: corral_rows_per_s(w, n, c), args.repeats)
        rows.append(row(f"store: append_events {label}", value, "rows/s", base, FLOOR,
                        better="higher", repeats=args.repeats))
    emit(rows, args.json)


if __name__ == "__main__":
    main()
