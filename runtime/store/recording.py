"""What a recording job writes, in order: event rows, checkpoints, record updates and records."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

import attrs

from .protocol import Store
from .records import Checkpoint, EventRow, JobRecord

__all__ = ["JobUpdate", "write_batch"]


@attrs.frozen
class JobUpdate:
    """A partial update of a job record, written in order with the job's events."""

    job_id: str
    fields: Mapping[str, Any]


Item = EventRow | Checkpoint | JobUpdate | JobRecord


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
        if isinstance(item, EventRow):
            rows.append(item)
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
