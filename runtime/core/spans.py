"""A job's OpenTelemetry spans, built from its events (imported only when a runtime traces).

One :class:`JobSpans` per job is the observer of the job's :class:`~runtime.core.events.EventHub`:
it sees every event synchronously, in order, as it is delivered, and turns them into

- the job span ``job <flow>``, from ``JobStarted`` to ``JobFinished`` (``corral.outcome``,
  ``corral.reason``; status ERROR when the job FAILED), a child of the span current where the job
  was spawned;
- one child span ``step <step>`` per step attempt, from ``StepStarted`` to ``StepCompleted`` /
  ``StepFailed`` / ``StepCancelled`` (``corral.step.attempt``, ``corral.step.iteration``,
  ``corral.outcome``); a failed attempt has status ERROR, an ``exception`` event
  (``exception.type``, ``exception.message``, from the error text the event carries) and
  ``corral.step.on_error`` (what on_error decided);
- span events on the job span: ``step_retry``, ``exit_rule`` (a rule matched: its name and
  action), ``paused``, ``resumed``, ``escalation_timed_out``.

Every start and end time is the event's own ``ts``.  Inputs, outputs, resume payloads and agent
environments are never attributes.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import Span, Status, StatusCode, Tracer

from actors.log import get_logger

from .events import (
    EscalationTimedOut,
    Event,
    ExitResolved,
    JobFinished,
    JobPaused,
    JobResumed,
    JobStarted,
    StepCancelled,
    StepCompleted,
    StepFailed,
    StepStarted,
)

__all__ = ["JobSpans"]

_log = get_logger("corral.tracing")


def _ns(ts: float) -> int:
    return int(ts * 1e9)


def exception_attributes(error: str) -> dict[str, str]:
    """The ``exception`` event's attributes of an error text ``Type: message`` (or ``Type``)."""
    kind, sep, message = error.partition(": ")
    return {"exception.type": kind, "exception.message": message if sep else ""}


class JobSpans:
    """The spans of one job, fed its events.  Never raises into the job: the first failure is
    logged, and the job's later events are then ignored."""

    __slots__ = ("_attrs", "_broken", "_in_job", "_job", "_job_id", "_name", "_parent", "_steps", "_tracer")

    def __init__(self, tracer: Tracer, job_id: str, flow: str) -> None:
        self._tracer = tracer
        self._job_id = job_id
        self._name = f"job {flow}"
        self._parent = otel_context.get_current()  # where the job was spawned
        self._job: Span | None = None
        self._in_job: otel_context.Context | None = None  # the job span's context: its steps' parent
        self._broken = False
        self._attrs: dict[str, Any] = {"corral.job.id": job_id, "corral.flow": flow}
        self._steps: dict[str, Span] = {}

    def __call__(self, event: Event) -> None:
        handler = _HANDLERS.get(type(event))
        if handler is None or self._broken:
            return
        try:
            handler(self, event)
        except Exception as exc:  # tracing must never break a job
            self._broken = True
            _log.warning("tracing_failed", job_id=self._job_id, event_type=event.type, error=repr(exc))

    def _job_span(self, ts: float, resumed: bool = False) -> Span:
        if self._job is None:
            self._job = self._tracer.start_span(self._name, context=self._parent, start_time=_ns(ts),
                                                attributes={**self._attrs, "corral.job.resumed": resumed})
            self._in_job = trace.set_span_in_context(self._job)
        return self._job

    def _job_event(self, name: str, event: Event, attributes: Mapping[str, Any]) -> None:
        self._job_span(event.ts).add_event(name, {k: v for k, v in attributes.items() if v is not None},
                                           timestamp=_ns(event.ts))

    # -- handlers, one per event type ---------------------------------------------------------------

    def _started(self, event: JobStarted) -> None:
        self._job_span(event.ts, event.resumed)

    def _step_started(self, event: StepStarted) -> None:
        self._job_span(event.ts)
        stale = self._steps.pop(event.step, None)
        if stale is not None:
            stale.end(end_time=_ns(event.ts))
        self._steps[event.step] = self._tracer.start_span(
            f"step {event.step}", context=self._in_job, start_time=_ns(event.ts),
            attributes={**self._attrs, "corral.step": event.step, "corral.step.attempt": event.attempt,
                        "corral.step.iteration": event.iteration})

    def _end_step(self, step: str, outcome: str) -> Span | None:
        span = self._steps.pop(step, None)
        if span is not None:
            span.set_attribute("corral.outcome", outcome)
        return span

    def _step_completed(self, event: StepCompleted) -> None:
        span = self._end_step(event.step, "completed")
        if span is not None:
            span.end(end_time=_ns(event.ts))

    def _step_failed(self, event: StepFailed) -> None:
        span = self._end_step(event.step, "failed")
        if span is not None:
            span.set_attribute("corral.step.on_error", event.action)
            span.add_event("exception", exception_attributes(event.error), timestamp=_ns(event.ts))
            span.set_status(Status(StatusCode.ERROR, event.error))
            span.end(end_time=_ns(event.ts))
        if event.action == "retry":
            self._job_event("step_retry", event, {"corral.step": event.step, "corral.step.attempt": event.attempt,
                                                  "error": event.error})

    def _step_cancelled(self, event: StepCancelled) -> None:
        span = self._end_step(event.step, "cancelled")
        if span is not None:
            span.end(end_time=_ns(event.ts))

    def _exit_resolved(self, event: ExitResolved) -> None:
        if event.rule is not None:  # no rule matched: the step just advances, nothing to tell
            self._job_event("exit_rule", event, {"corral.step": event.step, "corral.exit.rule": event.rule,
                                                 "corral.exit.action": event.action})

    def _paused(self, event: JobPaused) -> None:
        self._job_event("paused", event, {"corral.step": event.step, "corral.exit.rule": event.rule})

    def _resumed(self, event: JobResumed) -> None:
        self._job_event("resumed", event, {})

    def _timed_out(self, event: EscalationTimedOut) -> None:
        self._job_event("escalation_timed_out", event, {"corral.step": event.step, "corral.exit.rule": event.rule,
                                                        "corral.exit.action": event.action})

    def _finished(self, event: JobFinished) -> None:
        for step in list(self._steps):  # none is left open in practice: StepCancelled comes first
            span = self._end_step(step, "cancelled")
            if span is not None:
                span.end(end_time=_ns(event.ts))
        span = self._job_span(event.ts)  # a job that never started (cancelled while queued): an instant
        span.set_attribute("corral.outcome", event.state)
        if event.reason is not None:
            span.set_attribute("corral.reason", event.reason)
        if event.state == "failed":
            span.set_status(Status(StatusCode.ERROR, event.error or event.reason))
        span.end(end_time=_ns(event.ts))
        self._job = self._in_job = None


_HANDLERS: Mapping[type[Event], Callable[[JobSpans, Any], None]] = {
    JobStarted: JobSpans._started,
    StepStarted: JobSpans._step_started,
    StepCompleted: JobSpans._step_completed,
    StepFailed: JobSpans._step_failed,
    StepCancelled: JobSpans._step_cancelled,
    ExitResolved: JobSpans._exit_resolved,
    JobPaused: JobSpans._paused,
    JobResumed: JobSpans._resumed,
    EscalationTimedOut: JobSpans._timed_out,
    JobFinished: JobSpans._finished,
}
