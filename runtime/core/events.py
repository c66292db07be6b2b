"""Job events and the per-job hub that fans them out to bounded subscriptions.

Every event is a frozen attrs class carrying ``job_id``, ``seq`` (0, 1, 2, ... per job) and ``ts``
(``time.time()``).  A subscription buffers at most ``maxlen`` events; when a subscriber falls
behind, the oldest events are dropped and it receives one :class:`Lagged` marker telling how many
it missed — never unbounded memory, never a stalled job.  The last event of a job,
:class:`JobFinished`, is never dropped.
"""

from __future__ import annotations

import collections
import time
from collections.abc import AsyncGenerator, Callable, Mapping
from typing import Any, ClassVar

import attrs
import cattrs
import trio

from actors.stream import Update

from ..flow import ErrorAction, ExitAction, TimeoutAction
from .states import EndState

__all__ = [
    "EVENT_TYPES",
    "AgentSession",
    "EscalationTimedOut",
    "Event",
    "EventHub",
    "ExitResolved",
    "JobFinished",
    "JobPaused",
    "JobResumed",
    "JobStarted",
    "Lagged",
    "StepCancelled",
    "StepCompleted",
    "StepFailed",
    "StepStarted",
    "StepStream",
    "event_from_dict",
    "event_to_dict",
]


StreamUpdate = Update | Mapping[str, Any]
"""A stream update as published (:data:`actors.stream.Update`), or as a dict once read back from
the store (:func:`event_from_dict` leaves stream updates as dicts)."""


@attrs.frozen(kw_only=True)
class Event:
    """Base of every job event."""

    type: ClassVar[str] = "event"
    lifecycle: ClassVar[bool] = False  # the job's state changes with it (see EventHub.on_change)
    job_id: str
    seq: int
    ts: float


@attrs.frozen(kw_only=True)
class JobStarted(Event):
    type: ClassVar[str] = "job_started"
    lifecycle: ClassVar[bool] = True
    flow: str
    inputs: Mapping[str, Any] = attrs.field(factory=dict)
    resumed: bool = False
    deadline: float | None = None  # the flow timeout as a wall-clock time, kept across resumes


@attrs.frozen(kw_only=True)
class StepStarted(Event):
    type: ClassVar[str] = "step_started"
    step: str
    attempt: int = 1
    iteration: int = 0


@attrs.frozen(kw_only=True)
class StepCompleted(Event):
    type: ClassVar[str] = "step_completed"
    step: str
    outputs: Mapping[str, Any] = attrs.field(factory=dict)
    attempt: int = 1
    iteration: int = 0


@attrs.frozen(kw_only=True)
class StepFailed(Event):
    type: ClassVar[str] = "step_failed"
    step: str
    error: str
    attempt: int = 1
    action: ErrorAction = "fail"  # what on_error decided


@attrs.frozen(kw_only=True)
class StepCancelled(Event):
    type: ClassVar[str] = "step_cancelled"
    step: str


@attrs.frozen(kw_only=True)
class ExitResolved(Event):
    type: ClassVar[str] = "exit_resolved"
    step: str
    rule: str | None  # None: no rule matched, the step advances
    action: ExitAction


@attrs.frozen(kw_only=True)
class JobPaused(Event):
    type: ClassVar[str] = "job_paused"
    lifecycle: ClassVar[bool] = True
    step: str
    rule: str
    deadline: float | None = None  # the rule's timeout as a wall-clock time (None: no deadline)


@attrs.frozen(kw_only=True)
class EscalationTimedOut(Event):
    """Nobody resumed the job before the escalate rule's deadline: ``action`` is its on_timeout."""

    type: ClassVar[str] = "escalation_timed_out"
    step: str
    rule: str
    action: TimeoutAction


@attrs.frozen(kw_only=True)
class JobResumed(Event):
    type: ClassVar[str] = "job_resumed"
    lifecycle: ClassVar[bool] = True
    payload: Any = None


@attrs.frozen(kw_only=True)
class StepStream(Event):
    """A stream update (:mod:`actors.stream`) published by a step."""

    type: ClassVar[str] = "step_stream"
    step: str
    update: StreamUpdate


@attrs.frozen(kw_only=True)
class AgentSession(Event):
    """An agent step's prompt turn runs in ACP session ``session_id`` of its agent.

    ``loaded``: re-attached with ``session/load`` (a job resumed after a crash or a drain) rather
    than opened new; ``fallback``: why the session the step had before was not reloaded.  A
    durable job's record of it is what lets the next runtime re-attach.
    """

    type: ClassVar[str] = "agent_session"
    step: str
    session_id: str
    iteration: int = 0
    loaded: bool = False
    fallback: str | None = None


@attrs.frozen(kw_only=True)
class JobFinished(Event):
    type: ClassVar[str] = "job_finished"
    lifecycle: ClassVar[bool] = True
    state: EndState
    reason: str | None = None
    error: str | None = None


@attrs.frozen
class Lagged:
    """Marker for a subscriber that fell behind: ``n`` events were dropped before the next one."""

    n: int


EVENT_TYPES: Mapping[str, type[Event]] = {
    cls.type: cls
    for cls in (JobStarted, StepStarted, StepCompleted, StepFailed, StepCancelled, ExitResolved,
                JobPaused, EscalationTimedOut, JobResumed, StepStream, AgentSession, JobFinished)
}


def _make_converter() -> cattrs.Converter:
    conv = cattrs.Converter()
    conv.register_unstructure_hook(Any, lambda v: jsonable(v))
    conv.register_structure_hook(Any, lambda v, _t: v)
    # a stream update is walked like any value (its attrs class named by "type"), and read back as a dict
    conv.register_unstructure_hook_func(lambda t: t == StreamUpdate, jsonable)
    conv.register_structure_hook_func(lambda t: t == StreamUpdate, lambda v, _t: v)
    return conv


_PLAIN = frozenset({str, int, float, bool, type(None)})


def jsonable(value: Any) -> Any:
    cls = type(value)
    if cls in _PLAIN:  # the common case first: this runs for every value of every recorded event
        return value
    fields = getattr(cls, "__attrs_attrs__", None)
    if fields is not None:
        out = {"type": cls.__name__}
        for field in fields:
            out[field.name] = jsonable(getattr(value, field.name))
        return out
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return repr(value)


_CONVERTER = _make_converter()


def event_to_dict(event: Event) -> dict[str, Any]:
    """A JSON-ready dict of ``event`` with its ``type`` (cattrs unstructure)."""
    return {"type": event.type, **_CONVERTER.unstructure(event)}


def event_from_dict(data: Mapping[str, Any]) -> Event:
    """Rebuild an event from :func:`event_to_dict`'s output (stream updates stay dicts)."""
    data = dict(data)
    cls = EVENT_TYPES[data.pop("type")]
    return _CONVERTER.structure(data, cls)


class Subscription:
    """One subscriber's bounded queue; parks on an event while empty."""

    __slots__ = ("closed", "dropped", "maxlen", "queue", "wakeup")

    def __init__(self, maxlen: int) -> None:
        self.queue: collections.deque[Event] = collections.deque()
        self.maxlen = maxlen
        self.dropped = 0
        self.closed = False
        self.wakeup: trio.Event | None = None

    def put(self, event: Event) -> None:
        if len(self.queue) >= self.maxlen:
            self.queue.popleft()
            self.dropped += 1
        self.queue.append(event)
        self._wake()

    def close(self) -> None:
        self.closed = True
        self._wake()

    def _wake(self) -> None:
        if self.wakeup is not None:
            self.wakeup.set()
            self.wakeup = None

    async def __aiter__(self) -> AsyncGenerator[Event | Lagged, None]:
        while True:
            if self.dropped:
                n, self.dropped = self.dropped, 0
                yield Lagged(n)
            elif self.queue:
                yield self.queue.popleft()
            elif self.closed:
                return
            else:
                self.wakeup = trio.Event()
                await self.wakeup.wait()
                continue
            await trio.lowlevel.checkpoint_if_cancelled()


class EventHub:
    """Assigns ``seq`` and ``ts`` and fans events out.  Synchronous and non-blocking to publish.

    ``sink`` (optional) sees every event first: the job's recorder.  ``on_change`` (optional) is
    told the job's id when a lifecycle event (started, paused, resumed, finished) is published.
    """

    def __init__(self, job_id: str, *, first_seq: int = 0, maxlen: int = 1024,
                 sink: Callable[[Event], None] | None = None,
                 on_change: Callable[[str], None] | None = None) -> None:
        self.job_id = job_id
        self.on_change = on_change  # told the job id at each lifecycle event (the runtime's JobWatch)
        self.next_seq = first_seq
        self.maxlen = maxlen
        self.sink = sink
        self.closed = False
        self._subs: set[Subscription] = set()

    def publish(self, cls: type[Event], **fields: Any) -> Event | None:
        """Build a ``cls`` event with the next seq and deliver it (the event, or ``None`` when
        nobody listens: then only its seq is taken)."""
        if self.closed:
            raise RuntimeError(f"job {self.job_id}: event published after JobFinished")
        if cls.lifecycle and self.on_change is not None:
            self.on_change(self.job_id)
        if self.sink is None and not self._subs:
            self.next_seq += 1
            if cls is JobFinished:
                self.closed = True
            return None
        event = cls(job_id=self.job_id, seq=self.next_seq, ts=time.time(), **fields)
        self.next_seq += 1
        if self.sink is not None:
            self.sink(event)
        for sub in self._subs:
            sub.put(event)
        if cls is JobFinished:
            self.close()
        return event

    def close(self) -> None:
        """No more events: every subscription ends after draining."""
        self.closed = True
        for sub in self._subs:
            sub.close()
        self._subs.clear()

    @property
    def subscribers(self) -> int:
        return len(self._subs)

    def subscribe(self, backlog: list[Event] | None = None, maxlen: int | None = None) -> Subscription:
        """A new subscription, pre-filled with ``backlog`` (replayed events)."""
        sub = Subscription(maxlen or self.maxlen)
        for event in backlog or ():
            sub.put(event)
        if self.closed:
            sub.close()
        else:
            self._subs.add(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        self._subs.discard(sub)
