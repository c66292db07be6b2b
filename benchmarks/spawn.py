"""Spawn cost: µs per job for a 1-step and a 2-step no-op flow, one at a time and 10_000
concurrent, next to the floor of a bare trio nursery per job running one task per step.

    python benchmarks/spawn.py [--json] [--concurrent N]
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import trio

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _common import emit, repeat, row  # noqa: E402

from runtime import Flow, Step, open_runtime  # noqa: E402

SEQUENTIAL = 2_000
CONCURRENT = int(sys.argv[sys.argv.index("--concurrent") + 1]) if "--concurrent" in sys.argv else 10_000


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


def per_job_us(fn, steps: int, n: int):
    return lambda: timed(fn, steps, n) / n * 1e6


def main() -> None:
    rows = []
    for steps in (1, 2):
        for label, n, corral, floor in (
            ("1 at a time", SEQUENTIAL, corral_sequential, floor_sequential),
            (f"{CONCURRENT} concurrent", CONCURRENT, corral_concurrent, floor_concurrent),
        ):
            base = repeat(per_job_us(floor, steps, n))
            value = repeat(per_job_us(corral, steps, n))
            rows.append(row(f"spawn+wait {steps}-step no-op flow, {label}", value, "µs/job",
                            base, "bare nursery + task per step"))
    emit(rows)


if __name__ == "__main__":
    main()
