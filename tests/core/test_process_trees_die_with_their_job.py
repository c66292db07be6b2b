"""Agent and process steps: their process trees belong to the job and die with it on every path --
the abandoned job of the original leak, every terminal path, processes that ignore SIGTERM or
leave the group, a runtime that is SIGKILLed, and 300 jobs of churn.

Real subprocesses (the bundled fake ACP agent), the OS process table through psutil, a real clock
bounded by trio.fail_after."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import textwrap

import psutil
import pytest
import trio
from core_support import (
    BOUND,
    FAKE,
    PY,
    WRAPPED,
    TreeSpy,
    assert_all_gone,
    slow_job,
    tree_once_streaming,
)

from actors.process import find_marked
from runtime import AgentSpec, ExitRule, Flow, JobState, Step, StepState, open_runtime
from runtime.testing import assert_no_leaks, marked_processes


async def never_runs(ctx, inputs):
    raise AssertionError("a step after an abandoned one must not run")


async def test_abandoned_job_leaves_no_adapter_tree():
    async with open_runtime(term_grace=0.5) as rt:
        spy = TreeSpy(rt, True)
        flow = Flow(
            "triage",
            [
                Step(
                    "triage",
                    agent=AgentSpec([*WRAPPED, "--grandchild"]),
                    prompt="triage ticket {$job.ticket}",
                    exits=[ExitRule("not_worth_it", when=spy, action="abandon")],
                ),
                Step("fix", run=never_runs, after=["triage"]),
            ],
        )
        with trio.fail_after(BOUND):
            job = await rt.spawn(flow, {"ticket": 7})
            result = await job.wait()
        assert result.state is JobState.ABANDONED and result.reason == "not_worth_it"
        assert len(spy.pids) >= 5  # keeper, 3 generations, the agent's grandchild
        assert_all_gone(spy.pids)
        assert rt.stats().processes == 0
        assert_no_leaks(rt)


@pytest.mark.parametrize(
    "path", ["cancel", "abandon", "timeout", "step_timeout", "failure", "shutdown"]
)
async def test_tree_dies_on_every_terminal_path(path):
    flow_kw, step_kw, argv = {}, {}, None
    if path == "timeout":
        flow_kw = {"timeout": 1.5}
    elif path == "step_timeout":
        step_kw = {"timeout": 1.5}
    elif path == "failure":
        argv = [*WRAPPED, "--grandchild"]
    with trio.fail_after(BOUND):
        async with open_runtime(term_grace=0.5) as rt:
            if path == "failure":
                # the agent crashes after two chunks of its second prompt: the first one's exit
                # rule snapshots the tree (shared by both steps) while it is alive
                spy, spec = TreeSpy(rt, False), AgentSpec(argv)
                job = await rt.spawn(Flow("f", [
                    Step("warm", agent=spec, prompt="hello",
                         exits=[ExitRule("look", when=spy, action="abandon")]),
                    Step("agent", agent=spec, prompt="[[crash]] go", after=["warm"]),
                ]))
            else:
                job = await slow_job(rt, flow_kw, step_kw, argv)
                pids = await tree_once_streaming(rt, job, 5)
                if path == "cancel":
                    await job.cancel()
                elif path == "abandon":
                    await job.abandon()
            if path != "shutdown":
                result = await job.wait()
                assert_no_leaks(rt)
        result = job.result
    if path == "failure":
        pids = spy.pids
        assert len(pids) >= 5  # keeper, 3 generations, the agent's grandchild
    expected = {
        "cancel": JobState.CANCELLED,
        "abandon": JobState.ABANDONED,
        "timeout": JobState.FAILED,
        "step_timeout": JobState.FAILED,
        "failure": JobState.FAILED,
        "shutdown": JobState.CANCELLED,
    }
    assert result.state is expected[path]
    if path == "failure":
        assert "exited" in result.error or "closed" in result.error
    assert pids
    assert_all_gone(pids)
    assert find_marked(lambda m: m.job_id == job.id) == []


async def test_sibling_mid_prompt_hears_cancel_then_dies(tmp_path):
    log = tmp_path / "agent.log"
    streaming = trio.Event()

    async def decide(ctx, inputs):
        await streaming.wait()  # the sibling is mid-prompt
        return {"verdict": "abandon"}

    flow = Flow(
        "branches",
        [
            Step(
                "a",
                run=decide,
                exits=[ExitRule("bail", when="outputs.verdict == 'abandon'", action="abandon")],
            ),
            Step("b", agent=AgentSpec([*WRAPPED, "--slow", "--log", str(log)]), prompt="long work"),
        ],
    )
    async with open_runtime(term_grace=0.5) as rt:
        with trio.fail_after(BOUND):
            job = await rt.spawn(flow)
            pids = await tree_once_streaming(rt, job, 4)
            assert "session/prompt" in log.read_text()  # logged before the agent answers it
            streaming.set()
            result = await job.wait()
        assert result.state is JobState.ABANDONED and result.steps["b"] is StepState.CANCELLED
        methods = [json.loads(line).get("method") for line in log.read_text().splitlines()]
        assert "session/prompt" in methods and "session/cancel" in methods
        assert methods.index("session/cancel") > methods.index("session/prompt")
        assert_all_gone(pids)
        assert_no_leaks(rt)


@pytest.mark.parametrize(
    "flags", [["--ignore-sigterm"], ["--grandchild-ignore-term"], ["--setsid-child"]]
)
async def test_resisting_processes_die(flags):
    async with open_runtime(term_grace=0.3) as rt:
        with trio.fail_after(BOUND):
            job = await slow_job(rt, argv=[*WRAPPED, "--slow", *flags])
            pids = await tree_once_streaming(rt, job, 4 if flags == ["--ignore-sigterm"] else 5)
            sessions = {os.getsid(p) for p in pids}  # the escaper left before the agent answered
            t0 = trio.current_time()
            await job.cancel()
            elapsed = trio.current_time() - t0
        assert_all_gone(pids)
        assert_no_leaks(rt)
        if flags == ["--setsid-child"]:
            assert len(sessions) == 2  # one process really had left the group's session
        assert elapsed < BOUND


RUNTIME_CHILD = textwrap.dedent("""
    import json, sys, structlog, trio
    from runtime import AgentSpec, Flow, Step, open_runtime

    structlog.configure(logger_factory=structlog.PrintLoggerFactory(sys.stderr))
    from runtime.testing import marked_processes

    async def main():
        async with open_runtime() as rt:
            spec = AgentSpec([sys.executable, "-m", "actors.fake_agent", "--wrap", "2", "--slow",
                              "--setsid-child", "--grandchild-ignore-term"])
            job = await rt.spawn(Flow("doomed", [Step("a", agent=spec, prompt="run")]))
            async for event in job.events():  # the agent streams a chunk: its whole tree is up
                if type(event).__name__ == "StepStream" and type(event.update).__name__ == "Delta":
                    break
            print(json.dumps({"runtime": rt.id, "pids": [p.pid for p in marked_processes(rt)]}), flush=True)
            await trio.sleep_forever()

    trio.run(main)
""")


async def test_runtime_sigkilled_mid_prompt_leaves_nothing():
    proc = await trio.lowlevel.open_process([PY, "-c", RUNTIME_CHILD], stdout=subprocess.PIPE)
    try:
        with trio.fail_after(BOUND):
            line = b""
            while not line.endswith(b"\n"):
                line += await proc.stdout.receive_some(4096)
        info = json.loads(line)
        assert len(info["pids"]) >= 6
        proc.send_signal(signal.SIGKILL)
        await proc.wait()
        # polled: the keepers are not our children and the runtime that held their lifelines
        # is gone, so the process table is the only thing to watch
        with trio.fail_after(5):
            while find_marked(lambda m: m.runtime_id == info["runtime"]):  # noqa: ASYNC110
                await trio.sleep(0.1)
        assert_all_gone(set(info["pids"]))
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        await proc.stdout.aclose()


async def test_python_step_open_process_is_contained():
    seen = {}
    started = trio.Event()

    async def step(ctx, inputs):
        async with ctx.open_process([PY, "-c", "import signal; signal.pause()"]) as group:
            seen["pid"] = group.pid
            started.set()
            await trio.sleep_forever()

    async with open_runtime(term_grace=0.3) as rt:
        with trio.fail_after(BOUND):
            job = await rt.spawn(Flow("p", [Step("a", run=step)]))
            await started.wait()
            seen["count"] = rt.stats().processes
            await job.cancel()
        assert seen["count"] >= 1
        assert_all_gone({seen["pid"]})
        assert_no_leaks(rt)


async def test_churn_300_jobs_returns_to_baseline():
    me = psutil.Process()
    flow = Flow(
        "churn",
        [
            Step(
                "a",
                agent=AgentSpec(FAKE),
                prompt="{$job.mode} hello",
                exits=[ExitRule("drop", when="'abandon' in outputs.text", action="abandon")],
            )
        ],
    )
    slow = Flow("churn-slow", [Step("a", agent=AgentSpec([*FAKE, "--slow"]), prompt="go")])
    async with open_runtime(max_running_jobs=8, term_grace=0.3) as rt:
        # warm up once so lazily opened fds (thread pools, /proc handles) are in the baseline
        await (await rt.spawn(flow, {"mode": "done"})).wait()
        fds, children = me.num_fds(), len(me.children(recursive=True))
        states = []
        with trio.fail_after(240):
            async with trio.open_nursery() as nursery:
                for i in range(300):
                    kind = i % 3
                    if kind == 2:
                        job = await rt.spawn(slow)

                        async def cancel_later(job, events):
                            async for event in events:  # cancel once the agent is streaming
                                if type(event).__name__ == "StepStream":
                                    break
                            states.append((await job.cancel()).state)

                        nursery.start_soon(cancel_later, job, job.events())
                    else:
                        job = await rt.spawn(flow, {"mode": "abandon" if kind else "done"})

                        async def wait(job=job):
                            states.append((await job.wait()).state)

                        nursery.start_soon(wait)
        assert states.count(JobState.COMPLETED) == 100
        assert states.count(JobState.ABANDONED) == 100
        assert states.count(JobState.CANCELLED) == 100
        assert_no_leaks(rt)
        assert len(me.children(recursive=True)) == children
        assert me.num_fds() <= fds
        assert marked_processes(rt) == []
