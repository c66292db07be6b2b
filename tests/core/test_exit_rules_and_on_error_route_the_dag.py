"""A step's exit rules (loop, bounded by max_iterations) and on_error (retry with backoff,
continue) route the DAG; a when-expression that fails at run time is a step failure."""

from __future__ import annotations

import trio
import trio.lowlevel
import trio.testing
from core_support import boom, ok, run_to_end

from runtime import ExitRule, Flow, JobState, OnError, Step, StepState


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
