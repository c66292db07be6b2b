"""Durable recording at the speed of SQLite: each goal of ``record="durable"`` as a ratio to its floor.

    python benchmarks/durable.py [--json] [--quick] [--repeats N] [--concurrent N] [--sequential N]
                                 [--events N]

The job is a 2-step no-op flow (``s1`` after ``s0``), spawned on the embedded SQLite store in a
temporary file; opening the runtime is outside the timing, and each timing starts after a
``gc.collect()`` (no collection of earlier garbage lands in one figure and not in its floor).
Figures (median of the repeats):

- durable, ``--concurrent`` jobs at once: µs/job from the first spawn until the last ``wait()``.
  Floor 1: the same jobs with ``record="off"`` on the same kind of store (goal: ratio ≤ 3).
  Floor 2: bare ``sqlite3`` writing the very rows those durable jobs left in the file (read back
  from it: their events, checkpoints and job records, already serialized) into a fresh file with
  the same schema and pragmas (WAL, ``synchronous=NORMAL``), ``executemany`` in transactions of
  512 rows (the store's ``batch_max``) (goal: ratio ≤ 10).
- durable, one job at a time: µs/job.  Floor: the same jobs with ``record="off"`` on the default
  in-memory store (the peer goal is ≲ 1,000 µs/job: 10x LangGraph + SqliteSaver and DBOS on SQLite).
- ``record="memory"``: events/s through one job streaming ``--events`` deltas (one event each).
  Floor: the same job with ``record="off"`` (goal: ≥ 300,000 events/s).
- ``record="off"`` on the SQLite store, ``--concurrent`` jobs at once: µs/job.  Floor: the same jobs
  on the default in-memory store (goal: ratio ≤ 1.5).
- bytes per finished durable job in the file (events, checkpoints and job record, by SQLite's
  ``dbstat`` where available, else the file size over the jobs).
"""

from __future__ import annotations

import gc
import sqlite3
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import trio

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _common import emit, options, quiet_logs, row, summary

from actors.stream import TextDelta
from runtime import Flow, Step, open_runtime
from runtime.store.sqlite import MIGRATIONS

BATCH_ROWS = 512
TABLES = ("jobs", "events", "checkpoints")


async def noop(ctx: Any, inputs: Any) -> None:
    return None


def two_step() -> Flow:
    return Flow("noop2", [Step("s0", run=noop), Step("s1", run=noop, after=["s0"])])


def streaming(n: int) -> Flow:
    async def talk(ctx: Any, inputs: Any) -> dict[str, int]:
        async with ctx.stream(mode="per_token") as stream:
            for i in range(n):
                stream.delta_nowait(TextDelta(f"t{i % 100:02d} "))
                if i % 1000 == 999:
                    await trio.lowlevel.checkpoint()
        return {"n": n}

    return Flow(f"talk{n}", [Step("talk", run=talk)])


def _open(path: Path | None, n: int) -> Any:
    return open_runtime(store=path, max_results=max(n, 16)) if path else open_runtime(max_results=max(n, 16))


async def concurrent_us(path: Path | None, mode: str, n: int) -> float:
    flow = two_step()
    async with _open(path, n) as rt:
        gc.collect()  # no collection of earlier garbage lands in the timing, for every figure alike
        t0 = time.perf_counter()
        jobs = [await rt.spawn(flow, record=mode) for _ in range(n)]
        for job in jobs:
            result = await job.wait()
            if result.state.value != "completed":
                raise RuntimeError(f"bench job ended {result.state.value}: {result.error}")
        return (time.perf_counter() - t0) / n * 1e6


async def sequential_us(path: Path | None, mode: str, n: int) -> float:
    flow = two_step()
    async with _open(path, n) as rt:
        await (await rt.spawn(flow, record=mode)).wait()  # warm
        gc.collect()
        t0 = time.perf_counter()
        for _ in range(n):
            await (await rt.spawn(flow, record=mode)).wait()
        return (time.perf_counter() - t0) / n * 1e6


async def events_per_s(mode: str, flow: Flow, n_events: int) -> float:
    async with open_runtime() as rt:
        gc.collect()
        t0 = time.perf_counter()
        result = await (await rt.spawn(flow, record=mode)).wait()
        elapsed = time.perf_counter() - t0
        if result.state.value != "completed":
            raise RuntimeError(f"bench job ended {result.state.value}: {result.error}")
    return n_events / elapsed


def rows_of(db: Path) -> dict[str, tuple[list[str], list[tuple[Any, ...]]]]:
    """The rows of the job tables of ``db`` (columns, rows), as stored."""
    conn = sqlite3.connect(db)
    try:
        out = {}
        for table in TABLES:
            cur = conn.execute(f"SELECT * FROM {table}")
            out[table] = ([d[0] for d in cur.description], cur.fetchall())
        for table in ("flows",):  # a flow table, when the schema has one
            if conn.execute("SELECT 1 FROM sqlite_master WHERE name = ?", (table,)).fetchone():
                cur = conn.execute(f"SELECT * FROM {table}")
                out[table] = ([d[0] for d in cur.description], cur.fetchall())
        return out
    finally:
        conn.close()


def bytes_per_job(db: Path, n: int) -> float:
    conn = sqlite3.connect(db)
    try:
        try:
            names = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE tbl_name IN "
                                                "('jobs', 'events', 'checkpoints', 'flows')")]
            marks = ", ".join("?" for _ in names)
            total = conn.execute(f"SELECT SUM(pgsize) FROM dbstat WHERE name IN ({marks})", names).fetchone()[0]
        except sqlite3.OperationalError:  # no dbstat in this build
            total = db.stat().st_size
    finally:
        conn.close()
    return total / n


def floor_us(rows: dict[str, tuple[list[str], list[tuple[Any, ...]]]], n: int, tmp: Path) -> float:
    """µs/job of bare sqlite3 writing ``rows`` in WAL transactions of ``BATCH_ROWS`` rows."""
    db = tmp / f"floor-{time.perf_counter_ns()}.db"
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    for migration in MIGRATIONS:
        for statement in migration.statements:
            conn.execute(statement)
    work = []
    for table, (columns, table_rows) in rows.items():
        sql = f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' for _ in columns)})"
        work.extend((sql, table_rows[i:i + BATCH_ROWS]) for i in range(0, len(table_rows), BATCH_ROWS))
    t0 = time.perf_counter()
    for sql, chunk in work:
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany(sql, chunk)
        conn.execute("COMMIT")
    elapsed = time.perf_counter() - t0
    conn.close()
    return elapsed / n * 1e6


def _db(tmp: Path) -> Path:
    return tmp / f"bench-{time.perf_counter_ns()}.db"


async def _main(args: Any) -> list[dict[str, Any]]:
    reps = args.repeats
    n = args.concurrent or (200 if args.quick else 1000)
    seq = args.sequential or (20 if args.quick else 300)
    n_events = args.events or (2_000 if args.quick else 50_000)
    out: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        await concurrent_us(_db(tmp), "durable", min(n, 100))  # warm: imports, first-use caches
        durable, off, floors, sizes, mem_off = [], [], [], [], []
        for _ in range(reps):  # interleaved, so that a noisy neighbour weighs on each alike
            db = _db(tmp)
            durable.append(await concurrent_us(db, "durable", n))
            floors.append(floor_us(rows_of(db), n, tmp))
            sizes.append(bytes_per_job(db, n))
            off.append(await concurrent_us(_db(tmp), "off", n))
            mem_off.append(await concurrent_us(None, "off", n))
        out.append(row(f"durable: {n} concurrent 2-step jobs, record='durable' vs 'off' (same store)",
                       summary(durable), "µs/job", summary(off), "record='off', SQLite store",
                       repeats=reps, note="goal: ratio <= 3"))
        out.append(row(f"durable: {n} concurrent 2-step jobs vs bare sqlite3, same rows",
                       summary(durable), "µs/job", summary(floors),
                       f"bare sqlite3 executemany of the same rows, WAL, {BATCH_ROWS}-row transactions",
                       repeats=reps, note="goal: ratio <= 10"))
        out.append(row(f"durable: {n} concurrent 2-step jobs, record='off', SQLite vs in-memory store",
                       summary(off), "µs/job", summary(mem_off), "record='off', in-memory store",
                       repeats=reps, note="goal: ratio <= 1.5"))
        one, one_floor = [], []
        for _ in range(reps):
            one.append(await sequential_us(_db(tmp), "durable", seq))
            one_floor.append(await sequential_us(None, "off", seq))
        out.append(row("durable: 2-step job one at a time, record='durable', SQLite store",
                       summary(one), "µs/job", summary(one_floor), "record='off', in-memory store",
                       repeats=reps, note="goal: <= 1000 µs/job (10x LangGraph+SqliteSaver, DBOS on SQLite)"))
        flow = streaming(n_events)
        mem, mem_floor = [], []
        for _ in range(reps):
            mem.append(await events_per_s("memory", flow, n_events))
            mem_floor.append(await events_per_s("off", flow, n_events))
        out.append(row(f"durable: events/s through one job, record='memory' ({n_events} deltas)",
                       summary(mem), "events/s", summary(mem_floor), "record='off', same job",
                       better="higher", repeats=reps, note="goal: >= 300,000 events/s"))
        out.append(row(f"durable: bytes per finished durable 2-step job in the file ({n} jobs)",
                       summary(sizes), "B/job", repeats=reps, note="dbstat pages of the job tables"))
    return out


def main() -> None:
    def add(p: Any) -> None:
        p.add_argument("--concurrent", type=int, default=None, help="jobs at once (default 1000)")
        p.add_argument("--sequential", type=int, default=None, help="jobs one at a time (default 300)")
        p.add_argument("--events", type=int, default=None, help="deltas in the events/s job (default 50000)")

    args = options(__doc__, add)
    quiet_logs()
    emit(trio.run(_main, args), args.json)


if __name__ == "__main__":
    main()
