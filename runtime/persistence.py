"""How jobs meet the store: records, recorders, leases, the orphan sweep and resume.

Kept apart from :mod:`runtime.runtime` so the kernel stays about jobs and nurseries.  Everything
here runs in the owning job's nursery (the recorder) or in the runtime's service nursery (leases,
the ordered writer of process-group rows), never in a module-level registry.
"""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import attrs
import psutil
import trio

from actors.log import get_logger
from actors.process import Marker, find_marked, kill_tree
from actors.recorder import Recorder

from .events import Event, event_to_dict
from .job import JobState, StepState
from .loading import flow_from_dict
from .store import Checkpoint, EventRow, JobRecord, Lease, ProcessGroupRow, Store

if TYPE_CHECKING:
    from .job import Job
    from .runtime import Runtime

__all__ = ["INTERRUPTED", "LIVE_STATES", "JobUpdate", "Restored", "lease_alive", "make_recorder", "record_of",
           "resumable", "sweep_dead", "write_batch"]

_log = get_logger("corral.store")

INTERRUPTED = "interrupted"
"""The record state of a job whose runtime died while it ran (found dead by :func:`sweep_dead`);
it stays so until a runtime resumes it (``resume=True``), which makes it ``running`` again."""

LIVE_STATES = (JobState.PENDING.value, JobState.RUNNING.value, JobState.PAUSED.value, INTERRUPTED)
"""Record states of jobs that have not ended: a resume looks at these."""


@attrs.frozen
class JobUpdate:
    """A partial update of a job record, written in order with the job's events."""

    job_id: str
    fields: Mapping[str, Any]


@attrs.frozen
class Restored:
    """What a resumed job starts from."""

    outputs: Mapping[str, Mapping[str, Any]]
    iterations: Mapping[str, int]
    first_seq: int
    paused: bool
    resume_payload: Any
    created_at: float
    loops: Mapping[tuple[str, str], int] = attrs.field(factory=dict)  # (step, rule) -> loops taken
    abandoned: str | None = None  # an abandon rule that fired before the crash: the job ends so
    resumed: bool = False  # resumed at least once before the crash: steps reading $resume may run
    deadline: float | None = None  # the flow timeout's wall-clock deadline, from the first start


def record_of(job: Job, state: JobState, **extra: Any) -> JobRecord:
    """The job's store record.  Data is made JSON-safe for a persistent store (an in-memory store
    holds the job's own finished dicts as they are)."""
    now = time.time()
    result = job.result
    safe = _jsonable if job.runtime.persistent else _same
    return JobRecord(
        job_id=job.id, flow_name=job.flow.name, flow=job.runtime.flow_dict(job.flow), inputs=safe(job.inputs),
        state=state.value, reason=result.reason if result else None, error=result.error if result else None,
        outputs=safe(dict(result.outputs)) if result else {}, record=job.record, runtime_id=job.runtime.id,
        created_at=job.created_at, updated_at=now, finished_at=result.finished_at if result else None,
        next_seq=job.hub.next_seq, resume_payload=safe(job.resume_payload), **extra,
    )


def _same(value: Any) -> Any:
    return value


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=repr))


def event_row(event: Event) -> tuple[EventRow, int]:
    payload = event_to_dict(event)
    size = len(json.dumps(payload, default=repr))
    return EventRow(job_id=event.job_id, seq=event.seq, type=event.type, ts=event.ts, payload=payload), size


async def write_batch(store: Store, batch: list[Any]) -> None:
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


def make_recorder(job: Job) -> Recorder:
    """The recorder a job asked for: a ring (memory), or a ring plus the store (durable)."""
    store = job.runtime.store
    durable = job.record == "durable"

    async def sink(batch: list[Any]) -> None:
        await write_batch(store, batch)

    def failed(exc: BaseException) -> None:
        job.fail_on_store_error(exc)

    return Recorder(max_events=job.runtime.record_max_events, max_bytes=job.runtime.record_max_bytes,
                    sink=sink if durable else None, on_error=failed if durable else None)


def lease_alive(lease: Lease) -> bool:
    """True while the runtime that wrote ``lease`` still runs (same pid, same process start)."""
    if lease.host != socket.gethostname():
        return True  # another machine's runtime: never ours to judge
    try:
        proc = psutil.Process(lease.pid)
        return abs(proc.create_time() - lease.started) < 0.1 and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
    except psutil.AccessDenied:
        return True


def new_lease(runtime_id: str) -> Lease:
    pid = os.getpid()
    return Lease(runtime_id=runtime_id, pid=pid, started=psutil.Process(pid).create_time(),
                 host=socket.gethostname(), created_at=time.time())


async def sweep_dead(store: Store, grace: float) -> set[str]:
    """Kill the processes of runtimes whose lease is dead; forget their groups and leases; mark
    their running and pending jobs :data:`INTERRUPTED` (a paused job stays paused).

    An interrupted job's ``updated_at`` is its last sign of life (its last recorded event, or its
    record's last update), so its duration reads start -> crash.  Returns the dead runtimes' ids.
    """
    leases = await store.list_leases()
    dead = {lease.runtime_id for lease in leases if not lease_alive(lease)}
    known = {lease.runtime_id for lease in leases}
    dead |= {g.runtime_id for g in await store.list_process_groups() if g.runtime_id not in known}
    if not dead:
        return dead

    def kill() -> int:
        procs = find_marked(lambda m: m.runtime_id in dead)
        kill_tree(procs, grace)
        return len(procs)

    killed = await trio.to_thread.run_sync(kill)
    interrupted = 0
    for runtime_id in dead:
        interrupted += await _interrupt_jobs(store, runtime_id)
        await store.delete_process_groups(runtime_id)
        await store.delete_lease(runtime_id)
    _log.info("swept_dead_runtimes", runtimes=len(dead), processes=killed, interrupted_jobs=interrupted)
    return dead


async def _interrupt_jobs(store: Store, runtime_id: str) -> int:
    """Mark the running/pending jobs of the dead runtime ``runtime_id`` interrupted."""
    states = (JobState.RUNNING.value, JobState.PENDING.value)
    recs = await store.list_jobs(states=states, runtime_id=runtime_id)
    for rec in recs:
        last = rec.updated_at
        tail = await store.read_events(rec.job_id, max(rec.next_seq - 1, 0))
        if tail:
            last = max(last, tail[-1].ts)
        await store.update_job(rec.job_id, state=INTERRUPTED, updated_at=last)
    return len(recs)


async def resumable(store: Store, live_runtimes: set[str]) -> list[JobRecord]:
    """Durable jobs left RUNNING/PAUSED/PENDING (or found INTERRUPTED) by runtimes that are gone."""
    out = []
    for rec in await store.list_jobs(states=LIVE_STATES):
        if rec.record == "durable" and rec.runtime_id not in live_runtimes:
            out.append(rec)
    return list(reversed(out))  # oldest first


async def restore(store: Store, rec: JobRecord) -> tuple[Any, Restored]:
    """Where a dead runtime's durable job stood, from its event log and checkpoints.

    The log is written in seq order, so after a crash the store holds a prefix of it; replaying
    that prefix gives the step states.  A step counts as completed once its exit was resolved
    (its checkpoint is written before that); a loop resets the steps it re-runs, whose older
    checkpoints are then stale.  Outputs come from the checkpoints.
    """
    flow = flow_from_dict(rec.flow)
    checkpoints = await store.get_checkpoints(rec.job_id)
    events = await store.read_events(rec.job_id)
    first_seq = (events[-1].seq + 1) if events else rec.next_seq
    completed: dict[str, int] = {}  # step -> the iteration it completed
    resolving: dict[str, int] = {}  # completed, exit not yet resolved
    iterations: dict[str, int] = {}
    loops: dict[tuple[str, str], int] = {}
    paused, payload, abandoned = rec.state == JobState.PAUSED.value, rec.resume_payload, None
    resumed, deadline = False, None
    for row in events:
        data = row.payload
        if row.type == "job_started":
            if deadline is None:
                deadline = data.get("deadline")
        elif row.type == "step_completed":
            resolving[data["step"]] = data["iteration"]
        elif row.type == "exit_resolved" and data["step"] in resolving:
            step = data["step"]
            completed[step] = iterations[step] = resolving.pop(step)
            if data["action"] == "loop":
                rule = next(r for r in flow.step(step).exits if r.name == data["rule"])
                assert rule.target is not None
                loops[step, rule.name] = loops.get((step, rule.name), 0) + 1
                for name in flow.loop_span(step, rule.target):
                    completed.pop(name, None)
                    iterations[name] = iterations.get(name, 0) + 1
            elif data["action"] == "abandon":
                abandoned = data["rule"]
            elif data["action"] == "escalate":
                paused = True  # its JobPaused event follows; the job waits for resume()
        elif row.type == "job_paused":
            paused = True
        elif row.type == "job_resumed":
            paused, payload, resumed = False, data.get("payload"), True
    outputs = {name: cp.outputs for name, cp in checkpoints.items()
               if completed.get(name) == cp.iteration and name in flow.deps}
    restored = Restored(
        outputs=outputs, iterations=iterations, loops=loops, abandoned=abandoned,
        first_seq=first_seq, paused=paused, resume_payload=payload, created_at=rec.created_at,
        resumed=resumed, deadline=deadline,
    )
    return flow, restored


def group_row(runtime: Runtime, marker: Marker, pgid: int) -> ProcessGroupRow:
    return ProcessGroupRow(runtime_id=runtime.id, job_id=marker.job_id, pgid=pgid, marker=marker.env_value())


def step_states_of(restored: Restored) -> dict[str, StepState]:
    return {name: StepState.COMPLETED for name in restored.outputs}
