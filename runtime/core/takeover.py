"""Taking over the durable jobs of runtimes that died: claimed in the store, run from checkpoints."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from actors.log import get_logger

from ..flow import FlowError
from ..store import LIVE_STATES, JobRecord, lease_alive, restore, resumable, sweep_dead
from .handle import JobHandle
from .job import Job
from .recording import recording_for
from .services import JobServices
from .states import JobNotFound, JobState, JobStateError

if TYPE_CHECKING:
    from .runtime import Runtime

__all__ = ["adopt", "take_over"]

_log = get_logger("corral.runtime")


async def take_over(rt: Runtime, services: JobServices, *, paused: bool) -> list[JobHandle]:
    """Claim and run every durable job of a dead runtime (PAUSED ones only if ``paused``)."""
    await sweep_dead(rt.store, services.process.term_grace)
    live = {lease.runtime_id for lease in await rt.store.list_leases()}
    handles = []
    for rec in await resumable(rt.store, live):
        handle = await _take(rt, services, rec, paused=paused)
        if handle is not None:
            handles.append(handle)
    return handles


async def adopt(rt: Runtime, services: JobServices, job_id: str) -> JobHandle:
    """Claim and run the durable job ``job_id`` of a dead runtime (see :meth:`Runtime.adopt`)."""
    rec = await rt.store.get_job(job_id)
    if rec is None:
        raise JobNotFound(job_id)
    if rec.state not in LIVE_STATES:
        raise JobStateError(f"job {job_id} has ended ({rec.state}): there is nothing to take over")
    if rec.record != "durable":
        raise JobStateError(f"job {job_id} was not recorded durably (record={rec.record!r}): "
                            "it cannot be taken over")
    owner = {lease.runtime_id: lease for lease in await rt.store.list_leases()}.get(rec.runtime_id or "")
    if owner is not None and lease_alive(owner):
        raise JobStateError(f"job {job_id} is owned by a live runtime (pid {owner.pid} on {owner.host})")
    await sweep_dead(rt.store, services.process.term_grace)  # its processes die first
    handle = await _take(rt, services, rec)
    if handle is None:
        raise JobStateError(f"job {job_id} was taken over by another runtime first")
    return handle


async def _take(rt: Runtime, services: JobServices, rec: JobRecord, *, paused: bool = True) -> JobHandle | None:
    """Claim ``rec`` for ``rt`` and run it from its checkpoints (None: claimed elsewhere, or
    left alone because its log says it was paused and ``paused`` is False)."""
    try:
        flow, restored = await restore(rt.store, rec)
    except FlowError as exc:
        _log.error("resume_failed", job_id=rec.job_id, error=str(exc))
        await rt.store.update_job(rec.job_id, state=JobState.FAILED.value, reason="resume_failed",
                                  error=str(exc), finished_at=time.time())
        return None
    if restored.paused and not paused:
        if rec.state != JobState.PAUSED.value:  # killed before its record caught up with its log
            await rt.store.update_job(rec.job_id, state=JobState.PAUSED.value)
        return None
    if not await rt.store.claim_job(rec.job_id, rec.runtime_id, rt.id):
        return None
    job = Job(services, flow, rec.inputs, rec.job_id, recording=recording_for("durable"), restored=restored)
    rt._admit(job)
    _log.info("job_resumed", job_id=job.id, completed=sorted(restored.outputs), first_seq=restored.first_seq)
    return JobHandle(job)
