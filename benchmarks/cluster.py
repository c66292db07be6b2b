"""Cluster runtime on a local Ray with 2 hosts: jobs/s for a 1-step no-op flow and the controller's
round-trip per event, next to the floor of one plain Ray task per job, and the embedded runtime's
figure for the same flow.

    python benchmarks/cluster.py [--json] [--quick] [--repeats N] [--jobs N]
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import trio

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _common import emit, options, quiet_logs, row, summary

from runtime import Flow, Step, open_runtime
from runtime.cluster import RayCluster, open_cluster_runtime
from runtime.cluster.steps import noop

FLOOR = "one Ray task per job"


def flow() -> Flow:
    return Flow("noop1", [Step("s0", run=noop)])


async def batch(rt, n: int) -> float:
    t0 = time.perf_counter()
    handles = [await rt.spawn(flow()) for _ in range(n)]
    for h in handles:
        await h.wait()
    return n / (time.perf_counter() - t0)


async def per_event(rt) -> float:
    t0 = time.perf_counter()
    h = await rt.spawn(flow())
    await h.wait()
    elapsed = time.perf_counter() - t0
    events = [e async for e in h.events(replay=True)]
    return elapsed / len(events) * 1e6


def ray_floor(ray, n: int) -> float:
    @ray.remote(num_cpus=0)
    def job() -> dict:
        return {"s0": {"ok": True}}

    ray.get([job.remote() for _ in range(n)])  # warm: workers started
    t0 = time.perf_counter()
    ray.get([job.remote() for _ in range(n)])
    return n / (time.perf_counter() - t0)


async def main(args) -> list[dict]:
    import ray

    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    ray.init(include_dashboard=False, log_to_driver=False, logging_level="warning")
    try:
        floor = summary(ray_floor(ray, args.jobs) for _ in range(args.repeats))
        async with open_cluster_runtime(RayCluster(hosts=2, jobs_per_host=args.jobs)) as rt:
            await batch(rt, 4)  # warm
            rates = summary([await batch(rt, args.jobs) for _ in range(args.repeats)])
            rtt = summary([await per_event(rt) for _ in range(args.repeats * 4)])
    finally:
        ray.shutdown()
    async with open_runtime() as rt:
        embedded = summary([await batch(rt, args.jobs) for _ in range(args.repeats)])
    return [
        row(f"cluster: {args.jobs} concurrent 1-step no-op jobs, 2 hosts", rates, "jobs/s", floor, FLOOR,
            better="higher", repeats=args.repeats),
        row("cluster: controller round-trip per event (sequential job / its events)", rtt, "µs/event",
            repeats=args.repeats * 4),
        row(f"embedded runtime: {args.jobs} concurrent 1-step no-op jobs", embedded, "jobs/s",
            floor, FLOOR, better="higher", repeats=args.repeats),
    ]


if __name__ == "__main__":
    args = options(__doc__, lambda p: p.add_argument("--jobs", type=int, default=None))
    if args.jobs is None:
        args.jobs = 20 if args.quick else 100
    quiet_logs()
    emit(trio.run(main, args), args.json)
