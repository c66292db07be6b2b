"""Draining a runtime for a deploy: no new job, running steps get a grace period, then every job
lets go -- a durable one INTERRUPTED with its checkpoints written, the rest CANCELLED ``drained``."""

from __future__ import annotations

import trio

from actors.log import get_logger

from .job import Job
from .states import JobState

__all__ = ["DRAINED", "drain"]

DRAINED = "drained"
"""The reason a drained job ends with: INTERRUPTED (durable) or CANCELLED (not recorded durably)."""

_log = get_logger("corral.runtime")


async def drain(live: list[Job], queued: list[Job], grace: float) -> None:
    """End ``live`` and ``queued`` jobs for a drain (their runtime already refuses new ones).

    A queued durable job is stored INTERRUPTED at once (it never ran: the next runtime starts it);
    a queued one that is not durable is CANCELLED.  A running durable job starts no new step and
    ends INTERRUPTED once its running steps are done (a PAUSED one at once, stored paused); every
    other job runs on.  After ``grace`` seconds whatever is left ends: durable jobs INTERRUPTED
    (their running steps cancelled, their processes killed), the rest CANCELLED.  Returns once
    every job's nursery has closed.
    """
    for job in queued:
        await job.finish_unstarted(JobState.INTERRUPTED if _durable(job) else JobState.CANCELLED, DRAINED)
    for job in live:
        if _durable(job):
            job.drain(DRAINED)
    _log.info("draining", jobs=len(live), queued=len(queued), grace=grace)
    with trio.move_on_after(grace):
        for job in live:
            await job.wait()
    for job in live:
        if job.result is None and _durable(job):
            job.interrupt(DRAINED)
        elif job.result is None:
            job.cancel_nowait(DRAINED)
    for job in live:
        await job.wait()
    await trio.lowlevel.checkpoint()


def _durable(job: Job) -> bool:
    return job.recording.stores_events
