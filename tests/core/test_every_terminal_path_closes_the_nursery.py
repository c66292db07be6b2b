"""Every way a job ends -- complete, fail, abandon (by rule, by on_error, from outside), cancel,
flow or step timeout, shutdown -- closes its nursery: the result is recorded once, siblings in
flight are cancelled, tasks its steps started die with it, and nothing of it is left."""

from __future__ import annotations

import trio
import trio.lowlevel
import trio.testing
from core_support import assert_gone, boom, forever, ok, run_to_end, slow

from runtime import (
    ExitRule,
    Flow,
    JobFinished,
    JobState,
    OnError,
    Step,
    StepCancelled,
    StepFailed,
    StepState,
    open_runtime,
)
from runtime.testing import assert_no_leaks, job_tasks


async def test_complete(autojump_clock):
    flow = Flow(
        "f", [Step("a", run=ok, inputs={"n": "$job.n"}), Step("b", run=ok, inputs={"m": "$a.n"})]
    )
    _, job, result = await run_to_end(flow, {"n": 7})
    assert result.state is JobState.COMPLETED and job.state is JobState.COMPLETED
    assert result.outputs["b"] == {"ok": True, "m": 7}
    assert result.steps == {"a": StepState.COMPLETED, "b": StepState.COMPLETED}


async def test_step_raises_fails_job(autojump_clock):
    _, _, result = await run_to_end(Flow("f", [Step("a", run=boom)]))
    assert result.state is JobState.FAILED
    assert result.reason == "step_failed:a"
    assert "ValueError: boom" in result.error


async def test_exit_rule_abandon(autojump_clock):
    flow = Flow(
        "f",
        [
            Step(
                "triage",
                run=ok,
                exits=[ExitRule("not_worth_it", when="outputs.ok", action="abandon")],
            ),
            Step("fix", run=ok, after=["triage"]),
        ],
    )
    _, _, result = await run_to_end(flow)
    assert result.state is JobState.ABANDONED and result.reason == "not_worth_it"
    assert result.steps["fix"] is StepState.PENDING


async def test_on_error_abandon(autojump_clock):
    _, _, result = await run_to_end(Flow("f", [Step("a", run=boom, on_error=OnError("abandon"))]))
    assert result.state is JobState.ABANDONED and result.reason == "on_error:a"


async def test_cancel(autojump_clock):
    async with open_runtime() as rt:
        job = await rt.spawn(Flow("f", [Step("a", run=forever)]))
        await trio.sleep(5)
        result = await job.cancel(reason="user")
        assert result.state is JobState.CANCELLED and result.reason == "user"
        assert result.steps["a"] is StepState.CANCELLED
        assert_gone(rt, job.id)


async def test_abandon_from_outside(autojump_clock):
    async with open_runtime() as rt:
        job = await rt.spawn(Flow("f", [Step("a", run=forever)]))
        await trio.sleep(5)
        result = await job.abandon(reason="operator")
        assert result.state is JobState.ABANDONED and result.reason == "operator"
        assert_gone(rt, job.id)


async def test_flow_timeout(autojump_clock):
    t0 = trio.current_time()
    _, _, result = await run_to_end(Flow("f", [Step("a", run=forever)], timeout=30))
    assert result.state is JobState.FAILED and result.reason == "timeout"
    assert trio.current_time() - t0 == 30


async def test_step_timeout_retries_exhausted(autojump_clock):
    flow = Flow(
        "f",
        [Step("a", run=forever, timeout=2, on_error=OnError("retry", max_attempts=3, backoff=1))],
    )
    async with open_runtime() as rt:
        job = await rt.spawn(flow)
        events = [e async for e in job.events()]
        result = await job.wait()
        assert_gone(rt, job.id)
    assert result.state is JobState.FAILED and result.reason == "step_failed:a"
    assert "timed out after 2" in result.error
    failed = [e for e in events if isinstance(e, StepFailed)]
    assert [(e.attempt, e.action) for e in failed] == [(1, "retry"), (2, "retry"), (3, "fail")]


async def test_shutdown_cancels_live_jobs(autojump_clock):
    async with open_runtime() as rt:
        job = await rt.spawn(Flow("f", [Step("a", run=forever), Step("b", run=forever)]))
        await trio.sleep(1)
        assert job.state is JobState.RUNNING
    result = job.result
    assert result.state is JobState.CANCELLED and result.reason == "shutdown"
    assert result.steps == {"a": StepState.CANCELLED, "b": StepState.CANCELLED}
    assert job_tasks() == []


async def test_shutdown_by_exception_in_body(autojump_clock):
    class Boom(Exception):
        pass

    try:
        async with open_runtime() as rt:
            job = await rt.spawn(Flow("f", [Step("a", run=forever)]))
            await trio.sleep(1)
            raise Boom
    except Boom:
        pass
    assert job.result.state is JobState.CANCELLED and job.result.reason == "shutdown"
    assert job_tasks() == []


async def test_abandon_with_sibling_in_flight(autojump_clock):
    sibling_cancelled = trio.Event()

    async def long_branch(ctx, inputs):
        try:
            await trio.sleep(1000)
        finally:
            sibling_cancelled.set()

    flow = Flow(
        "f",
        [
            Step(
                "a",
                run=slow,
                exits=[ExitRule("give_up", when=lambda out: out["slow"], action="abandon")],
            ),
            Step("b", run=long_branch),
        ],
    )
    async with open_runtime() as rt:
        job = await rt.spawn(flow)
        events = job.events()
        result = await job.wait()
        assert sibling_cancelled.is_set()
        assert result.state is JobState.ABANDONED and result.reason == "give_up"
        assert result.steps["b"] is StepState.CANCELLED
        seen = [e async for e in events]
        assert any(isinstance(e, StepCancelled) and e.step == "b" for e in seen)
        assert isinstance(seen[-1], JobFinished)
        assert_gone(rt, job.id)


async def test_task_started_by_step_dies_with_job(autojump_clock):
    stopped = trio.Event()

    async def background():
        try:
            await trio.sleep_forever()
        finally:
            stopped.set()

    async def starts_task(ctx, inputs):
        ctx.start_soon(background)
        return {}

    async with open_runtime() as rt:
        job = await rt.spawn(Flow("f", [Step("a", run=starts_task)]))
        assert (await job.wait()).state is JobState.COMPLETED
        assert stopped.is_set()
        assert_gone(rt, job.id)


async def test_crashing_background_task_fails_job_not_runtime(autojump_clock):
    async def crash():
        raise RuntimeError("background crash")

    async def starts_crash(ctx, inputs):
        ctx.start_soon(crash)
        await trio.sleep(5)
        return {}

    async with open_runtime() as rt:
        job = await rt.spawn(Flow("f", [Step("a", run=starts_crash)]))
        other = await rt.spawn(Flow("g", [Step("a", run=slow)]))
        result = await job.wait()
        assert result.state is JobState.FAILED and result.reason == "crashed"
        assert "background crash" in result.error
        assert (await other.wait()).state is JobState.COMPLETED
        assert_no_leaks(rt)
