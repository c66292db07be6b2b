"""Soak: a steady mix of jobs through every terminal path; the slope of what the process holds.

    python benchmarks/soak.py [--minutes N] [--interval S] [--json] [--quick] [--tracemalloc]

For ``--minutes`` (default 2) one job is spawned every ``--interval`` seconds (default 0.2), cycling
through a mix that reaches every terminal path: completed (python steps streaming deltas; an agent
step on the fake ACP agent), failed (an exception; a crashing agent), abandoned (an exit rule;
``job.abandon()`` on an agent mid-prompt), cancelled (``job.cancel()`` mid-prompt), timed out (flow
timeout), paused then resumed (``escalate``), retried then completed, and shut down (a second runtime
opened and closed with jobs still running).  Jobs record ``durable`` (into an embedded SQLite store
in a temporary directory) or ``memory``; streams run coalesced.

Once a second, while jobs run, it samples RSS, open fds, threads, live child processes and trio
tasks.  At the end it prints the least-squares slope of each, per minute, over the samples after a
warm-up (the first quarter of the run, at least 15 s when the run is long enough: caches and the
runtime's bounded result LRU, ``max_results=100``, fill there).  ``min..max`` are the slopes of 5
equal segments of that window.  Then, once every job has ended, it compares processes, tasks and
fds with what there was before the first job.  The slopes should be flat; this script reports
them, it does not assert.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
import tracemalloc
from collections import Counter
from pathlib import Path
from typing import Any

import psutil
import trio

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _common import ROOT, emit, fmt, options, quiet_logs, row

from runtime import (
    AgentSpec,
    ExitRule,
    Flow,
    JobPaused,
    OnError,
    Step,
    StepStream,
    open_runtime,
)

# the fake agent by file path: the same program, without importing the ``actors`` package (trio)
FAKE = [sys.executable, str(ROOT / "actors" / "fake_agent.py"), "--delay", "0.002"]
SEGMENTS = 5


# -- the mix ----------------------------------------------------------------------------------------


async def _talk(ctx, inputs):
    async with ctx.stream() as stream:
        for i in range(50):
            await stream.delta(f"token {i} ")
    return {"ok": True}


async def _boom(ctx, inputs):
    await trio.lowlevel.checkpoint()
    raise ValueError("soak: planned failure")


async def _hang(ctx, inputs):
    await trio.sleep_forever()


async def _flaky(ctx, inputs):
    await trio.lowlevel.checkpoint()
    if ctx.attempt < 2:
        raise RuntimeError("soak: fails once")
    return {"attempt": ctx.attempt}


def _flows() -> list[tuple[str, Flow, str]]:
    agent = AgentSpec(FAKE)
    return [
        ("completed", Flow("talk", [Step("a", run=_talk), Step("b", run=_talk, after=["a"])]), "durable"),
        ("agent-completed", Flow("agent", [Step("a", agent=agent, prompt="hello soak")]), "durable"),
        ("failed", Flow("boom", [Step("a", run=_talk), Step("b", run=_boom, after=["a"])]), "memory"),
        ("agent-failed", Flow("crash", [Step("a", agent=agent, prompt="go [[crash]]")]), "durable"),
        ("abandoned-rule", Flow("rule", [Step("a", run=_talk, exits=[
            ExitRule("stop", when="outputs.ok", action="abandon")])]), "durable"),
        ("abandoned-agent", Flow("slow", [Step("a", agent=agent, prompt="go [[slow]]")]), "durable"),
        ("cancelled", Flow("slow", [Step("a", agent=agent, prompt="go [[slow]]")]), "memory"),
        ("timeout", Flow("hang", [Step("a", run=_hang)], timeout=0.05), "memory"),
        ("resumed", Flow("escalate", [Step("a", run=_talk, exits=[
            ExitRule("ask", action="escalate")]), Step("b", run=_talk, after=["a"])]), "durable"),
        ("retried", Flow("flaky", [Step("a", run=_flaky, on_error=OnError("retry", backoff=0.01))]),
         "durable"),
    ]


async def _first(job: Any, kind: type) -> None:
    async for event in job.events():
        if isinstance(event, kind):
            return


async def drive(rt: Any, kind: str, flow: Flow, record: str, states: Counter[str]) -> None:
    """Spawn one job of the mix and take it down its path."""
    job = await rt.spawn(flow, record=record)
    if kind == "abandoned-agent":
        await _first(job, StepStream)
        result = await job.abandon("soak")
    elif kind == "cancelled":
        await _first(job, StepStream)
        result = await job.cancel("soak")
    elif kind == "resumed":
        await _first(job, JobPaused)
        await job.resume({"ok": True})
        result = await job.wait()
    else:
        result = await job.wait()
    states[f"{result.state.value}" + (f"/{result.reason}" if result.reason else "")] += 1


async def shutdown_round(states: Counter[str]) -> None:
    """A second runtime closed with jobs still running: they end CANCELLED/shutdown."""
    async with open_runtime(term_grace=0.5) as rt:
        jobs = [await rt.spawn(Flow("hang", [Step("a", run=_hang)])),
                await rt.spawn(Flow("slow", [Step("a", agent=AgentSpec(FAKE), prompt="go [[slow]]")]))]
        await _first(jobs[1], StepStream)
    for job in jobs:
        result = job.result
        states[f"{result.state.value}/{result.reason}"] += 1


# -- sampling ----------------------------------------------------------------------------------------


def sample() -> dict[str, float]:
    proc = psutil.Process()
    live = 0
    for child in proc.children(recursive=True):
        try:
            live += child.status() != psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            pass
    return {
        "rss_mb": proc.memory_info().rss / 2**20,
        "fds": proc.num_fds(),
        "threads": proc.num_threads(),
        "processes": live,
        "tasks": trio.lowlevel.current_statistics().tasks_living,
    }


def slope_per_minute(ts: list[float], ys: list[float]) -> float:
    """Least-squares slope of ``ys`` over ``ts`` (seconds), per minute."""
    if len(ts) < 2:
        return 0.0
    mt, my = statistics.fmean(ts), statistics.fmean(ys)
    den = sum((t - mt) ** 2 for t in ts)
    return 0.0 if den == 0 else 60 * sum((t - mt) * (y - my) for t, y in zip(ts, ys, strict=True)) / den


SERIES = (("rss_mb", "RSS", "MB/min"), ("fds", "open fds", "fds/min"), ("threads", "threads", "threads/min"),
          ("processes", "live child processes", "procs/min"), ("tasks", "trio tasks", "tasks/min"))


def _trace_report(first: Any, last: Any, top: int = 15) -> None:
    """Print the allocation sites that grew most between two tracemalloc snapshots (stderr)."""
    print("soak: tracemalloc growth between the end of the warm-up and the end:", file=sys.stderr)
    for stat in last.compare_to(first, "lineno")[:top]:
        print(f"  {stat}", file=sys.stderr)


async def soak(seconds: float, interval: float,
               trace: bool = False) -> tuple[list[dict[str, Any]], Counter[str], int]:
    states: Counter[str] = Counter()
    samples: list[tuple[float, dict[str, float]]] = []
    mix = _flows()
    spawned = 0
    with tempfile.TemporaryDirectory() as tmp:
        async with open_runtime(store=Path(tmp) / "soak.db", max_results=100, term_grace=0.5) as rt:
            before = sample()  # the runtime open, nothing started yet
            t0 = time.monotonic()

            snapshots: list[Any] = []

            async def sampler() -> None:
                while True:
                    now = time.monotonic() - t0
                    samples.append((now, sample()))
                    if trace and not snapshots and now >= _warm_up(seconds):
                        snapshots.append(tracemalloc.take_snapshot())
                    await trio.sleep(1.0)

            async with trio.open_nursery() as outer:
                outer.start_soon(sampler)
                async with trio.open_nursery() as jobs:
                    deadline = trio.current_time() + seconds
                    i = 0
                    while trio.current_time() < deadline:
                        if i % 20 == 19:
                            jobs.start_soon(shutdown_round, states)
                        else:
                            kind, flow, record = mix[i % len(mix)]
                            jobs.start_soon(drive, rt, kind, flow, record, states)
                        spawned += 1
                        i += 1
                        await trio.sleep(interval)
                outer.cancel_scope.cancel()
            end = sample()  # every job ended, the runtime still open
            if trace and snapshots:
                _trace_report(snapshots[0], tracemalloc.take_snapshot())
    rows = _slopes(samples, seconds)
    rows.append(row("soak: live child processes once every job ended", (end["processes"],) * 3,
                    "processes", note="expected 0"))
    rows.append(row("soak: trio tasks once every job ended", (end["tasks"],) * 3, "tasks",
                    (before["tasks"],) * 3, "trio tasks before the first job"))
    rows.append(row("soak: open fds once every job ended", (end["fds"],) * 3, "fds",
                    (before["fds"],) * 3, "open fds before the first job"))
    return rows, states, spawned


def _warm_up(seconds: float) -> float:
    return min(max(seconds / 4, 15.0), seconds / 2)


def _slopes(samples: list[tuple[float, dict[str, float]]], seconds: float) -> list[dict[str, Any]]:
    warm = _warm_up(seconds)
    window = [(t, s) for t, s in samples if t >= warm] or samples
    ts = [t for t, _ in window]
    rows = []
    for key, label, unit in SERIES:
        ys = [s[key] for _, s in window]
        overall = slope_per_minute(ts, ys)
        size = max(2, len(window) // SEGMENTS)
        segs = [slope_per_minute(ts[i:i + size], ys[i:i + size]) for i in range(0, len(window) - 1, size)
                if len(ts[i:i + size]) >= 2][:SEGMENTS] or [overall]
        r = row(f"soak: slope of {label} ({fmt(ys[0])} -> {fmt(ys[-1])} over {ts[-1] - ts[0]:.0f} s)",
                (overall, min(segs), max(segs)), unit, note="expected ~0; min..max = segment slopes",
                repeats=len(segs))
        rows.append(r)
    return rows


def main() -> None:
    def add(p):
        p.add_argument("--minutes", type=float, default=None, help="how long to soak (default 2)")
        p.add_argument("--interval", type=float, default=0.2, help="seconds between spawns")
        p.add_argument("--tracemalloc", action="store_true",
                       help="trace allocations from the start; print the sites that grew after the "
                            "warm-up (stderr).  Slows everything down: for diagnosis, not figures")

    args = options(__doc__, add)
    quiet_logs()
    minutes = args.minutes if args.minutes is not None else (0.03 if args.quick else 2.0)
    if args.tracemalloc:
        tracemalloc.start(5)
    rows, states, spawned = trio.run(soak, minutes * 60, args.interval, args.tracemalloc)
    mix = ", ".join(f"{n} {k}" for k, n in sorted(states.items()))
    rows.append(row(f"soak: jobs finished in {minutes:g} min", (sum(states.values()),) * 3, "jobs",
                    note=f"{spawned} spawned (a shutdown round is 2 jobs); {mix}"))
    emit(rows, args.json)


if __name__ == "__main__":
    main()
