"""REAL-ADAPTER TESTS: the whole tree of the pinned claude-agent-acp started as users start it --
``npm exec`` -> node adapter -> the claude CLI -- is gone on every terminal path of its job and
after a SIGKILL of the runtime (offline, no credentials: each prompt fails "Authentication
required", which the flow tolerates with ``on_error: continue``; a pending agent step with the same
spec keeps the adapter up while a python step holds the job).

They need ``npm ci --prefix tests/agents`` (CI runs it); without it they FAIL saying so.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import psutil
import pytest
import trio
from test_real_acp_adapters import AGENTS, BIN, offline_home

from actors.process import find_marked
from runtime import AgentSpec, Flow, JobState, OnError, Step, StepFailed, open_runtime
from runtime.testing import assert_no_leaks, wait_exited

BOUND = 120
ROOT = Path(__file__).resolve().parents[2]
GATES: dict[str, trio.Event] = {}


def npm_exec_claude(tmp_path: Path) -> AgentSpec:
    if not (BIN / "claude-agent-acp").exists():
        pytest.fail("claude-agent-acp is missing: run `npm ci --prefix tests/agents` first")
    return AgentSpec(["npm", "exec", "--offline", "--prefix", str(AGENTS), "--", "claude-agent-acp"],
                     env=offline_home(tmp_path))


async def hold(ctx, inputs):
    """Hold the job until the test opens the gate (forever when there is none)."""
    gate = GATES.get(inputs["gate"])
    if gate is None:
        await trio.sleep_forever()
    await gate.wait()
    return {}


def held_flow(spec: AgentSpec, gate: str, hold_timeout: float | None = None) -> Flow:
    tolerate = OnError("continue")
    return Flow("claude-tree", [
        Step("a", agent=spec, prompt="hello", on_error=tolerate),
        Step("hold", run=hold, inputs={"gate": gate}, timeout=hold_timeout),
        Step("b", agent=spec, prompt="again", after=["a", "hold"], on_error=tolerate),
    ])


def tree_of(job_id: str) -> list[psutil.Process]:
    procs = find_marked(lambda m: m.job_id == job_id)
    names = " ".join(" ".join(p.cmdline()) for p in procs)
    assert "npm exec" in names and "claude-agent-acp" in names and len(procs) >= 4, names
    return procs


async def until_a_failed(job) -> None:
    """Until step a's prompt has failed (the tree is up and idle) -- or the job has ended."""
    async for event in job.events():
        if isinstance(event, StepFailed) and event.step == "a":
            return


def _ended(procs: list[psutil.Process]) -> list[psutil.Process]:
    alive = []
    for p in procs:
        try:
            if p.is_running() and p.status() != psutil.STATUS_ZOMBIE:
                alive.append(p)
        except psutil.NoSuchProcess:
            pass
    return alive


PATHS = ["complete", "cancel", "abandon", "step_timeout"]


@pytest.mark.parametrize("path", PATHS)
async def test_the_npm_exec_claude_tree_is_gone_on_each_terminal_path(tmp_path, path):
    spec = npm_exec_claude(tmp_path)
    GATES[path] = trio.Event()
    try:
        async with open_runtime(term_grace=1.0, workspace=tmp_path / "ws") as rt:
            with trio.fail_after(BOUND):
                flow = held_flow(spec, path, hold_timeout=8.0 if path == "step_timeout" else None)
                job = await rt.spawn(flow)
                await until_a_failed(job)
                procs = tree_of(job.id) if job.result is None else []
                if path == "complete":
                    GATES[path].set()  # b's prompt fails too, tolerated: the job completes
                elif path == "cancel":
                    await job.cancel("test")
                elif path == "abandon":
                    await job.abandon("test")
                result = await job.wait()
                expected = {"complete": (JobState.COMPLETED, None), "cancel": (JobState.CANCELLED, "test"),
                            "abandon": (JobState.ABANDONED, "test"),
                            "step_timeout": (JobState.FAILED, "step_failed:hold")}[path]
                assert (result.state, result.reason) == expected, result
                if path == "complete":
                    assert "Authentication required" in result.outputs["b"]["error"]
            assert _ended(procs) == [], f"outlived their job: {[p.cmdline() for p in _ended(procs)]}"
            assert find_marked(lambda m: m.job_id == job.id) == []
            assert_no_leaks(rt)
    finally:
        GATES.clear()


WORKER = """
import json, sys, trio
sys.path[:0] = [{tests!r}]
from test_the_real_claude_tree_dies_on_every_terminal_path import held_flow, until_a_failed
from runtime import AgentSpec, open_runtime
from actors.process import find_marked

async def main():
    spec = AgentSpec(json.loads(sys.argv[1]), env=json.loads(sys.argv[2]))
    async with open_runtime(term_grace=1.0, workspace=sys.argv[3]) as rt:
        job = await rt.spawn(held_flow(spec, "none"))
        await until_a_failed(job)
        print(json.dumps([p.pid for p in find_marked(lambda m: m.job_id == job.id)]), flush=True)
        await trio.sleep_forever()

trio.run(main)
"""


async def test_the_npm_exec_claude_tree_is_gone_after_a_sigkill_of_the_runtime(tmp_path):
    spec = npm_exec_claude(tmp_path)
    code = WORKER.format(tests=str(Path(__file__).resolve().parent))
    with trio.fail_after(BOUND):
        worker = await trio.lowlevel.open_process(
            [sys.executable, "-c", code, json.dumps(list(spec.command)), json.dumps(dict(spec.env)),
             str(tmp_path / "ws")], cwd=ROOT, stdout=subprocess.PIPE, env={**os.environ, "PYTHONPATH": str(ROOT)})
        try:
            line = b""
            while not line.endswith(b"\n"):
                data = await worker.stdout.receive_some()
                assert data, "the worker ended before its claude tree was up"
                line += data
            procs = [psutil.Process(pid) for pid in json.loads(line)]
            names = " ".join(" ".join(p.cmdline()) for p in procs)
            assert "npm exec" in names and "claude-agent-acp" in names and len(procs) >= 4, names
            worker.send_signal(signal.SIGKILL)  # no cleanup at all: the keepers' lifelines see EOF
            await worker.wait()
            await wait_exited(p.pid for p in procs)
        finally:
            worker.kill()
            await worker.wait()
    assert _ended(procs) == []
