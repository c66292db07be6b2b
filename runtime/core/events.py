"""Job events: what a job publishes, as frozen attrs classes, and their JSON-able form.

Every event is a frozen attrs class carrying ``job_id``, ``seq`` (0, 1, 2, ... per job) and ``ts``
(``time.time()``).  A subscription buffers at most ``maxlen`` events; when a subscriber falls
behind, the oldest events are dropped and it receives one :class:`Lagged` marker telling how many
it missed — never unbounded memory, never a stalled job.  The last event of a job,
:class:`JobFinished`, is never dropped.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, ClassVar

import attrs
import cattrs

from actors.stream import Update

from ..flow import ErrorAction, ExitAction, TimeoutAction
from ..store import EVENT_ENVELOPE, PLAIN_TYPES
from .states import EndState
from .subscription import Lagged

__all__ = [
    "EVENT_TYPES",
    "AgentSession",
    "AgentUpdate",
    "EscalationTimedOut",
    "Event",
    "ExitResolved",
    "JobFinished",
    "JobPaused",
    "JobResumed",
    "JobStarted",
    "Lagged",
    "Pending",
    "StepCancelled",
    "StepCompleted",
    "StepFailed",
    "StepStarted",
    "StepStream",
    "bare_payload",
    "event_from_dict",
    "event_to_dict",
    "materialize",
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
class AgentUpdate(Event):
    """An ACP ``session/update`` of an agent step that is not part of its message stream: the
    agent's plan, available commands, mode, config options, session info, usage, notices,
    compaction, and each tool call's status.

    ``kind`` is the update's ``sessionUpdate`` (``plan``, ``usage_update``, ...); ``data`` its
    other fields as JSON-ready values, bounded (long strings and lists are cut, ``_meta`` dropped;
    see :mod:`runtime.core.updates`).
    """

    type: ClassVar[str] = "agent_update"
    step: str
    kind: str
    data: Mapping[str, Any] = attrs.field(factory=dict)


@attrs.frozen(kw_only=True)
class JobFinished(Event):
    type: ClassVar[str] = "job_finished"  # its runtime's watch hears of it once the job is forgotten there
    state: EndState
    reason: str | None = None
    error: str | None = None


EVENT_TYPES: Mapping[str, type[Event]] = {
    cls.type: cls
    for cls in (JobStarted, StepStarted, StepCompleted, StepFailed, StepCancelled, ExitResolved,
                JobPaused, EscalationTimedOut, JobResumed, StepStream, AgentSession, AgentUpdate, JobFinished)
}


_BARE_FIELDS: Mapping[type[Event], tuple[str, ...]] = MappingProxyType({
    cls: tuple(f.name for f in attrs.fields(cls) if f.name not in EVENT_ENVELOPE) for cls in EVENT_TYPES.values()
})


def bare_payload(event: Event) -> dict[str, Any]:
    """:func:`event_to_dict` of ``event`` without its type, job_id, seq and ts: its fields made
    JSON-able, read directly (no converter dispatch: this runs for every durable event)."""
    return {name: jsonable(getattr(event, name)) for name in _BARE_FIELDS[type(event)]}


def _make_converter() -> cattrs.Converter:
    """Reads event dicts back: fields typed ``Any`` as they are, a stream update as its dict."""
    conv = cattrs.Converter()
    conv.register_structure_hook(Any, lambda v, _t: v)
    conv.register_structure_hook_func(lambda t: t == StreamUpdate, lambda v, _t: v)
    return conv


def jsonable(value: Any) -> Any:
    cls = type(value)
    if cls in PLAIN_TYPES:  # the common case first: this runs for every value of every recorded event
        return value
    if cls is dict:  # then plain containers, before the attrs and ABC checks
        return {str(k): jsonable(v) for k, v in value.items()}
    if cls is list:
        return [jsonable(v) for v in value]
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

Pending = tuple[type[Event], int, float, dict[str, Any]]
"""An event kept unbuilt: its class, seq, ts and fields (:func:`materialize` builds it)."""


def materialize(job_id: str, item: Event | Pending) -> Event:
    """The event ``item`` is (an :class:`Event` as it is, a :data:`Pending` built)."""
    if isinstance(item, Event):
        return item
    cls, seq, ts, fields = item
    return cls(job_id=job_id, seq=seq, ts=ts, **fields)


def event_to_dict(event: Event) -> dict[str, Any]:
    """A JSON-ready dict of ``event``: its ``type``, ``job_id``, ``seq``, ``ts`` and fields (each
    made JSON-able by :func:`jsonable`; an attrs value becomes a dict naming its class)."""
    return {"type": event.type, "job_id": event.job_id, "seq": event.seq, "ts": event.ts, **bare_payload(event)}


def event_from_dict(data: Mapping[str, Any]) -> Event:
    """Rebuild an event from :func:`event_to_dict`'s output (stream updates stay dicts)."""
    data = dict(data)
    cls = EVENT_TYPES[data.pop("type")]
    return _CONVERTER.structure(data, cls)
