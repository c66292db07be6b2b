"""Property: whatever the flow does and whatever happens from outside, a job ends exactly once
and leaves nothing behind."""

from __future__ import annotations

import trio
import trio.testing
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from runtime import (
    ExitResolved,
    ExitRule,
    Flow,
    JobFinished,
    JobPaused,
    JobState,
    JobStateError,
    Lagged,
    OnError,
    Step,
    StepCancelled,
    StepCompleted,
    StepFailed,
    StepStarted,
    open_runtime,
)
from runtime.testing import assert_no_leaks, job_tasks

BEHAVIOURS = ("succeed", "raise", "sleep", "loop", "abandon", "escalate")
OUTSIDE = ("none", "cancel", "abandon", "shutdown")


def make_step(i: int, behaviour: str, deps: list[str], delay: float, on_error: str,
              decided: dict | None = None) -> Step:
    """``decided["at"]`` is set by the scenario the instant an outside action decides the job's
    outcome; a step body that starts after that records itself in ``decided["late"]``."""
    decided = {} if decided is None else decided

    async def run(ctx, inputs):
        if "at" in decided:
            decided.setdefault("late", []).append(ctx.step)
        await trio.sleep(delay)
        if behaviour == "raise":
            raise RuntimeError(f"step s{i} fails")
        if behaviour == "sleep":
            await trio.sleep(delay * 10)
        return {"i": i}

    exits = []
    if behaviour == "loop":
        exits.append(
            ExitRule("again", when="iteration < 3", action="loop", target=f"s{i}", max_iterations=2)
        )
    elif behaviour == "abandon":
        exits.append(ExitRule("give_up", when="outputs.i >= 0", action="abandon"))
    elif behaviour == "escalate":
        exits.append(ExitRule("ask_human", action="escalate"))
    policy = OnError(on_error, max_attempts=2, backoff=0.5) if on_error != "fail" else OnError()
    return Step(f"s{i}", run=run, after=deps, exits=exits, on_error=policy)


@st.composite
def flows(draw):
    decided: dict = {}
    n = draw(st.integers(1, 8))
    steps = []
    for i in range(n):
        deps = (
            sorted(draw(st.sets(st.sampled_from([f"s{j}" for j in range(i)]), max_size=3)))
            if i
            else []
        )
        steps.append(
            make_step(
                i,
                draw(st.sampled_from(BEHAVIOURS)),
                deps,
                draw(st.sampled_from([0, 0.1, 1.0, 5.0])),
                draw(st.sampled_from(["fail", "retry", "continue", "abandon"])),
                decided,
            )
        )
    return Flow("prop", steps, timeout=draw(st.sampled_from([None, None, 20.0]))), decided


DECISIVE_FAILURES = ("fail", "abandon")  # on_error actions that end the job


def assert_nothing_after_the_outcome(seen) -> None:
    """After the event that decided the outcome, no step starts or completes.

    The deciding events are: a StepCancelled (only the one exit publishes it), a StepFailed whose
    action ends the job, and an ExitResolved that abandons."""
    decided_at = None
    for i, event in enumerate(seen):
        if decided_at is None:
            if isinstance(event, StepCancelled) or (
                isinstance(event, StepFailed) and event.action in DECISIVE_FAILURES
            ) or (isinstance(event, ExitResolved) and event.action == "abandon"):
                decided_at = i
            continue
        assert not isinstance(event, StepStarted | StepCompleted | ExitResolved), (
            f"{event!r} after the outcome was decided by {seen[decided_at]!r}"
        )


async def scenario(flow: Flow, decided: dict, outside: str, at: float) -> None:
    decided.clear()
    async with open_runtime() as rt:
        job = await rt.spawn(flow)
        events = job.events(maxlen=100_000)
        seen = []

        async def consume():
            async for event in events:
                seen.append(event)
                if isinstance(event, JobPaused) and outside == "none":
                    nursery.start_soon(resume_later)

        async def resume_later():
            await trio.sleep(1)
            if job.state is JobState.PAUSED:
                try:
                    await job.resume({"ok": True})
                except JobStateError as exc:
                    # a sibling step ended the job at this same instant: its outcome is decided and
                    # its teardown under way (state says PAUSED until the nursery has closed)
                    assert "has ended" in str(exc)
                    assert (await job.wait()).state is not JobState.COMPLETED

        async with trio.open_nursery() as nursery:
            nursery.start_soon(consume)
            if outside != "none":
                await trio.sleep(at)
                if job.result is None and outside in ("cancel", "abandon"):
                    decided["at"] = at  # applied synchronously below: the outcome is decided now
                if outside == "cancel":
                    await job.cancel("test")
                elif outside == "abandon":
                    await job.abandon("test")
                elif outside == "shutdown":
                    nursery.cancel_scope.cancel()  # stop consuming, then leave the runtime block
            if outside != "shutdown":
                result = await job.wait()
                assert result.state.terminal
                assert_no_leaks(rt)
    result = job.result
    assert result is not None and result.state.terminal
    assert job_tasks() == []
    assert decided.get("late", []) == [], f"step code ran after {outside} decided the outcome"
    assert_nothing_after_the_outcome(seen)
    if outside != "shutdown":
        assert not any(isinstance(e, Lagged) for e in seen)
        finished = [e for e in seen if isinstance(e, JobFinished)]
        assert len(finished) == 1 and seen[-1] is finished[0]
        assert finished[0].state == result.state.value
        assert [e.seq for e in seen] == list(range(len(seen)))
        if outside in ("cancel", "abandon") and result.reason == "test":
            expected = JobState.CANCELLED if outside == "cancel" else JobState.ABANDONED
            assert result.state is expected
    else:
        assert result.state is not JobState.PAUSED


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(flow=flows(), outside=st.sampled_from(OUTSIDE), at=st.sampled_from([0, 0.05, 0.1, 0.5, 1.0, 2.0, 7.0]))  # 0.1, 1.0: ties with step delays
def test_every_job_ends_exactly_once(flow, outside, at):
    flow, decided = flow
    trio.run(scenario, flow, decided, outside, at, clock=trio.testing.MockClock(autojump_threshold=0))
