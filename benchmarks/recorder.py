"""Recording: events/s with record off, memory and durable; what a finished job leaves behind;
memory over 100_000 jobs with recording off; SQLite rows/s of durable recording.

    python benchmarks/recorder.py [--json] [--quick] [--repeats N] [--events N] [--jobs N]

Figures (median of the repeats, with min and max):

- events/s through a job with ``record="off" | "memory" | "durable"`` (durable: the embedded SQLite
  store in a temporary file): one python step streams ``--events`` deltas in ``per_token`` mode, so
  each delta is one published event; timed from ``spawn`` until ``job.wait()`` returns (for durable
  that includes the recorder's last flush).  Floor: the same number of objects through a bare
  ``send_nowait`` on an unbounded trio memory channel.
- bytes retained per finished job, per mode (``tracemalloc``, after ``gc.collect()``), over 200
  small jobs (a 2-step flow, a few deltas each).  Floor: the same jobs with record off (what every
  finished job leaves on purpose: its ``JobResult`` in the runtime's bounded LRU).  Also
  ``stats().recorded_bytes`` once they ended (expected 0: recorders die with their jobs).
- memory over 100_000 "build flow, spawn, discard" jobs with record off (the leak of a
  process-global recorder, replayed): RSS and ``sys.getallocatedblocks()`` growth per 1_000 jobs
  after the first 10_000 (the defaults: the runtime keeps ``max_results=10_000`` results and the
  default in-memory store ``max_finished_jobs=10_000`` job records, so both are full by then),
  over consecutive windows (one per repeat); expected ~0.  ``tracemalloc`` growth per 1_000 jobs
  over ``--traced-jobs`` (default 6_000) jobs traced from the first, with both bounds set to 1_000:
  tracing makes a job ~5x slower, and 100_000 traced jobs would take ~6 minutes.
- ms per job, one at a time, of a small 2-step job with the embedded SQLite store and each
  record mode.  Floor: the same job on the default in-memory store with record off.
- SQLite rows/s written by durable recording (events, checkpoints, job records; many jobs at once),
  next to a bare ``executemany`` of as many event rows into the same schema (``benchmarks/store.py``).
"""

from __future__ import annotations

import gc
import math
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Any

import psutil
import trio

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import store as store_bench
from _common import emit, options, quiet_logs, row, summary

from actors.stream import TextDelta
from runtime import Flow, Step, open_runtime
from runtime.store import MemoryStore

MODES = ("off", "memory", "durable")
YIELD_EVERY = 1000


def streaming_flow(n_deltas: int, steps: int = 1) -> Flow:
    async def talk(ctx, inputs):
        async with ctx.stream(mode="per_token") as stream:
            for i in range(n_deltas):
                stream.delta_nowait(TextDelta(f"t{i % 100:02d} "))
                if i % YIELD_EVERY == YIELD_EVERY - 1:
                    await trio.lowlevel.checkpoint()
        return {"n": n_deltas}

    return Flow(f"talk{n_deltas}x{steps}",
                [Step(f"s{i}", run=talk, after=[f"s{i - 1}"] if i else []) for i in range(steps)])


def _runtime(mode: str, tmp: Path, **kw: Any):
    return open_runtime(store=tmp / "bench.db", **kw) if mode == "durable" else open_runtime(**kw)


# -- events per second -------------------------------------------------------------------------------


async def count_events(flow: Flow, at_most: int) -> int:
    """Events one job of ``flow`` publishes (counted once, by a subscriber whose buffer holds them
    all, outside the timing)."""
    async with open_runtime() as rt:
        job = await rt.spawn(flow)
        n = 0
        async for event in job.events(maxlen=at_most):
            if type(event).__name__ == "Lagged":
                raise RuntimeError("the counting subscriber lagged")
            n += 1
        await job.wait()
    return n


async def events_per_s(mode: str, flow: Flow, n_events: int, tmp: Path) -> float:
    async with _runtime(mode, tmp) as rt:
        t0 = time.perf_counter()
        job = await rt.spawn(flow, record=mode)
        result = await job.wait()
        elapsed = time.perf_counter() - t0
        if result.state.value != "completed":
            raise RuntimeError(f"bench job ended {result.state.value}: {result.error}")
    return n_events / elapsed


async def floor_events_per_s(n_events: int) -> float:
    send, receive = trio.open_memory_channel[Any](math.inf)
    send_nowait = send.send_nowait
    items = [TextDelta(f"t{i % 100:02d} ") for i in range(n_events)]
    t0 = time.perf_counter()
    for i, item in enumerate(items):
        send_nowait(item)
        if i % YIELD_EVERY == YIELD_EVERY - 1:
            await trio.lowlevel.checkpoint()
    elapsed = time.perf_counter() - t0
    send.close()
    receive.close()
    return n_events / elapsed


# -- latency of one job --------------------------------------------------------------------------------


async def job_ms(mode: str, n_jobs: int, tmp: Path, *, sqlite: bool) -> float:
    """ms per job, one at a time, of a 2-step flow streaming 5 deltas per step."""
    flow = streaming_flow(5, steps=2)
    path = tmp / f"latency-{time.perf_counter_ns()}.db"
    async with (open_runtime(store=path) if sqlite else open_runtime()) as rt:
        t0 = time.perf_counter()
        for _ in range(n_jobs):
            await (await rt.spawn(flow, record=mode)).wait()
        elapsed = time.perf_counter() - t0
    path.unlink(missing_ok=True)
    return elapsed / n_jobs * 1e3


# -- bytes retained per finished job --------------------------------------------------------------------


async def retained_per_job(mode: str, n_jobs: int, tmp: Path, warmup: int = 10) -> tuple[float, int]:
    """(tracemalloc bytes retained per finished job, stats().recorded_bytes after they ended)."""
    flow = streaming_flow(5, steps=2)
    async with _runtime(mode, tmp) as rt:
        for _ in range(warmup):  # warm caches (imports, first-use allocations) outside the measurement
            await (await rt.spawn(flow, record=mode)).wait()
        gc.collect()
        tracemalloc.start()
        try:
            before = tracemalloc.get_traced_memory()[0]
            for _ in range(n_jobs):
                job = await rt.spawn(flow, record=mode)
                await job.wait()
            gc.collect()
            after = tracemalloc.get_traced_memory()[0]
        finally:
            tracemalloc.stop()
        recorded = rt.stats().recorded_bytes
    return (after - before) / n_jobs, recorded


# -- memory over many jobs --------------------------------------------------------------------------------


async def _discard_jobs(rt: Any, count: int, batch: int) -> None:
    """``count`` "build flow, spawn, discard" jobs, ``batch`` at a time."""

    async def noop(ctx, inputs):
        return None

    for start in range(0, count, batch):
        jobs = []
        for _ in range(min(batch, count - start)):
            flow = Flow("discard", [Step("a", run=noop), Step("b", run=noop, after=["a"])])
            jobs.append(await rt.spawn(flow))
        for job in jobs:
            await job.wait()


async def growth_over(n_jobs: int, windows: int, batch: int,
                      bound: int) -> tuple[list[float], list[float], float]:
    """RSS and allocated-block growth per 1_000 jobs in each of ``windows`` windows after the first
    ``bound`` jobs (the runtime keeps the last ``bound`` results and store records, by design)."""
    proc = psutil.Process()
    rss, blocks = [], []
    t0 = time.perf_counter()
    async with open_runtime(max_results=bound, store=MemoryStore(max_finished_jobs=bound)) as rt:
        await _discard_jobs(rt, bound, batch)
        per_window = (n_jobs - bound) // windows
        gc.collect()
        last_rss, last_blocks = proc.memory_info().rss, sys.getallocatedblocks()
        for _ in range(windows):
            await _discard_jobs(rt, per_window, batch)
            gc.collect()
            now_rss, now_blocks = proc.memory_info().rss, sys.getallocatedblocks()
            rss.append((now_rss - last_rss) / per_window * 1000)
            blocks.append((now_blocks - last_blocks) / per_window * 1000)
            last_rss, last_blocks = now_rss, now_blocks
    return rss, blocks, time.perf_counter() - t0


async def traced_growth(n_jobs: int, windows: int, batch: int, bound: int) -> list[float]:
    """tracemalloc growth per 1_000 jobs over ``windows`` windows, traced from the first job.

    The trace runs from the start (a trace started later would count the replacements of
    untraced, evicted results as growth until the bounded history had turned over once).
    """
    traced = []
    tracemalloc.start()
    try:
        async with open_runtime(max_results=bound, store=MemoryStore(max_finished_jobs=bound)) as rt:
            await _discard_jobs(rt, bound, batch)
            per_window = (n_jobs - bound) // windows
            gc.collect()
            last = tracemalloc.get_traced_memory()[0]
            for _ in range(windows):
                await _discard_jobs(rt, per_window, batch)
                gc.collect()
                now = tracemalloc.get_traced_memory()[0]
                traced.append((now - last) / per_window * 1000)
                last = now
    finally:
        tracemalloc.stop()
    return traced


# -- durable rows per second --------------------------------------------------------------------------------


async def durable_rows_per_s(n_jobs: int, n_deltas: int, tmp: Path) -> tuple[float, int]:
    flow = streaming_flow(n_deltas)
    path = tmp / f"rows-{time.perf_counter_ns()}.db"
    async with open_runtime(store=path) as rt:
        store = rt.store
        before = store.stats().rows_written
        t0 = time.perf_counter()
        async with trio.open_nursery() as nursery:
            for _ in range(n_jobs):
                job = await rt.spawn(flow, record="durable")
                nursery.start_soon(job.wait)
        elapsed = time.perf_counter() - t0
        rows = store.stats().rows_written - before
    path.unlink(missing_ok=True)
    return rows / elapsed, rows


# -- main ----------------------------------------------------------------------------------------------------


async def _main(args: Any) -> list[dict[str, Any]]:
    reps = args.repeats
    n_deltas = args.events or (500 if args.quick else 20_000)
    n_small = 10 if args.quick else 200
    n_many = args.jobs or (200 if args.quick else 100_000)
    n_traced = args.traced_jobs or (300 if args.quick else 6_000)
    # the runtime's defaults: max_results=10_000 results in memory, and the default in-memory store
    # keeps max_finished_jobs=10_000 job records; memory grows until both are full, then stays flat
    bound = 50 if args.quick else 10_000
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        flow = streaming_flow(n_deltas)
        n_events = await count_events(flow, n_deltas + 1000)
        floor = summary([await floor_events_per_s(n_events) for _ in range(reps)])
        for mode in MODES:
            rates = [await events_per_s(mode, flow, n_events, tmp) for _ in range(reps)]
            rows.append(row(f"recorder: events/s, record={mode!r} ({n_events} events, one job)",
                            summary(rates), "events/s", floor, "memory channel send_nowait",
                            better="higher", repeats=reps))

        n_latency = 5 if args.quick else 100
        base = summary([await job_ms("off", n_latency, tmp, sqlite=False) for _ in range(reps)])
        for mode in MODES:
            ms = summary([await job_ms(mode, n_latency, tmp, sqlite=True) for _ in range(reps)])
            rows.append(row(f"recorder: small 2-step job latency, SQLite store, record={mode!r}",
                            ms, "ms/job", base, "the same job, default in-memory store, record='off'",
                            repeats=reps))

        kept: dict[str, list[float]] = {m: [] for m in MODES}
        recorded: list[float] = []
        for _ in range(reps):
            for mode in MODES:
                per_job, rec = await retained_per_job(mode, n_small, tmp, 3 if args.quick else 10)
                kept[mode].append(per_job)
                recorded.append(rec)
        for mode in ("memory", "durable"):
            rows.append(row(f"recorder: bytes kept per finished job, record={mode!r} ({n_small} jobs)",
                            summary(kept[mode]), "B/job", summary(kept["off"]),
                            "record='off' (its JobResult and store record, both bounded)",
                            repeats=reps))
        rows.append(row("recorder: stats().recorded_bytes once recording jobs ended",
                        summary(recorded), "bytes", note="expected 0", repeats=reps))

        rss, blocks, elapsed = await growth_over(n_many, reps, batch=100, bound=bound)
        how = (f"{n_many} build-spawn-discard jobs, record off, after the first {bound} "
               f"(the bounded results and store records are full by then); {elapsed:.0f} s")
        rows.append(row(f"recorder: RSS growth per 1000 jobs ({n_many} jobs, record off)",
                        summary(rss), "B/1000 jobs", note=f"expected ~0; {how}", repeats=reps))
        rows.append(row(f"recorder: allocated blocks growth per 1000 jobs ({n_many} jobs, record off)",
                        summary(blocks), "blocks/1000 jobs", repeats=reps,
                        note=f"expected ~0; sys.getallocatedblocks(); {how}"))
        traced_bound = 100 if args.quick else 1_000
        traced = await traced_growth(n_traced, reps, batch=100, bound=traced_bound)
        rows.append(row(f"recorder: tracemalloc growth per 1000 jobs ({n_traced} jobs, record off)",
                        summary(traced), "B/1000 jobs", repeats=reps,
                        note=f"expected ~0; traced from the first job, max_results and the store's "
                             f"max_finished_jobs set to {traced_bound}, windows after the first "
                             f"{traced_bound} (tracing makes each job ~5x slower, hence fewer jobs)"))

        n_jobs, per_job = (5, 100) if args.quick else (50, 1_000)
        measured = [await durable_rows_per_s(n_jobs, per_job, tmp) for _ in range(reps)]
        n_rows = int(summary(r for _, r in measured)[0])
        params = store_bench.params_of([e for w in range(n_jobs)
                                        for e in store_bench.events(w, max(1, n_rows // n_jobs))])
        floor_rows = summary([store_bench.floor_rows_per_s(params) for _ in range(reps)])
        rows.append(row(f"recorder: SQLite rows/s, durable ({n_jobs} jobs x {per_job} events at once)",
                        summary(r for r, _ in measured),
                        "rows/s", floor_rows, store_bench.FLOOR, better="higher", repeats=reps))
    return rows


def main() -> None:
    def add(p):
        p.add_argument("--events", type=int, default=None, help="deltas in the events/s job")
        p.add_argument("--jobs", type=int, default=None, help="jobs for the RSS-growth figure")
        p.add_argument("--traced-jobs", type=int, default=None,
                       help="jobs for the tracemalloc-growth figure (default 6000)")

    args = options(__doc__, add)
    quiet_logs()
    emit(trio.run(_main, args), args.json)


if __name__ == "__main__":
    main()
