"""``corral demo``: N jobs of a triage -> fix -> review flow through every terminal path, then a
report read from the runtime, trio's statistics and the OS process table."""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

import click
import trio

from .flow import ExitRule, Flow, OnError, Step
from .runtime import open_runtime
from .testing import WakeupCounter, job_tasks, marked_processes


async def _triage(ctx: Any, inputs: dict[str, Any]) -> dict[str, Any]:
    await trio.sleep(0.01)
    ticket = inputs["ticket"]
    return {"severity": ticket % 7, "summary": f"ticket {ticket}"}


async def _fix(ctx: Any, inputs: dict[str, Any]) -> dict[str, Any]:
    if inputs["ticket"] % 5 == 0 and ctx.attempt == 1:
        raise ConnectionError("flaky tool")
    await trio.sleep(0.02 if inputs["ticket"] % 9 else 10)
    return {"patch": f"fix for {inputs['summary']}"}


async def _review(ctx: Any, inputs: dict[str, Any]) -> dict[str, Any]:
    await trio.sleep(0.01)
    return {"approved": True}


def demo_flow() -> Flow:
    return Flow("triage-fix-review", [
        Step("triage", run=_triage, inputs={"ticket": "$job.ticket"},
             exits=[ExitRule("wontfix", when="outputs.severity == 0", action="abandon")]),
        Step("fix", run=_fix, inputs={"ticket": "$job.ticket", "summary": "triage.summary"},
             on_error=OnError("retry", max_attempts=3, backoff=0.01)),
        Step("review", run=_review, inputs={"patch": "fix.patch"}),
    ])


async def run_demo(n_jobs: int, store: str) -> bool:
    flow = demo_flow()
    t0 = time.perf_counter()
    async with open_runtime() as rt:
        jobs = [await rt.spawn(flow, {"ticket": i}) for i in range(n_jobs)]
        await trio.sleep(0.2)
        for job in jobs:
            if job.flow and job.state.value == "running" and jobs.index(job) % 9 == 0:
                await job.cancel("demo: cancelled mid-run")
        results = [await j.wait() for j in jobs]
        elapsed = time.perf_counter() - t0
        stats = rt.stats()
        counter = WakeupCounter(lambda task: True)
        trio.lowlevel.add_instrument(counter)
        await trio.sleep(1.0)
        trio.lowlevel.remove_instrument(counter)
        leftovers = {
            "processes alive after": len(marked_processes(rt)),
            "runtime tasks alive after": stats.tasks + len(job_tasks()),
            "open streams after": stats.streams,
            "recorders after": stats.recorders,
            "wakeups/s while idle": counter.count - 1,  # the sleeping demo task itself wakes once
        }
    by_state = Counter(r.state.value for r in results)
    click.echo(f"jobs by final state: {dict(sorted(by_state.items()))}")
    for name, value in leftovers.items():
        click.echo(f"{name}: {value}")
    click.echo(f"throughput: {n_jobs / elapsed:.0f} jobs/s")
    return all(v == 0 for v in leftovers.values())
