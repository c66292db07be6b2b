"""How big an event is, about, without serialising it: what a recording ring counts against its
``max_bytes`` (``record="memory"`` sizes every event, so this is its hot path)."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from actors.stream import Delta, TextDelta

from ..store import PLAIN_TYPES
from .events import (
    Event,
    JobFinished,
    JobResumed,
    JobStarted,
    Pending,
    StepCompleted,
    StepFailed,
    StepStream,
)

__all__ = ["ENVELOPE_BYTES", "TEXT_DELTA_BYTES", "approx_size", "event_size"]

ENVELOPE_BYTES = 96
"""About the length of an event's type, job_id, seq, ts and punctuation as JSON."""
TEXT_DELTA_BYTES = ENVELOPE_BYTES + 64
"""About the length of a stream's plain text delta as JSON, without its step name and text."""


_DATA_FIELDS: Mapping[type[Event], tuple[str, ...]] = {
    JobStarted: ("inputs",), StepCompleted: ("outputs",), StepFailed: ("error",), JobResumed: ("payload",),
    JobFinished: ("reason", "error"),
}


def event_size(event: Event | Pending) -> int:
    """About the length of ``event`` as JSON, without serialising it (what a ring counts against
    its ``max_bytes``): a text delta costs its text, anything else a walk of its fields."""
    if type(event) is tuple:
        cls: type[Any] = event[0]
        fields = event[3]
        if cls is StepStream:  # the hot path: a stream delta nobody has built yet
            update = fields["update"]
            if type(update) is Delta and type(update.delta) is TextDelta and update.metadata is None:
                return TEXT_DELTA_BYTES + len(fields["step"]) + len(update.delta.text)
        get: Callable[[str], Any] = fields.get
    else:
        cls = type(event)
        get = functools.partial(getattr, event)
    if cls is StepStream:
        update = get("update")
        if type(update) is Delta and type(update.delta) is TextDelta and update.metadata is None:
            return TEXT_DELTA_BYTES + len(get("step")) + len(update.delta.text)
        return ENVELOPE_BYTES + 64 + approx_size(update)
    # the names, states and numbers of the other events are small: only their data is walked
    return ENVELOPE_BYTES + 64 + sum(approx_size(get(name)) for name in _DATA_FIELDS.get(cls, ()))


def approx_size(value: Any) -> int:
    """About the length of ``value`` as JSON (strings by length, numbers as 8, containers and
    attrs instances by their items), without serialising it."""
    cls = type(value)
    if cls is str:
        return len(value) + 2
    if cls in PLAIN_TYPES:
        return 8
    fields = getattr(cls, "__attrs_attrs__", None)
    if fields is not None:
        return 2 + _items_size((f.name, getattr(value, f.name)) for f in fields)
    if isinstance(value, Mapping):
        return 2 + _items_size(value.items())
    if isinstance(value, list | tuple | set | frozenset):
        return 2 + _items_size(("", v) for v in value)
    return 16


def _items_size(items: Iterable[tuple[Any, Any]]) -> int:
    total = 0
    for key, v in items:
        t = type(v)
        total += (len(key) if type(key) is str else 8) + 4 + (len(v) + 2 if t is str else 8 if t in PLAIN_TYPES else approx_size(v))
    return total
