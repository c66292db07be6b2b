"""A job's result and recorded events read back from the store (``Runtime.result``, ``Runtime.events``)."""

from __future__ import annotations

from collections.abc import AsyncIterator

from ..store import LIVE_STATES, Store
from .events import Event, event_from_dict
from .recording import recording_for
from .states import JobNotFound, JobResult, JobState, JobStateError

__all__ = ["stored_events", "stored_result"]


async def stored_result(store: Store, job_id: str, live: bool) -> JobResult | None:
    """A finished job's result from its stored record; ``None`` while it has not ended (``live``:
    it is live in the asking runtime); :class:`JobNotFound` for an unknown id."""
    rec = await store.get_job(job_id)
    if rec is None:
        if live:
            return None
        raise JobNotFound(job_id)
    if rec.state in LIVE_STATES or live:
        return None
    return JobResult(job_id=rec.job_id, flow=rec.flow_name, state=JobState(rec.state), reason=rec.reason,
                     outputs=rec.outputs, error=rec.error, inputs=rec.inputs,
                     started_at=rec.created_at, finished_at=rec.finished_at)


async def stored_events(store: Store, job_id: str, from_seq: int, live_record: str | None,
                        ended_here: bool) -> AsyncIterator[Event]:
    """The job's stored events from ``from_seq``.  ``live_record``: its record mode if it is live
    in the asking runtime; ``ended_here``: it ended there (so it is known even if not stored)."""
    rec = await store.get_job(job_id)
    if rec is None:
        if live_record is None and not ended_here:
            raise JobNotFound(job_id)
        raise JobStateError(f"job {job_id!r} was not recorded (record={live_record or 'off'!r}): "
                            "its events are not in the store; spawn it with record='durable'")
    if not recording_for(rec.record).stores_events:
        raise JobStateError(f"job {job_id!r} was not recorded (record={rec.record!r}): its events "
                            "are not in the store; spawn it with record='durable'")
    for row in await store.read_events(job_id, from_seq):
        yield event_from_dict(row.payload)
