"""Steps, flows and checks shared by the tests in tests/core/: small step functions for the job
kernel, and the fake ACP agent's command lines with process-table checks for agent steps."""

from __future__ import annotations

import sys
from pathlib import Path

import psutil
import trio
import trio.lowlevel

from actors.stream import Delta
from runtime import AgentSpec, Flow, Step, StepStream, open_runtime
from runtime.testing import assert_no_leaks, job_tasks, marked_processes

TESTS = Path(__file__).resolve().parents[1]  # tests/: sdk_agent.py, resume_steps.py

# -- step functions -------------------------------------------------------------------------------


async def ok(ctx, inputs):
    await trio.lowlevel.checkpoint()
    return {"ok": True, **inputs}


async def echo(ctx, inputs):
    await trio.lowlevel.checkpoint()
    return dict(inputs)


async def boom(ctx, inputs):
    await trio.sleep(1)
    raise ValueError("boom")


async def forever(ctx, inputs):
    await trio.sleep_forever()


async def slow(ctx, inputs):
    await trio.sleep(10)
    return {"slow": True}


def assert_gone(rt, job_id):
    assert_no_leaks(rt)
    assert job_tasks({job_id}) == []


async def run_to_end(flow, inputs=None, **kw):
    async with open_runtime(**kw) as rt:
        job = await rt.spawn(flow, inputs or {})
        result = await job.wait()
        assert_gone(rt, job.id)
        return rt, job, result


# -- agent steps ----------------------------------------------------------------------------------

PY = sys.executable
FAKE = [PY, "-m", "actors.fake_agent", "--delay", "0.001"]
WRAPPED = [*FAKE, "--wrap", "2"]  # like npm exec -> node adapter -> agent CLI
SDK_AGENT = [PY, str(TESTS / "sdk_agent.py")]
BOUND = 30  # seconds: nothing here may hang


def pids_of(rt) -> set[int]:
    return {p.pid for p in marked_processes(rt)}


def assert_all_gone(pids: set[int]) -> None:
    alive = []
    for pid in pids:
        try:
            proc = psutil.Process(pid)
            alive.append((pid, proc.status(), proc.cmdline()[-3:]))
        except psutil.NoSuchProcess:
            pass
    assert alive == [], f"processes survived their job: {alive}"


class TreeSpy:
    """A callable exit-rule condition that snapshots the job's process tree when it runs."""

    def __init__(self, rt, result: bool) -> None:
        self.rt = rt
        self.result = result
        self.pids: set[int] = set()

    def __call__(self, outputs) -> bool:
        self.pids = pids_of(self.rt)
        return self.result


async def slow_job(rt, flow_kw=None, step_kw=None, argv=None):
    spec = AgentSpec(argv or [*WRAPPED, "--slow", "--grandchild"])
    return await rt.spawn(
        Flow(
            "slow", [Step("agent", agent=spec, prompt="work", **(step_kw or {}))], **(flow_kw or {})
        )
    )


async def until_streaming(job) -> None:
    """Return once ``job`` publishes its first streamed Delta: an agent is mid-prompt."""
    events = job.events()
    try:
        async for event in events:
            if isinstance(event, StepStream) and isinstance(event.update, Delta):
                return
        raise AssertionError(f"job {job.id} ended without streaming: {job.result}")
    finally:
        await events.aclose()


async def tree_once_streaming(rt, job, n: int) -> set[int]:
    """The pids of ``rt``'s processes once ``job``'s agent streams, at least ``n`` of them.

    The fake agent starts its children, and lets them set their signal disposition and leave the
    session, before it answers anything; so by the first chunk it streams the whole tree exists.
    Call it right after spawn (before any checkpoint) so that no event is missed.
    """
    await until_streaming(job)
    pids = pids_of(rt)
    assert len(pids) >= n and rt.stats().processes >= n, (pids, rt.stats())
    return pids
