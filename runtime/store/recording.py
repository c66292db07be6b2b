"""What a recording job writes, in order: event rows, checkpoints and record updates."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import attrs

from .protocol import Store
from .records import Checkpoint, EventRow

__all__ = ["JobUpdate", "write_batch"]


@attrs.frozen
class JobUpdate:
    """A partial update of a job record, written in order with the job's events."""

    job_id: str
    fields: Mapping[str, Any]



async def write_batch(store: Store, batch: Sequence[EventRow | Checkpoint | JobUpdate]) -> None:
    """Persist a recorder batch in order: event rows together, checkpoints and updates between."""
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
    if rows:
        await store.append_events(rows)
