"""An escalation's deadline: the one timer a paused job may hold.

An ``escalate`` rule with a ``timeout`` pauses its job with a deadline (:func:`arm`): one task in
the job's nursery sleeps until then on trio's clock -- a sleeping task is never scheduled, so the
pause still causes no wakeups -- and a resume cancels it before anything else (:func:`disarm`).
If it wakes while the job is still paused, :class:`~runtime.events.EscalationTimedOut` is
published and the rule's ``on_timeout`` decides: ``abandon`` and ``fail`` end the job through its
one exit, ``advance`` resumes it with payload ``None`` exactly as ``resume(None)`` would.

The deadline is recorded as a wall-clock time in the job's ``JobPaused`` event, so a job restored
paused after a crash re-arms what was left of it (:func:`rearm`); a deadline already past fires
at once.  The last pause decides: an escalation that pauses a job already paused replaces the
timer (and one without a timeout leaves none), as the last ``JobPaused`` of the log says.

Part of the job actor (:mod:`runtime.core.job`), split out to keep that module small: these
functions run synchronously in the job's trio run, like its own methods.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import trio

from ..flow import ExitRule
from ..store import Restored
from .events import EscalationTimedOut
from .messages import Resume
from .states import JobState

if TYPE_CHECKING:
    from .job import Job

__all__ = ["arm", "disarm", "rearm", "timeout_outcome"]


def arm(job: Job, step: str, rule: ExitRule, seconds: float | None) -> float | None:
    """Give the pause ``rule`` made the job's one timer, ``seconds`` from now (``None``: no
    timer); an earlier one is cancelled.  Returns the wall-clock deadline (for ``JobPaused``)."""
    disarm(job)
    if seconds is None:
        return None
    scope = job._pause_timer = trio.CancelScope()
    job.resources.nursery.start_soon(_expire_after, job, scope, seconds, step, rule,
                                     name=f"corral.task:{job.id}:escalation:{step}")
    return time.time() + seconds


def disarm(job: Job) -> None:
    """Cancel the job's escalation timer, if it holds one."""
    if job._pause_timer is not None:
        job._pause_timer.cancel()
        job._pause_timer = None


def rearm(job: Job, restored: Restored) -> None:
    """A job restored paused: arm what is left of the deadline its pause was recorded with (0
    once it has passed: it fires at once)."""
    if restored.paused_on is None or restored.pause_deadline is None:
        return
    step, name = restored.paused_on
    exits = job.flow.step(step).exits if step in job.flow.deps else ()
    rule = next((r for r in exits if r.name == name), None)
    if rule is not None and rule.timeout is not None:
        arm(job, step, rule, max(0.0, restored.pause_deadline - time.time()))


def timeout_outcome(step: str, rule: ExitRule) -> tuple[JobState, str, str | None] | None:
    """How a job ends when ``rule``'s escalation timed out: ``(state, reason, error)``, or ``None``
    for ``advance`` (the job is resumed with payload ``None`` and its DAG goes on)."""
    reason = f"escalation_timeout:{rule.name}"
    if rule.on_timeout == "advance":
        return None
    if rule.on_timeout == "fail":
        return (JobState.FAILED, reason, f"escalation {rule.name!r} on step {step!r} was not resumed "
                                         f"within its timeout of {rule.timeout}s")
    return JobState.ABANDONED, reason, None


async def _expire_after(job: Job, scope: trio.CancelScope, seconds: float, step: str,
                        rule: ExitRule) -> None:
    with scope:
        await trio.sleep(seconds)
        # a resume, or the job's end, in the instant the sleep ended: the deadline is off
        if scope.cancel_called or job._outcome is not None or job.state is not JobState.PAUSED:
            return
        job._pause_timer = None
        job.hub.publish(EscalationTimedOut, step=step, rule=rule.name, action=rule.on_timeout or "abandon")
        outcome = timeout_outcome(step, rule)
        if outcome is not None:
            job._finish(*outcome)
        else:  # advance: resumed with payload None, as by resume(None)
            job._on_message(Resume(None))
