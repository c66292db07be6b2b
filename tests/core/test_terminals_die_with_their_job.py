"""An agent's terminals (``AgentSpec(terminals=True)``) die with their job on every terminal path --
complete, cancel, abandon by an exit rule, step timeout -- and when the runtime is SIGKILLed, even a
terminal whose processes ignore SIGTERM and leave its group (``setsid sleep``, ``setsid sh -c``,
``env -i setsid`` with no marker).  While the terminal runs, ``rt.stats()`` counts its group and
processes; after, nothing.

The agent is tests/agents/sdk_agent.mjs (official ACP SDK); the terminal's command writes every
pid it starts to a file in the job's workspace before it says "ready", so the test knows them
without looking for names.  A failed test kills only those pids.
"""

from __future__ import annotations

import os
import shutil
import signal
import sys
import textwrap
from pathlib import Path

import psutil
import pytest
import trio
from child_runtime import child_runtime, sigkill

from actors.process import find_marked
from runtime import AgentSpec, ExitRule, Flow, JobState, Step, StepStream, open_runtime
from runtime.testing import assert_no_leaks, wait_exited

ROOT = Path(__file__).resolve().parents[2]
AGENT = ROOT / "tests" / "agents" / "sdk_agent.mjs"
BOUND = 60
PIDS = 6
GATES: dict[str, trio.Event] = {}

# Every process ignores SIGTERM; four leave the group (one with no marker at all), two stay in it.
ESCAPING = (
    "trap '' TERM; "
    "setsid sleep 1000 & echo $! >> pids; "
    "env -i setsid sleep 1000 & echo $! >> pids; "
    "setsid sh -c 'echo $$ >> pids; sleep 1000 & echo $! >> pids; wait' & "
    "sleep 1000 & echo $! >> pids; "
    "echo $$ >> pids; "
    f"while [ $(wc -l < pids) -lt {PIDS} ]; do sleep 0.01; done; echo ready; wait"
)


def spec() -> AgentSpec:
    if not (ROOT / "tests" / "agents" / "node_modules" / "@agentclientprotocol" / "sdk").exists():
        pytest.fail("@agentclientprotocol/sdk is missing: run `npm ci --prefix tests/agents` first")
    return AgentSpec([shutil.which("node") or "node", str(AGENT)], terminals=True)


async def gate(ctx, inputs):
    """Hold until the test opens this job's gate."""
    await GATES[inputs["gate"]].wait()
    return {}


async def forever(ctx, inputs):
    await trio.sleep_forever()


def flow(path: str) -> Flow:
    if path == "complete":  # the turn ends, its terminal never released by the agent
        return Flow("terms", [Step("t", agent=spec(), prompt=f"[[termready:{ESCAPING}]]")])
    steps = [Step("t", agent=spec(), prompt=f"[[termhang:{ESCAPING}]]")]
    if path == "abandon":
        steps.append(Step("g", run=gate, inputs={"gate": path}, exits=[ExitRule("stop", action="abandon")]))
    if path == "step_timeout":
        steps += [Step("g", run=gate, inputs={"gate": path}),
                  Step("late", run=forever, after=["g"], timeout=0.2)]
    return Flow("terms", steps)


async def until_ready(job) -> None:
    """Until the agent said its terminal is ready (every pid written)."""
    text = ""
    async for event in job.events():
        if isinstance(event, StepStream) and type(event.update).__name__ == "Delta":
            text += event.update.delta.text
            if "term-ready:" in text:
                return
    raise AssertionError(f"job {job.id} ended before its terminal was ready: {job.result}")


def read_pids(workspace: Path) -> list[int]:
    pids = [int(line) for line in (workspace / "pids").read_text().split()]
    assert len(set(pids)) == PIDS, pids
    return pids


def running(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def kill_if_running(pids: list[int]) -> None:
    """Clean-up of a failed test: the pids its terminal wrote, nothing else."""
    for pid in pids:
        if running(pid) and psutil.Process(pid).name() in ("sleep", "sh"):
            os.kill(pid, signal.SIGKILL)


@pytest.mark.parametrize("path", ["complete", "cancel", "abandon", "step_timeout"])
async def test_a_terminal_that_ignores_sigterm_and_leaves_its_group_dies_with_its_job(tmp_path, path):
    pids: list[int] = []
    GATES[path] = trio.Event()
    try:
        async with open_runtime(term_grace=0.5, workspace=tmp_path / "ws") as rt:
            with trio.fail_after(BOUND):
                job = await rt.spawn(flow(path), job_id=f"job-{path}")
                await until_ready(job)
                pids = read_pids(tmp_path / "ws" / job.id)
                if path != "complete":  # the terminal runs: its group and processes are counted
                    stats = rt.stats()
                    assert stats.process_groups == 2, stats  # the agent's and the terminal's
                    marked = {p.pid for p in find_marked(lambda m: m.job_id == job.id)}
                    assert len(set(pids) - marked) == 1  # `env -i` left no marker: the keeper holds it
                    assert stats.processes >= len(marked) >= PIDS - 1 + 3, stats  # + the keepers, node
                if path == "cancel":
                    await job.cancel("test")
                elif path in ("abandon", "step_timeout"):
                    GATES[path].set()
                result = await job.wait()
                expected = {"complete": (JobState.COMPLETED, None), "cancel": (JobState.CANCELLED, "test"),
                            "abandon": (JobState.ABANDONED, "stop"),
                            "step_timeout": (JobState.FAILED, "step_failed:late")}[path]
                assert (result.state, result.reason) == expected, result
                await wait_exited(pids)
            assert [pid for pid in pids if running(pid)] == []
            assert rt.stats().process_groups == 0 and rt.stats().processes == 0
            assert find_marked(lambda m: m.job_id == job.id) == []
            assert_no_leaks(rt)
    finally:
        GATES.clear()
        kill_if_running(pids)


RUNTIME_CHILD = textwrap.dedent("""
    import json, sys, trio
    from pathlib import Path
    sys.path[:0] = [{tests!r}]
    from test_terminals_die_with_their_job import flow, read_pids, until_ready
    from actors.process import find_marked
    from runtime import open_runtime

    async def main(root):
        async with open_runtime(term_grace=0.5, workspace=root) as rt:
            job = await rt.spawn(flow("cancel"))
            await until_ready(job)
            marked = [p.pid for p in find_marked(lambda m: m.runtime_id == rt.id)]
            print(json.dumps({{"runtime": rt.id, "pids": read_pids(root / job.id), "marked": marked}}), flush=True)
            await trio.sleep_forever()

    trio.run(main, Path(sys.argv[1]))
""")


async def test_a_terminal_dies_when_the_runtime_is_sigkilled(tmp_path):
    code = RUNTIME_CHILD.format(tests=str(Path(__file__).resolve().parent))
    pids: list[int] = []
    try:
        with trio.fail_after(BOUND):
            async with child_runtime([sys.executable, "-c", code, str(tmp_path / "ws")]) as (proc, info):
                pids = info["pids"]
                assert all(running(pid) for pid in pids)
                await sigkill(proc)  # no teardown at all: the keepers' lifelines see EOF
            await wait_exited([*pids, *info["marked"]])  # the terminal's, the agent's, the keepers
        assert [pid for pid in pids if running(pid)] == []
        assert find_marked(lambda m: m.runtime_id == info["runtime"]) == []
    finally:
        kill_if_running(pids)
