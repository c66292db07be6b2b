"""A job's row in the store, built from the live job when it is written."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from ..store import JobRecord
from .events import jsonable
from .states import JobState

if TYPE_CHECKING:
    from .job import Job

__all__ = ["job_record"]


def job_record(job: Job, state: JobState) -> JobRecord:
    """``job``'s store record in ``state``; its data JSON-safe for a persistent store (an in-memory
    store keeps the job's own dicts).  Only a terminal state has a ``finished_at``: a drained job
    (INTERRUPTED) is stored live and ownerless, for the next runtime to resume."""
    result = job.result
    released = result is not None and result.state is JobState.INTERRUPTED
    safe = jsonable if job.services.store.persistent else _same
    return JobRecord(
        job_id=job.id, flow_name=job.flow.name, flow=job.services.flow_dict(job.flow),
        inputs=safe(job.inputs), state=state.value, reason=result.reason if result else None,
        error=result.error if result else None, outputs=safe(dict(result.outputs)) if result else {},
        record=job.record, runtime_id=None if released else job.services.runtime_id, created_at=job.created_at,
        updated_at=time.time(), finished_at=result.finished_at if result and state.terminal else None,
        next_seq=job.hub.next_seq, resume_payload=safe(job.resume_payload),
    )


def _same(value: Any) -> Any:
    return value
