"""escalate pauses a job until resume(payload), parked (no wakeup) meanwhile; a step that reads
$resume waits for a resume; resuming a job that is not paused raises."""

from __future__ import annotations

import trio
import trio.lowlevel
import trio.testing
from core_support import assert_gone, echo, forever, ok

from runtime import (
    ExitRule,
    Flow,
    JobPaused,
    JobState,
    JobStateError,
    Step,
    StepStarted,
    open_runtime,
)
from runtime.testing import WakeupCounter


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
        types = [type(e).__name__ async for e in _until_paused(events)]
        assert job.state is JobState.PAUSED
        await trio.testing.wait_all_tasks_blocked()  # the escalating step's task has ended
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
        types += [type(e).__name__ async for e in events]
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


async def test_a_step_reading_resume_waits_for_a_resume(autojump_clock):
    seen: list = []

    async def use(ctx, inputs):
        seen.append(inputs["ok"])
        return {}

    async def slow(ctx, inputs):
        await trio.sleep(5)
        return {"ask": True}

    # `apply` reads $resume but depends on nothing: it must not run before the job is resumed
    flow = Flow("f", [
        Step("review", run=slow, exits=[ExitRule("ask", when="outputs.ask", action="escalate")]),
        Step("apply", run=use, inputs={"ok": "$resume.ok"}),
    ])
    async with open_runtime() as rt:
        job = await rt.spawn(flow)
        events = [e async for e in _until_paused(job.events())]
        assert not any(isinstance(e, StepStarted) and e.step == "apply" for e in events)
        assert seen == []
        await job.resume({"ok": True})
        assert (await job.wait()).state is JobState.COMPLETED
        assert seen == [True]


async def test_a_job_whose_only_ready_step_reads_resume_pauses(autojump_clock):
    # the escalating rule does not fire: nothing else can run, so the job waits for a human
    flow = Flow("f", [
        Step("review", run=echo, exits=[ExitRule("ask", when="False", action="escalate")]),
        Step("apply", run=echo, inputs={"ok": "$resume.ok"}, after=["review"]),
    ])
    async with open_runtime() as rt:
        job = await rt.spawn(flow)
        paused = [e async for e in _until_paused(job.events())][-1]
        assert (paused.step, paused.rule) == ("apply", "$resume") and job.state is JobState.PAUSED
        await job.resume({"ok": 1})
        assert (await job.wait()).outputs["apply"] == {"ok": 1}


async def _until_paused(events):
    """The events of ``events`` up to and including the first JobPaused (``events`` goes on)."""
    async for event in events:
        yield event
        if isinstance(event, JobPaused):
            return
