"""A job's events are numbered without a gap, a paused job's show the pause, and a subscriber that
falls behind its maxlen gets one Lagged marker counting what it missed."""

from __future__ import annotations

import trio
import trio.lowlevel
import trio.testing
from core_support import ok

from runtime import ExitRule, Flow, JobFinished, JobPaused, Step, open_runtime


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
