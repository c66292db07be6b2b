"""Streams inside jobs: updates become ordered job events; a job ending mid-stream flushes then
publishes exactly one cancelled Done; open buffers are counted and gone with the job."""

from __future__ import annotations

import sys

import trio
import trio.lowlevel

from actors.stream import Delta, Done, Full, Start, TextDelta
from runtime import (
    AgentSpec,
    AgentUpdate,
    ExitRule,
    Flow,
    JobState,
    Step,
    StepCompleted,
    StepStream,
    open_runtime,
)
from runtime.testing import WakeupCounter, assert_no_leaks

FAKE = [sys.executable, "-m", "actors.fake_agent", "--delay", "0.001", "--chunk-size", "3"]


def stream_updates(events, step=None):
    return [e.update for e in events if isinstance(e, StepStream) and (step is None or e.step == step)]


async def test_job_abandoned_mid_stream_flushes_then_one_cancelled_done(autojump_clock):
    in_stream, verdict = trio.Event(), trio.Event()

    async def writer(ctx, inputs):
        async with ctx.stream(flush_interval=10.0, max_buffered_chars=10_000) as s:
            await s.delta("first ")  # published at once
            for word in ("buffered ", "until ", "the end"):
                await s.delta(word)  # coalescing: held in the buffer
            in_stream.set()
            await trio.sleep_forever()

    async def judge(ctx, inputs):
        await verdict.wait()
        return {"verdict": "drop"}

    flow = Flow("s", [Step("w", run=writer),
                      Step("j", run=judge, exits=[ExitRule("drop", when="outputs.verdict == 'drop'", action="abandon")])])
    async with open_runtime() as rt:
        job = await rt.spawn(flow)
        events = job.events()
        await in_stream.wait()
        assert rt.stats().streams == 1
        verdict.set()
        result = await job.wait()
        seen = [e async for e in events]
        assert result.state is JobState.ABANDONED
        updates = stream_updates(seen, "w")
        assert isinstance(updates[0], Start)
        deltas = [u for u in updates if isinstance(u, Delta)]
        assert "".join(d.delta.text for d in deltas) == "first buffered until the end"
        terminals = [u for u in updates if isinstance(u, Done | Full)]
        assert len(terminals) == 1 and updates[-1] is terminals[0]
        assert terminals[0].metadata == {"cancelled": True}
        assert rt.stats().streams == 0
        assert_no_leaks(rt)


async def test_idle_open_stream_in_a_job_makes_no_wakeups(autojump_clock, wakeups: WakeupCounter):
    opened = trio.Event()

    async def idle_stream(ctx, inputs):
        async with ctx.stream() as s:
            await s.delta("hello")
            await trio.sleep(1)  # the window passes, the buffer flushes and parks
            opened.set()
            await trio.sleep_forever()

    async with open_runtime() as rt:
        job = await rt.spawn(Flow("idle", [Step("a", run=idle_stream)]))
        await opened.wait()
        await trio.sleep(1)
        wakeups.reset()
        await trio.sleep(3600)
        assert wakeups.count == 0, wakeups.names
        assert trio.lowlevel.current_statistics().seconds_to_next_deadline == float("inf")
        assert rt.stats().streams == 1
        await job.cancel()
        assert rt.stats().streams == 0


async def test_python_step_stream_content_and_caller_terminal(autojump_clock):
    async def step(ctx, inputs):
        async with ctx.stream(index=2) as s:
            for piece in ("al", "pha ", "beta"):
                await s.delta(piece)
            await s.done(metadata={"tokens": 3})
        return {"text": s.content}

    async with open_runtime() as rt:
        job = await rt.spawn(Flow("py", [Step("a", run=step)]))
        events = job.events()
        result = await job.wait()
        seen = [e async for e in events]
    assert result.outputs["a"] == {"text": "alpha beta"}
    updates = stream_updates(seen)
    assert isinstance(updates[-1], Done) and updates[-1].metadata == {"tokens": 3} and updates[-1].index == 2
    assert sum(isinstance(u, Done) for u in updates) == 1


async def test_agent_step_event_order():
    async with open_runtime() as rt:
        with trio.fail_after(30):
            job = await rt.spawn(Flow("agent", [Step("a", agent=AgentSpec([*FAKE, "--tools"]),
                                                     prompt="stream these words to me")]))
            events = job.events()
            result = await job.wait()
        seen = [e async for e in events]
        assert result.state is JobState.COMPLETED
        statuses = [(e.kind, e.data.get("status")) for e in seen if isinstance(e, AgentUpdate)]
        assert statuses == [("tool_call", "pending"), ("tool_call_update", "completed")]
        mine = [e for e in seen if getattr(e, "step", None) == "a" and not isinstance(e, AgentUpdate)]
        kinds = [type(e.update).__name__ if isinstance(e, StepStream) else type(e).__name__ for e in mine]
        start, terminal, completed = kinds.index("Start"), kinds.index("Done"), kinds.index("StepCompleted")
        # the message opens, the turn's ACP session is named, then only deltas until the one Done
        assert kinds[0] == "StepStarted" and start == 1 and kinds[2] == "AgentSession"
        assert all(k == "Delta" for k in kinds[start + 2:terminal]) and terminal > start + 2
        assert terminal < completed and kinds.count("Done") == 1
        text = "".join(e.update.delta.text for e in mine
                       if isinstance(e, StepStream) and isinstance(e.update, Delta)
                       and isinstance(e.update.delta, TextDelta))
        assert text == "stream these words to me" == result.outputs["a"]["text"]
        channels = {type(e.update.delta).__name__ for e in mine
                    if isinstance(e, StepStream) and isinstance(e.update, Delta)}
        assert {"TextDelta", "ReasoningContentDelta", "ToolRequestDelta"} <= channels
        assert isinstance(mine[-1], StepCompleted) or any(isinstance(e, StepCompleted) for e in mine)
        assert_no_leaks(rt)
