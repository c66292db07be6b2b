"""Store write throughput: rows/s of ``SqliteStore.append_events`` from concurrent writers, next to
the floor of a bare ``sqlite3`` ``executemany`` of the same rows (already serialized) in one
transaction into the same schema, on a fresh file with the same pragmas (WAL, synchronous=NORMAL).
Opening the store and creating the schema are outside the timing.

    python benchmarks/store.py [--json] [--writers N] [--rows N]
"""

from __future__ import annotations

import json
import logging
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

import structlog
import trio

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _common import emit, repeat, row

from runtime.store import EventRow, SqliteStore
from runtime.store.sqlite import MIGRATIONS


def _arg(name: str, default: int) -> int:
    return int(sys.argv[sys.argv.index(name) + 1]) if name in sys.argv else default


WRITERS = _arg("--writers", 50)
ROWS = _arg("--rows", 200)  # per writer
SERIAL_ROWS = 2_000


def payload(writer: int, i: int) -> dict:
    return {"step": f"s{writer}", "channel": "text", "text": f"delta {i} of writer {writer} " * 3}


def events(writer: int, rows: int) -> list[EventRow]:
    return [EventRow(f"job{writer}", i, "step_stream", 1.7e9 + i, payload(writer, i)) for i in range(rows)]


def floor_rows_per_s(writers: int, rows: int) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        conn = sqlite3.connect(Path(tmp) / "floor.db", isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        for migration in MIGRATIONS:
            for statement in migration.statements:
                conn.execute(statement)
        params = [(e.job_id, e.seq, e.type, e.ts, json.dumps(e.payload, separators=(",", ":")))
                  for w in range(writers) for e in events(w, rows)]
        t0 = time.perf_counter()
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany("INSERT INTO events (job_id, seq, type, ts, payload) VALUES (?, ?, ?, ?, ?)",
                         params)
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
    # keep stdout for the figures (structlog's default logger prints there)
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    rows = []
    for label, writers, n, per_call in (
        (f"{WRITERS} writers x {ROWS} rows, 1 row/call", WRITERS, ROWS, 1),
        (f"{WRITERS} writers x {ROWS} rows, 20 rows/call", WRITERS, ROWS, 20),
        (f"1 writer x {SERIAL_ROWS} rows, 1 row/call", 1, SERIAL_ROWS, 1),
    ):
        base = repeat(lambda w=writers, n=n: floor_rows_per_s(w, n))
        value = repeat(lambda w=writers, n=n, c=per_call: corral_rows_per_s(w, n, c))
        rows.append(row(f"append_events {label}", value, "rows/s", base,
                        "bare sqlite3 executemany, 1 transaction"))
    emit(rows)


if __name__ == "__main__":
    main()
