"""Steps, flows and checks shared by the tests in tests/core/: small step functions for the job
kernel, and the fake ACP agent's command lines with process-table checks for agent steps."""

from __future__ import annotations

import sys
from pathlib import Path

import psutil
import trio
import trio.lowlevel

from runtime import AgentSpec, Flow, Step, open_runtime
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


async def wait_for_tree(rt, n: int) -> set[int]:
    while len(pids := pids_of(rt)) < n or rt.stats().processes < n:
        await trio.sleep(0.05)
    return pids
