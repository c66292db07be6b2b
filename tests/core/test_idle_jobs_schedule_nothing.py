"""Idle is parked: fifty paused jobs cause zero scheduler wakeups in an hour, and no deadline is
armed."""

from __future__ import annotations

import trio
import trio.lowlevel
import trio.testing
from core_support import ok

from runtime import ExitRule, Flow, JobState, Step, open_runtime
from runtime.testing import WakeupCounter


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
