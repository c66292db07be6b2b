"""Spawn cost: µs per job for a 1-step and a 2-step no-op flow, one at a time and N concurrent,
next to the floor of a bare trio nursery per job running one task per step (in order, like the DAG);
and the scheduler wakeups per second while N jobs sit PAUSED (expected 0; floor: N parked tasks).

    python benchmarks/spawn.py [--json] [--quick] [--repeats N] [--concurrent N] [--sequential N]
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import trio
import trio.testing

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _common import emit, idle_wakeups_per_s, options, quiet_logs, repeat, row, summary

from runtime import ExitRule, Flow, JobState, Step, open_runtime

FLOOR = "bare nursery + task per step"


async def noop(ctx, inputs):
    return None


async def bare_step() -> None:
    await trio.lowlevel.checkpoint()


def flow_of(steps: int) -> Flow:
    return Flow(f"noop{steps}", [Step(f"s{i}", run=noop, after=[f"s{i - 1}"] if i else []) for i in range(steps)])


async def bare_job(steps: int) -> None:
    # the floor: one nursery per job, one child task per step (run in order, like the DAG)
    for _ in range(steps):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(bare_step)


def timed(fn, *args) -> float:
    t0 = time.perf_counter()
    trio.run(fn, *args)
    return time.perf_counter() - t0


async def floor_sequential(steps: int, n: int) -> None:
    for _ in range(n):
        await bare_job(steps)


async def floor_concurrent(steps: int, n: int) -> None:
    async with trio.open_nursery() as nursery:
        for _ in range(n):
            nursery.start_soon(bare_job, steps)


async def corral_sequential(steps: int, n: int) -> None:
    flow = flow_of(steps)
    async with open_runtime() as rt:
        for _ in range(n):
            job = await rt.spawn(flow)
            await job.wait()


async def corral_concurrent(steps: int, n: int) -> None:
    flow = flow_of(steps)
    async with open_runtime(max_results=n) as rt:
        jobs = [await rt.spawn(flow) for _ in range(n)]
        for job in jobs:
            await job.wait()


async def paused_wakeups(n: int, repeats: int, window: float) -> list[float]:
    """Wakeups/s while ``n`` jobs are PAUSED (escalated), waiting for ``resume``."""
    flow = Flow("ask", [Step("a", run=noop, exits=[ExitRule("ask", action="escalate")]),
                        Step("b", run=noop, after=["a"])])
    async with open_runtime() as rt:
        jobs = [await rt.spawn(flow) for _ in range(n)]
        await trio.testing.wait_all_tasks_blocked()
        paused = sum(job.state is JobState.PAUSED for job in jobs)
        if paused != n:
            raise RuntimeError(f"expected {n} paused jobs, got {paused}")
        rates = await idle_wakeups_per_s(repeats, window)
        for job in jobs:
            await job.resume()
        for job in jobs:
            await job.wait()
    return rates


async def parked_wakeups(n: int, repeats: int, window: float) -> list[float]:
    async with trio.open_nursery() as nursery:
        for _ in range(n):
            nursery.start_soon(trio.sleep_forever)
        await trio.testing.wait_all_tasks_blocked()
        rates = await idle_wakeups_per_s(repeats, window)
        nursery.cancel_scope.cancel()
    return rates


def per_job_us(fn, steps: int, n: int):
    return lambda: timed(fn, steps, n) / n * 1e6


def main() -> None:
    def add(p):
        p.add_argument("--concurrent", type=int, default=None, help="concurrent jobs (default 10000)")
        p.add_argument("--sequential", type=int, default=None, help="jobs one at a time (default 2000)")

    args = options(__doc__, add)
    quiet_logs()
    concurrent = args.concurrent or (200 if args.quick else 10_000)
    sequential = args.sequential or (100 if args.quick else 2_000)
    rows = []
    for steps in (1, 2):
        for label, n, corral, floor in (
            ("1 at a time", sequential, corral_sequential, floor_sequential),
            (f"{concurrent} concurrent", concurrent, corral_concurrent, floor_concurrent),
        ):
            base = repeat(per_job_us(floor, steps, n), args.repeats)
            value = repeat(per_job_us(corral, steps, n), args.repeats)
            rows.append(row(f"spawn+wait {steps}-step no-op flow, {label}", value, "µs/job",
                            base, FLOOR, repeats=args.repeats))
    idle_n = 100 if args.quick else 1_000
    window = 0.05 if args.quick else 0.2
    idle = trio.run(paused_wakeups, idle_n, args.repeats, window)
    idle_floor = trio.run(parked_wakeups, idle_n, args.repeats, window)
    rows.append(row(f"scheduler wakeups/s while {idle_n} jobs are paused (escalate)", summary(idle),
                    "wakeups/s", summary(idle_floor), f"{idle_n} bare tasks parked", repeats=args.repeats,
                    note="expected 0"))
    emit(rows, args.json)


if __name__ == "__main__":
    main()
