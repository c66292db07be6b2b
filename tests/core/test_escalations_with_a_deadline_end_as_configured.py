"""An escalate rule with a timeout pauses its job with a deadline: if nobody resumes it in time,
EscalationTimedOut is published and on_timeout decides (abandon, the default; fail; or advance,
which resumes with payload None).  A resume before the deadline cancels the timer.  The armed
deadline is the only timer a paused job holds, and it schedules nothing while it waits."""

from __future__ import annotations

import pytest
import trio
import trio.lowlevel
import trio.testing
from core_support import assert_gone, ok

from runtime import (
    EscalationTimedOut,
    ExitRule,
    Flow,
    JobPaused,
    JobResumed,
    JobState,
    Step,
    open_runtime,
)
from runtime.testing import job_tasks

TIMEOUT = 600.0


async def _use_resume(ctx, inputs):
    return {"payload": inputs["payload"]}


def _flow(on_timeout: str | None, timeout: float = TIMEOUT) -> Flow:
    return Flow("f", [
        Step("ask", run=ok, exits=[ExitRule("human", action="escalate", timeout=timeout, on_timeout=on_timeout)]),
        Step("after", run=_use_resume, after=["ask"], inputs={"payload": "$resume"}),
    ])


async def _until_paused(job, events=None) -> JobPaused:
    """The JobPaused of ``job`` (read from ``events``, which goes on, or a subscription of its own)."""
    own = events is None
    events = job.events() if own else events
    async for event in events:
        if isinstance(event, JobPaused):
            if own:
                await events.aclose()
            return event
    raise AssertionError(f"job {job.id} ended without pausing: {job.result}")


def _escalation_tasks(job_id: str) -> list[str]:
    return [name for name in job_tasks({job_id}) if ":escalation:" in name]


@pytest.mark.parametrize("on_timeout, state, reason, error", [
    (None, JobState.ABANDONED, "escalation_timeout:human", None),  # the default is abandon
    ("abandon", JobState.ABANDONED, "escalation_timeout:human", None),
    ("fail", JobState.FAILED, "escalation_timeout:human",
     f"escalation 'human' on step 'ask' was not resumed within its timeout of {TIMEOUT}s"),
    ("advance", JobState.COMPLETED, None, None),
])
async def test_an_unanswered_escalation_ends_as_on_timeout_says(autojump_clock, on_timeout, state, reason,
                                                                error):
    async with open_runtime() as rt:
        job = await rt.spawn(_flow(on_timeout))
        events = job.events()
        paused = await _until_paused(job, events)
        assert paused.deadline == pytest.approx(paused.ts + TIMEOUT)  # wall clock, in the event
        start = trio.current_time()
        await trio.sleep(TIMEOUT - 1)
        assert job.state is JobState.PAUSED  # not a second early, on trio's clock
        result = await job.wait()
        assert trio.current_time() - start == pytest.approx(TIMEOUT)
        assert (result.state, result.reason, result.error) == (state, reason, error)
        events = [e async for e in events]
        timed_out = [e for e in events if isinstance(e, EscalationTimedOut)]
        assert [(e.step, e.rule, e.action) for e in timed_out] == [("ask", "human", on_timeout or "abandon")]
        resumed = [e for e in events if isinstance(e, JobResumed)]
        if on_timeout == "advance":  # resumed with payload None, and the DAG went on
            assert [e.payload for e in resumed] == [None]
            assert timed_out[0].seq < resumed[0].seq
            assert result.outputs["after"] == {"payload": None}
        else:
            assert resumed == [] and "after" not in result.outputs
        assert_gone(rt, job.id)


async def test_a_resume_before_the_deadline_cancels_the_timer(autojump_clock):
    async def outlives_the_deadline(ctx, inputs):
        await trio.sleep(2 * TIMEOUT)  # the job is still running when the deadline would have come
        return {"who": inputs["who"]}

    flow = Flow("f", [
        Step("ask", run=ok, exits=[ExitRule("human", action="escalate", timeout=TIMEOUT, on_timeout="fail")]),
        Step("after", run=outlives_the_deadline, after=["ask"], inputs={"who": "$resume.who"}),
    ])
    async with open_runtime() as rt:
        job = await rt.spawn(flow)
        events = job.events()
        await _until_paused(job, events)
        await trio.testing.wait_all_tasks_blocked()
        assert len(_escalation_tasks(job.id)) == 1
        await trio.sleep(TIMEOUT / 2)
        await job.resume({"who": "alice"})
        await trio.testing.wait_all_tasks_blocked()
        assert _escalation_tasks(job.id) == []  # cancelled, gone from the nursery
        result = await job.wait()
        assert result.state is JobState.COMPLETED and result.outputs["after"] == {"who": "alice"}
        assert not any([isinstance(e, EscalationTimedOut) async for e in events])
        assert_gone(rt, job.id)


async def test_a_second_escalation_replaces_the_first_deadline(autojump_clock):
    # the last pause decides: a job paused again, later, by a rule without a timeout holds no timer
    async def later(ctx, inputs):
        await trio.sleep(10)
        return {}

    flow = Flow("f", [
        Step("a", run=ok, exits=[ExitRule("soon", action="escalate", timeout=TIMEOUT)]),
        Step("b", run=later, exits=[ExitRule("open", action="escalate")]),
    ])
    async with open_runtime() as rt:
        job = await rt.spawn(flow)
        await trio.sleep(20)
        assert job.state is JobState.PAUSED
        await trio.testing.wait_all_tasks_blocked()
        assert _escalation_tasks(job.id) == []
        assert trio.lowlevel.current_statistics().seconds_to_next_deadline == float("inf")
        await job.resume({})
        assert (await job.wait()).state is JobState.COMPLETED


class StepCounter(trio.abc.Instrument):
    """Counts ``before_task_step`` of every task but the test's own."""

    def __init__(self, me: trio.lowlevel.Task) -> None:
        self.me = me
        self.steps: dict[str, int] = {}

    def before_task_step(self, task: trio.lowlevel.Task) -> None:
        if task is not self.me:
            self.steps[task.name] = self.steps.get(task.name, 0) + 1


async def test_an_armed_paused_job_takes_no_task_step_before_its_deadline(autojump_clock):
    async with open_runtime() as rt:
        jobs = [await rt.spawn(_flow("abandon")) for _ in range(20)]
        await trio.testing.wait_all_tasks_blocked()  # (before autojump moves the clock)
        assert all(job.state is JobState.PAUSED for job in jobs)
        assert all(len(_escalation_tasks(job.id)) == 1 for job in jobs)  # one timer each, no more
        counter = StepCounter(trio.lowlevel.current_task())
        trio.lowlevel.add_instrument(counter)
        try:
            await trio.sleep(TIMEOUT / 2)
        finally:
            trio.lowlevel.remove_instrument(counter)
        assert counter.steps == {}
        assert all(job.state is JobState.PAUSED for job in jobs)
        # the deadlines are the only ones armed: the next is theirs, what is left of TIMEOUT
        left = trio.lowlevel.current_statistics().seconds_to_next_deadline
        assert left == pytest.approx(TIMEOUT / 2, abs=1)
        trio.lowlevel.add_instrument(counter)  # the same count does see the timers at their deadline
        try:
            results = [await job.wait() for job in jobs]
        finally:
            trio.lowlevel.remove_instrument(counter)
        assert {r.state for r in results} == {JobState.ABANDONED}
        assert sum(n for name, n in counter.steps.items() if ":escalation:" in name) >= len(jobs)
