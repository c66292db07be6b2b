"""What a store holds: job records, event rows, checkpoints, leases and process groups.

Every record is a frozen attrs class.  Fields whose metadata carries ``json=True`` hold JSON-able
data (already unstructured by the caller) and are stored as JSON text by :class:`SqliteStore`.
"""

from __future__ import annotations

import json
from types import MappingProxyType
from typing import Any

import attrs
import orjson

__all__ = [
    "EVENT_ENVELOPE",
    "INTERRUPTED",
    "JSON_FIELD",
    "LIVE_STATES",
    "PLAIN_TYPES",
    "Checkpoint",
    "EventRow",
    "JobRecord",
    "Lease",
    "ProcessGroupRow",
    "StoreStats",
    "compact_json",
    "prepare_job_update",
]

EVENT_ENVELOPE = frozenset({"type", "job_id", "seq", "ts"})
"""The keys of an event's payload that its row's columns hold."""

PLAIN_TYPES = frozenset({str, int, float, bool, type(None)})
"""The classes of values that are JSON as they are (checked by exact class on hot paths)."""

_stdlib_json = json.JSONEncoder(separators=(",", ":")).encode


def compact_json(value: Any) -> str:
    """JSON text of JSON-able data, without spaces: how the store writes JSON.

    Strict JSON, by ``orjson`` (what the stdlib encoder costs in its per-call setup is about what
    one small event row costs SQLite to insert): a NaN or infinite float is written ``null``.
    What orjson refuses (an int beyond 64 bits, a non-str key, nesting deeper than 254) is
    written by the stdlib encoder; what that refuses too raises ``TypeError``/``ValueError``."""
    try:
        return orjson.dumps(value).decode()
    except TypeError:  # orjson.JSONEncodeError is one
        return _stdlib_json(value)

JSON_FIELD = "json"
"""Metadata key marking a field stored as JSON text."""


_JSON = MappingProxyType({JSON_FIELD: True})

INTERRUPTED = "interrupted"
"""The record state of a job whose runtime died while it ran (found dead by
:func:`~runtime.store.sweep_dead`); it stays so until a runtime resumes it (``resume=True``),
which makes it ``running`` again."""

LIVE_STATES = ("pending", "running", "paused", INTERRUPTED)
"""Record states of jobs that have not ended (the non-terminal ``JobState`` values, and
:data:`INTERRUPTED`): a resume looks at these."""


@attrs.frozen(kw_only=True)
class JobRecord:
    """The stored state of one job (its result record once it has finished).

    ``flow``, ``inputs``, ``outputs`` and ``resume_payload`` are JSON-able data (the flow definition
    already unstructured to a dict).  ``record`` is the recording mode (``off``, ``memory`` or
    ``durable``); ``runtime_id`` names the owning runtime; ``next_seq`` is the seq of the next event
    to record, for resume.  Times are ``time.time()`` seconds.
    """

    job_id: str
    flow_name: str
    flow: dict[str, Any] = attrs.field(metadata=_JSON)
    inputs: dict[str, Any] = attrs.field(metadata=_JSON)
    state: str
    reason: str | None = None
    error: str | None = None
    outputs: dict[str, Any] = attrs.field(factory=dict, metadata=_JSON)
    record: str = "off"
    runtime_id: str | None = None
    created_at: float
    updated_at: float
    finished_at: float | None = None
    next_seq: int = 0
    resume_payload: Any = attrs.field(default=None, metadata=_JSON)


@attrs.frozen
class EventRow:
    """One recorded job event: ``payload`` is the event unstructured to a JSON-able dict."""

    job_id: str
    seq: int
    type: str
    ts: float
    payload: dict[str, Any] = attrs.field(metadata=_JSON)


@attrs.frozen
class Checkpoint:
    """The outputs of a step's latest completed run (``iteration`` counts loops, ``attempt`` retries)."""

    job_id: str
    step: str
    outputs: dict[str, Any] = attrs.field(metadata=_JSON)
    iteration: int
    attempt: int = 1


@attrs.frozen
class Lease:
    """A runtime's claim on the store: its process (``pid`` with psutil ``create_time`` ``started``),
    and ``control``, the path of its control socket (``None``: it serves no control requests)."""

    runtime_id: str
    pid: int
    started: float
    host: str
    created_at: float
    control: str | None = None


@attrs.frozen
class ProcessGroupRow:
    """A live process group started for a job, found again by ``marker`` after a crash."""

    runtime_id: str
    job_id: str
    pgid: int
    marker: str


@attrs.frozen
class StoreStats:
    """A snapshot of a store's write counters.

    ``transactions`` committed write transactions; ``rows_written`` rows they held;
    ``pending_writes`` rows queued or in flight; ``bytes_written`` approximate payload bytes;
    ``checkpoints`` write-ahead-log checkpoints the store ran beside its writes (SQLite).
    """

    transactions: int
    rows_written: int
    pending_writes: int
    bytes_written: int
    checkpoints: int = 0


_JOB_FIELDS = frozenset(f.name for f in attrs.fields(JobRecord))


def prepare_job_update(job_id: str, fields: dict[str, Any], now: float) -> dict[str, Any]:
    """Check the field names of an ``update_job`` call; set ``updated_at`` to ``now`` unless given.

    Raises ``TypeError`` naming any field that :class:`JobRecord` does not have (or ``job_id``).
    """
    unknown = sorted(set(fields) - _JOB_FIELDS)
    if unknown or "job_id" in fields:
        bad = ", ".join(repr(name) for name in unknown or ["job_id"])
        raise TypeError(f"update_job({job_id!r}): cannot set {bad}; settable JobRecord fields are "
                        f"{', '.join(sorted(_JOB_FIELDS - {'job_id'}))}")
    if "updated_at" not in fields:
        fields = {**fields, "updated_at": now}
    return fields
