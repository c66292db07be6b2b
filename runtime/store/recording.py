"""What a recording job writes, in order: event rows, checkpoints, record updates and records."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

import attrs

from .protocol import Store
from .records import Checkpoint, EventRow, JobRecord, compact_json

__all__ = ["EncodedEvent", "JobUpdate", "write_batch"]


@attrs.frozen
class JobUpdate:
    """A partial update of a job record, written in order with the job's events."""

    job_id: str
    fields: Mapping[str, Any]


@attrs.frozen
class EncodedEvent:
    """An event row whose payload is serialised once, when it is recorded: ``bare`` is the payload
    without the type, job_id, seq and ts its columns hold, ``text`` its JSON (what a SQLite
    store writes as it is; another store gets :meth:`row`)."""

    job_id: str
    seq: int
    type: str
    ts: float
    bare: Mapping[str, Any]
    text: str

    @classmethod
    def of(cls, job_id: str, seq: int, type_: str, ts: float, bare: Mapping[str, Any]) -> EncodedEvent:
        """The row of an event with this envelope and ``bare`` payload (JSON-able), serialised."""
        return cls(job_id, seq, type_, ts, bare, compact_json(bare))

    def row(self) -> EventRow:
        """The :class:`EventRow` it is: the payload with its envelope."""
        payload = {"type": self.type, "job_id": self.job_id, "seq": self.seq, "ts": self.ts, **self.bare}
        return EventRow(self.job_id, self.seq, self.type, self.ts, payload)


Item = EventRow | EncodedEvent | Checkpoint | JobUpdate | JobRecord


async def write_batch(store: Store, batch: Sequence[Item]) -> None:
    """Persist a recorder batch in order.

    A store with a ``write_records(batch)`` method (:class:`~runtime.store.SqliteStore`: one
    transaction) gets the batch whole; any other gets the protocol's calls in order, event rows
    together and checkpoints, updates and records between them.
    """
    whole: Callable[[Sequence[Item]], Awaitable[None]] | None = getattr(store, "write_records", None)
    if whole is not None:
        await whole(batch)
        return
    rows: list[EventRow] = []
    for item in batch:
        if isinstance(item, EventRow | EncodedEvent):
            rows.append(item.row() if isinstance(item, EncodedEvent) else item)
            continue
        if rows:
            await store.append_events(rows)
            rows = []
        if isinstance(item, Checkpoint):
            await store.put_checkpoint(item)
        elif isinstance(item, JobUpdate):
            await store.update_job(item.job_id, **item.fields)
        elif isinstance(item, JobRecord):
            await store.put_job(item)
    if rows:
        await store.append_events(rows)
