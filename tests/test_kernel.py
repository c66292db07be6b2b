"""The kernel: every terminal path closes the job's nursery and leaves nothing behind."""

from __future__ import annotations

import pytest
import trio
import trio.lowlevel
import trio.testing

from runtime import (
    ExitRule,
    Flow,
    InputError,
    JobFinished,
    JobNotFound,
    JobPaused,
    JobState,
    JobStateError,
    OnError,
    Step,
    StepCancelled,
    StepCompleted,
    StepFailed,
    StepStarted,
    StepState,
    open_runtime,
)
from runtime.testing import WakeupCounter, assert_no_leaks, job_tasks


async def ok(ctx, inputs):
    await trio.lowlevel.checkpoint()
    return {"ok": True, **inputs}


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


# -- every terminal path ------------------------------------------------------------------------


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


# -- exit rules ------------------------------------------------------------------------------------


async def test_loop_up_to_max_iterations(autojump_clock):
    runs = []

    async def draft(ctx, inputs):
        runs.append(("draft", ctx.iteration))
        return {"n": ctx.iteration}

    async def review(ctx, inputs):
        runs.append(("review", ctx.iteration))
        return {"approved": inputs["n"] >= 2}

    flow = Flow(
        "f",
        [
            Step("draft", run=draft),
            Step(
                "review",
                run=review,
                inputs={"n": "$draft.n"},
                exits=[
                    ExitRule(
                        "again",
                        when="not outputs.approved",
                        action="loop",
                        target="draft",
                        max_iterations=5,
                    )
                ],
            ),
        ],
    )
    _, _, result = await run_to_end(flow)
    assert result.state is JobState.COMPLETED
    assert runs == [
        ("draft", 0),
        ("review", 0),
        ("draft", 1),
        ("review", 1),
        ("draft", 2),
        ("review", 2),
    ]


async def test_loop_bound_fails_job(autojump_clock):
    flow = Flow(
        "f",
        [
            Step(
                "a",
                run=ok,
                exits=[ExitRule("spin", when="True", action="loop", target="a", max_iterations=3)],
            )
        ],
    )
    _, _, result = await run_to_end(flow)
    assert result.state is JobState.FAILED and result.reason == "max_iterations:spin"


async def test_escalate_pause_resume(autojump_clock, wakeups: WakeupCounter):
    async def use_resume(ctx, inputs):
        return {"approved_by": inputs["who"]}

    flow = Flow(
        "f",
        [
            Step("a", run=ok, exits=[ExitRule("needs_human", when="True", action="escalate")]),
            Step("b", run=use_resume, after=["a"], inputs={"who": "$resume.who"}),
        ],
    )
    async with open_runtime() as rt:
        job = await rt.spawn(flow)
        events = job.events()
        while job.state is not JobState.PAUSED:
            await trio.sleep(0.1)
        # parked: an hour of (autojumped) time schedules no task of the job
        wakeups.reset()
        await trio.sleep(3600)
        assert wakeups.count == 0, wakeups.names
        assert trio.lowlevel.current_statistics().seconds_to_next_deadline == float("inf")
        assert job.state is JobState.PAUSED
        await job.resume({"who": "alice"})
        result = await job.wait()
        assert result.state is JobState.COMPLETED
        assert result.outputs["b"] == {"approved_by": "alice"}
        types = [type(e).__name__ async for e in events]
        assert types.index("JobPaused") < types.index("JobResumed") < types.index("JobFinished")
        assert_gone(rt, job.id)


async def test_resume_when_not_paused_raises(autojump_clock):
    async with open_runtime() as rt:
        job = await rt.spawn(Flow("f", [Step("a", run=forever)]))
        await trio.sleep(1)
        try:
            await job.resume({})
        except JobStateError as exc:
            assert "not paused" in str(exc)
        else:
            raise AssertionError("resume of a running job must raise")
        await job.cancel()


async def test_retry_with_backoff(autojump_clock):
    times = []

    async def flaky(ctx, inputs):
        times.append(trio.current_time())
        if ctx.attempt < 3:
            raise ConnectionError("flaky")
        return {"attempt": ctx.attempt}

    t0 = trio.current_time()
    flow = Flow("f", [Step("a", run=flaky, on_error=OnError("retry", max_attempts=4, backoff=2))])
    _, _, result = await run_to_end(flow)
    assert result.state is JobState.COMPLETED and result.outputs["a"] == {"attempt": 3}
    assert [t - t0 for t in times] == [0, 2, 6]  # backoff 2 * 2**(attempt-1)


async def test_on_error_continue(autojump_clock):
    flow = Flow(
        "f", [Step("a", run=boom, on_error=OnError("continue")), Step("b", run=ok, after=["a"])]
    )
    _, _, result = await run_to_end(flow)
    assert result.state is JobState.COMPLETED
    assert result.steps["a"] is StepState.FAILED and "boom" in result.outputs["a"]["error"]
    assert result.steps["b"] is StepState.COMPLETED


async def test_when_runtime_error_is_a_step_failure(autojump_clock):
    flow = Flow(
        "f",
        [Step("a", run=ok, exits=[ExitRule("r", when="outputs.missing > 1", action="abandon")])],
    )
    _, _, result = await run_to_end(flow)
    assert result.state is JobState.FAILED and "missing" in result.error


async def test_a_missing_job_input_is_refused_at_spawn(tmp_path):
    flow = Flow("f", [Step("a", run=ok, inputs={"x": "$job.nope.deep"})])
    async with open_runtime(store=tmp_path / "s.db") as rt:
        with pytest.raises(InputError) as info:
            await rt.spawn(flow, {"other": 1}, job_id="j1", record="durable")
        assert info.value.problems == {"nope.deep": "missing, read by step 'a' as $job.nope.deep"}
        assert await rt.store.list_jobs() == [] and rt.jobs() == []
        with pytest.raises(InputError):  # the path is followed: a present but wrong shape fails too
            await rt.spawn(flow, {"nope": 3})


# -- runtime ---------------------------------------------------------------------------------------


async def test_max_running_jobs_fifo(autojump_clock):
    order = []

    async def record(ctx, inputs):
        order.append(inputs["i"])
        await trio.sleep(1)

    flow = Flow("f", [Step("a", run=record, inputs={"i": "$job.i"})])
    async with open_runtime(max_running_jobs=1) as rt:
        jobs = [await rt.spawn(flow, {"i": i}) for i in range(6)]
        assert [j.state for j in jobs[1:]] == [JobState.PENDING] * 5
        assert rt.stats().pending_jobs == 5
        await trio.sleep(0.5)
        assert rt.stats().live_jobs == 1
        cancelled = await jobs[4].cancel()  # a queued job ends without running
        assert cancelled.state is JobState.CANCELLED
        for j in jobs:
            await j.wait()
        assert order == [0, 1, 2, 3, 5]
        assert_no_leaks(rt)


async def test_shutdown_with_pending_jobs(autojump_clock):
    async with open_runtime(max_running_jobs=1) as rt:
        jobs = [await rt.spawn(Flow("f", [Step("a", run=forever)])) for _ in range(3)]
        await trio.sleep(1)
    assert [j.result.state for j in jobs] == [JobState.CANCELLED] * 3
    assert {j.result.reason for j in jobs} == {"shutdown"}


async def test_results_are_bounded(autojump_clock):
    flow = Flow("f", [Step("a", run=ok)])
    async with open_runtime(max_results=100) as rt:
        ids = []
        for _ in range(1000):
            job = await rt.spawn(flow)
            await job.wait()
            ids.append(job.id)
        assert rt.stats().results == 100
        with pytest.raises(JobNotFound):  # evicted: an in-memory runtime keeps max_results
            await rt.result(ids[0])
        assert (await rt.result(ids[-1])).state is JobState.COMPLETED
        assert rt.jobs() == [] and rt.get(ids[-1]) is None
        assert_no_leaks(rt)


async def test_two_runtimes_share_nothing(autojump_clock):
    flow = Flow("f", [Step("a", run=forever)])
    async with open_runtime() as rt1, open_runtime() as rt2:
        j1 = await rt1.spawn(flow)
        j2 = await rt2.spawn(flow)
        assert rt1.get(j2.id) is None and rt2.get(j1.id) is None
        assert [j.id for j in rt1.jobs()] == [j1.id]
        await j1.cancel()
        assert await rt1.result(j1.id) is not None
        with pytest.raises(JobNotFound):
            await rt2.result(j1.id)
        assert j2.state is JobState.RUNNING
        assert rt1.stats().live_jobs == 0 and rt2.stats().live_jobs == 1
        await j2.cancel()


async def test_stats_count_job_tasks(autojump_clock):
    async with open_runtime() as rt:
        job = await rt.spawn(Flow("f", [Step("a", run=forever), Step("b", run=forever)]))
        await trio.sleep(1)
        stats = rt.stats()
        assert stats.live_jobs == 1 and stats.tasks == 3  # the job actor and two steps
        await job.cancel()
        assert rt.stats().tasks == 0


async def test_slow_subscriber_gets_lagged_marker(autojump_clock):
    async def chatty(ctx, inputs):
        return {}

    flow = Flow("f", [Step(f"s{i}", run=chatty) for i in range(20)])
    async with open_runtime() as rt:
        job = await rt.spawn(flow)
        events = job.events(maxlen=5)
        await job.wait()
        seen = [e async for e in events]
    from runtime import Lagged

    assert isinstance(seen[0], Lagged) and seen[0].n > 0
    assert isinstance(seen[-1], JobFinished)
    assert len(seen) == 6
    assert seen[0].n + 5 == seen[-1].seq + 1


async def test_idle_runtime_schedules_nothing(autojump_clock, wakeups: WakeupCounter):
    async with open_runtime() as rt:
        jobs = [
            await rt.spawn(
                Flow("f", [Step("a", run=ok, exits=[ExitRule("hold", action="escalate")])])
            )
            for _ in range(50)
        ]
        await trio.sleep(1)
        assert all(j.state is JobState.PAUSED for j in jobs)
        wakeups.reset()
        await trio.sleep(3600)
        assert wakeups.count == 0
        assert trio.lowlevel.current_statistics().seconds_to_next_deadline == float("inf")
    assert all(j.result.state is JobState.CANCELLED for j in jobs)


async def test_events_of_paused_job_show_pause(autojump_clock):
    flow = Flow("f", [Step("a", run=ok, exits=[ExitRule("hold", action="escalate")])])
    async with open_runtime() as rt:
        job = await rt.spawn(flow)
        events = job.events()
        await trio.sleep(1)
        await job.cancel()
        seen = [e async for e in events]
        assert any(isinstance(e, JobPaused) for e in seen)
        assert [e.seq for e in seen] == list(range(len(seen)))


# -- one exit means nothing after it --------------------------------------------------------------


async def _loop_beside_a_failure() -> None:
    ran_after: list[int] = []
    failed = trio.Event()
    go = trio.Event()

    async def looping(ctx, inputs):
        if failed.is_set():
            ran_after.append(ctx.iteration)
        await trio.lowlevel.checkpoint()
        return {"again": True}

    def again(outputs):
        go.set()  # runs as the loop resolves its exit: the sibling wakes with the next pass
        return True

    async def failing(ctx, inputs):
        await go.wait()
        failed.set()
        raise RuntimeError("sibling fails")

    flow = Flow("f", [
        Step("loop", run=looping,
             exits=[ExitRule("again", when=again, action="loop", target="loop", max_iterations=50)]),
        Step("fail", run=failing),
    ])
    async with open_runtime() as rt:
        job = await rt.spawn(flow)
        seen = [event async for event in job.events()]
        result = job.result
        assert_gone(rt, job.id)
    assert result.state is JobState.FAILED and result.reason == "step_failed:fail"
    assert ran_after == []
    decided = next(i for i, e in enumerate(seen) if isinstance(e, StepFailed))
    late = [e for e in seen[decided:] if isinstance(e, StepStarted | StepCompleted)]
    assert late == [], f"published after the outcome was decided: {late}"


async def test_a_sibling_looping_when_a_step_fails_neither_starts_again_nor_runs():
    """The loop step's next pass is scheduled in the same instant its sibling fails: whichever
    trio runs first, once the failure decided the outcome the next pass neither publishes
    StepStarted nor runs its code (trio picks the order at random, so the case is replayed)."""
    for _ in range(30):
        await _loop_beside_a_failure()
