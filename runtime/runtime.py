"""The runtime: a root nursery that holds job actors and nothing else.

``async with open_runtime() as rt`` opens the root nursery.  ``rt.spawn(flow)`` starts a job actor
in it (or queues it, first in first out, beyond ``max_running_jobs``).  The live-job index holds
live jobs only; a finished job leaves behind its :class:`~runtime.job.JobResult` in a bounded LRU.
Leaving the block cancels every live job with reason ``"shutdown"`` and waits for their nurseries
to close.
"""

from __future__ import annotations

import collections
import json
import math
import os
import shutil
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import attrs
import psutil
import trio

from actors._groups import lone_exception
from actors.acp import AgentAdapter, PermissionPolicy
from actors.log import get_logger
from actors.process import Marker, find_marked

from .events import Event, event_from_dict
from .executors import executor_for
from .flow import AgentSpec, Flow, FlowError, Step
from .job import Job, JobExistsError, JobHandle, JobNotFound, JobResult, JobState, JobStateError
from .loading import flow_to_dict
from .persistence import (
    LIVE_STATES,
    JobUpdate,
    event_row,
    group_row,
    make_recorder,
    new_lease,
    record_of,
    restore,
    resumable,
    sweep_dead,
)
from .store import Checkpoint, MemoryStore, SqliteStore, Store, StoreError

_log = get_logger("corral.runtime")


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=repr))

__all__ = ["RECORD_MODES", "Runtime", "RuntimeStats", "open_runtime"]

RECORD_MODES = ("off", "memory", "durable")


@attrs.frozen
class RuntimeStats:
    """A snapshot of what the runtime holds, counted from the live objects themselves."""

    live_jobs: int
    pending_jobs: int
    tasks: int
    processes: int
    streams: int
    recorders: int
    recorded_bytes: int
    results: int


def count_tasks(task: trio.lowlevel.Task) -> int:
    """``task`` plus every task below it in trio's task tree."""
    n = 1
    for nursery in task.child_nurseries:
        for child in nursery.child_tasks:
            n += count_tasks(child)
    return n


class Runtime:
    """Spawn, find and count jobs.  Create with :func:`open_runtime`."""

    def __init__(self, store: Store, *, max_running_jobs: int | None, max_results: int,
                 workspace: Path | None, stdin_grace: float = 0.5, term_grace: float = 2.0,
                 record_max_events: int = 1000, record_max_bytes: int = 1 << 20) -> None:
        if max_running_jobs is not None and max_running_jobs < 1:
            raise ValueError("max_running_jobs must be >= 1 or None")
        self.id = uuid.uuid4().hex
        self.max_running_jobs = max_running_jobs
        self.max_results = max_results
        self.store = store
        self.persistent = not isinstance(store, MemoryStore)
        self.record_max_events = record_max_events
        self.record_max_bytes = record_max_bytes
        self._nursery: trio.Nursery = None  # type: ignore[assignment]  # set by open_runtime
        self._group_ops: trio.MemorySendChannel[Any] | None = None
        self._flow_dicts: collections.OrderedDict[int, tuple[Flow, dict[str, Any]]] = collections.OrderedDict()
        self._live: dict[str, Job] = {}
        self._pending: collections.deque[Job] = collections.deque()
        self._running = 0
        self._results: collections.OrderedDict[str, JobResult] = collections.OrderedDict()
        self._closing = False
        self._workspace_root = workspace
        self._own_workspace: Path | None = None
        self._pid = os.getpid()
        self._started = psutil.Process(self._pid).create_time()
        self.process_options: dict[str, float] = {"stdin_grace": stdin_grace, "term_grace": term_grace}

    # -- public API -------------------------------------------------------------------------------

    async def spawn(self, flow: Flow, inputs: Mapping[str, Any] | None = None, *,
                    record: str = "off", job_id: str | None = None) -> JobHandle:
        """Start a job of ``flow`` (or queue it as PENDING when ``max_running_jobs`` are running).

        ``inputs`` must fit the flow (see :meth:`Flow.bind_inputs`), else :class:`InputError` is
        raised before anything runs or is stored.  ``job_id`` is an idempotency key: an id that is
        live, among the kept results, or in the store raises :class:`JobExistsError` and leaves
        what is stored untouched.

        The job's first event is published after the caller's next checkpoint, so iterating
        ``handle.events()`` right away sees every event.
        """
        await trio.lowlevel.checkpoint()
        if self._closing:
            raise RuntimeError("the runtime is shutting down")
        if not isinstance(flow, Flow):
            raise TypeError(f"spawn() needs a Flow, got {type(flow).__name__}")
        if record not in RECORD_MODES:
            raise ValueError(f"record must be one of {', '.join(RECORD_MODES)}, got {record!r}")
        bound = flow.bind_inputs(inputs)
        if job_id is None:
            job_id = uuid.uuid4().hex
        else:
            if not isinstance(job_id, str) or not job_id:
                raise ValueError(f"job_id must be a non-empty string, got {job_id!r}")
            self._refuse_existing(job_id)
            if await self.store.get_job(job_id) is not None:
                raise JobExistsError(job_id, "in the store")
            self._refuse_existing(job_id)  # spawned by another task while the store was read
        job = Job(self, flow, bound, job_id, record=record)
        self._live[job_id] = job
        if self.max_running_jobs is None or self._running < self.max_running_jobs:
            self._launch(job)
        else:
            self._pending.append(job)
        return JobHandle(job)

    def _refuse_existing(self, job_id: str) -> None:
        if job_id in self._live:
            raise JobExistsError(job_id, "live in this runtime")
        if job_id in self._results:
            raise JobExistsError(job_id, "finished in this runtime")

    def get(self, job_id: str) -> JobHandle | None:
        """The handle of a live (pending, running or paused) job, else ``None``."""
        job = self._live.get(job_id)
        return None if job is None else JobHandle(job)

    def jobs(self) -> list[JobHandle]:
        """Handles of every live job, in spawn order."""
        return [JobHandle(j) for j in self._live.values()]

    async def result(self, job_id: str) -> JobResult | None:
        """The result of a finished job: from memory, else from the store; ``None`` while the job
        has not ended.  Raises :class:`JobNotFound` (a ``KeyError``) for an unknown id."""
        res = self._results.get(job_id)
        if res is not None:
            self._results.move_to_end(job_id)
            await trio.lowlevel.checkpoint()
            return res
        rec = await self.store.get_job(job_id)
        if rec is None:
            if job_id in self._live:
                return None
            raise JobNotFound(job_id)
        if rec.state in LIVE_STATES or job_id in self._live:
            return None
        return JobResult(job_id=rec.job_id, flow=rec.flow_name, state=JobState(rec.state), reason=rec.reason,
                         outputs=rec.outputs, error=rec.error, inputs=rec.inputs,
                         started_at=rec.created_at, finished_at=rec.finished_at)

    async def events(self, job_id: str, from_seq: int = 0) -> AsyncIterator[Event]:
        """Replay a job's recorded events from the store, in seq order (durable jobs).

        Raises :class:`JobNotFound` for an unknown id, and :class:`JobStateError` for a job that
        was not recorded durably (its events were never stored: use ``handle.events()``).
        """
        rec = await self.store.get_job(job_id)
        if rec is None:
            live = self._live.get(job_id)
            if live is None and job_id not in self._results:
                raise JobNotFound(job_id)
            raise JobStateError(f"job {job_id!r} was not recorded (record={live.record if live else 'off'!r}): "
                                "its events are not in the store; spawn it with record='durable'")
        if rec.record != "durable":
            raise JobStateError(f"job {job_id!r} was not recorded (record={rec.record!r}): its events "
                                "are not in the store; spawn it with record='durable'")
        for row in await self.store.read_events(job_id, from_seq):
            yield event_from_dict(row.payload)

    def stats(self) -> RuntimeStats:
        """Count what live jobs hold: trio tasks, processes, streams, recorders."""
        tasks = streams = recorders = recorded = 0
        with_processes = False
        for job in self._live.values():
            if job.task is not None and job.result is None:
                tasks += count_tasks(job.task)
            with_processes = with_processes or bool(job.process_groups)
            streams += job.open_streams()
            if job.recorder is not None:
                recorders += 1
                recorded += job.recorder.bytes
        # one scan of the process table for all jobs: every live process carrying our marker
        processes = len(find_marked(lambda m: m.runtime_id == self.id)) if with_processes else 0
        return RuntimeStats(
            live_jobs=len(self._live) - len(self._pending), pending_jobs=len(self._pending),
            tasks=tasks, processes=processes, streams=streams, recorders=recorders,
            recorded_bytes=recorded, results=len(self._results),
        )

    @property
    def nursery_tasks(self) -> int:
        """Tasks directly in the root nursery: one per running job, nothing else."""
        return len(self._nursery.child_tasks)

    # -- used by jobs -------------------------------------------------------------------------------

    def _launch(self, job: Job) -> None:
        self._running += 1
        self._nursery.start_soon(job.run, name=f"corral.job:{job.id}")

    def marker(self, job_id: str) -> Marker:
        """The environment marker of a new process group of ``job_id``."""
        return Marker(self.id, job_id, runtime_pid=self._pid, runtime_started=self._started)

    def make_adapter(self, job: Job, spec: AgentSpec) -> AgentAdapter:
        return AgentAdapter(
            spec.command, marker=self.marker(job.id), workspace=job.workspace(), env=dict(spec.env),
            permissions=PermissionPolicy(spec.permissions), on_group=job.register_group,
            **self.process_options,
        )

    def executor_for(self, step: Step) -> Any:
        return executor_for(step)

    async def start_job_resources(self, job: Job) -> None:
        """Start the job's recorder (if it asked for one) in its nursery; write its record."""
        if job.record == "off":
            return  # nothing to start; the job's own run provides the checkpoints
        recorder = make_recorder(job)
        await job.nursery.start(recorder.run)
        job.recorder = recorder

        def sink(event: Event) -> None:
            row, size = event_row(event)
            recorder.record(event, row if job.record == "durable" else None, size)

        job.hub.sink = sink
        if job.record == "durable":
            try:
                await self.store.put_job(record_of(job, JobState.RUNNING))
            except StoreError as exc:
                job.fail_on_store_error(exc)

    def step_checkpoint(self, job: Job, step: str, outputs: Mapping[str, Any], iteration: int,
                        attempt: int) -> None:
        """A step completed: a durable job checkpoints its outputs (written in order with events)."""
        if job.record == "durable" and job.recorder is not None:
            job.recorder.write(Checkpoint(job_id=job.id, step=step, outputs=_jsonable(dict(outputs)),
                                          iteration=iteration, attempt=attempt))

    def job_state_changed(self, job: Job) -> None:
        if job.record == "durable" and job.recorder is not None:
            job.recorder.write(JobUpdate(job.id, {"state": job.state.value,
                                                  "resume_payload": _jsonable(job.resume_payload)}))

    def replay_source(self, job: Job) -> tuple[list[Event] | None, Any]:
        """(backlog, prefetch) for ``events(replay=True)``: the ring, or the store for durable jobs."""
        recorder = job.recorder
        if job.record == "durable":

            async def prefetch(before: int) -> list[Event]:
                if recorder is not None:
                    await recorder.flush()
                return [event_from_dict(row.payload) for row in await self.store.read_events(job.id)
                        if row.seq < before]

            return None, prefetch
        return (recorder.backlog() if recorder is not None else None), None

    def flow_dict(self, flow: Flow) -> dict[str, Any]:
        """``flow_to_dict(flow)``, cached for the flows most recently spawned."""
        key = id(flow)
        hit = self._flow_dicts.get(key)
        if hit is not None and hit[0] is flow:
            self._flow_dicts.move_to_end(key)
            return hit[1]
        data = flow_to_dict(flow)
        self._flow_dicts[key] = (flow, data)
        while len(self._flow_dicts) > 64:
            self._flow_dicts.popitem(last=False)
        return data

    def group_changed(self, job: Job, group: Any, live: bool) -> None:
        """A process group of ``job`` started or ended: kept in the store for the orphan sweep."""
        if self._group_ops is None:
            return
        op = ("put", group_row(self, group.marker, group.pgid)) if live else ("delete", group.marker.env_value())
        try:
            self._group_ops.send_nowait(op)
        except (trio.WouldBlock, trio.ClosedResourceError):
            _log.warning("process_group_row_dropped", job_id=job.id)

    async def _write_groups(self, receive: trio.MemoryReceiveChannel[Any]) -> None:
        async with receive:
            async for op, value in receive:
                try:
                    if op == "put":
                        await self.store.put_process_group(value)
                    else:
                        await self.store.delete_process_group(value)
                except StoreError as exc:
                    _log.warning("process_group_row_failed", error=str(exc))

    def workspace_for(self, job_id: str) -> Path:
        if self._workspace_root is None:
            if self._own_workspace is None:
                self._own_workspace = Path(tempfile.mkdtemp(prefix=f"corral-{self.id[:8]}-"))
            root = self._own_workspace
        else:
            root = self._workspace_root
        path = root / job_id
        path.mkdir(parents=True, exist_ok=True)
        return path

    async def job_finished(self, job: Job) -> None:
        """Forget a finished job: keep only its result (bounded LRU), complete in the store
        (shielded: a job cancelled by shutdown is still recorded)."""
        assert job.result is not None
        if self.persistent or job.record != "off":
            # complete in the store; an in-memory runtime's unrecorded jobs live on in the LRU only
            with trio.CancelScope(shield=True):
                if job.recorder is not None and job.record == "durable":
                    await job.recorder.flush()  # the last events, JobFinished included
                try:
                    await self.store.put_job(record_of(job, job.result.state))
                except StoreError as exc:
                    _log.error("job_record_failed", job_id=job.id, error=str(exc))
        if self._live.pop(job.id, None) is None:
            return
        if job.task is not None:
            self._running -= 1
        self._results[job.id] = job.result
        while len(self._results) > self.max_results:
            self._results.popitem(last=False)
        while self._pending and (self.max_running_jobs is None or self._running < self.max_running_jobs):
            if self._closing:
                break
            self._launch(self._pending.popleft())

    def drop_pending(self, job: Job) -> bool:
        """Remove a queued job before it starts; False if it is not queued."""
        try:
            self._pending.remove(job)
        except ValueError:
            return False
        return True

    async def _shutdown(self) -> None:
        self._closing = True
        while self._pending:
            await self._pending.popleft().finish_unstarted(JobState.CANCELLED, "shutdown")
        for job in list(self._live.values()):
            job.cancel_nowait("shutdown")

    async def _open(self, services: trio.Nursery, resume: bool) -> None:
        if not self.persistent:
            await trio.lowlevel.checkpoint()
            return
        await self.store.put_lease(new_lease(self.id))
        await sweep_dead(self.store, self.process_options["term_grace"])
        send, receive = trio.open_memory_channel[Any](math.inf)
        self._group_ops = send
        services.start_soon(self._write_groups, receive)

    async def _resume(self) -> None:
        """Re-spawn durable jobs whose runtime is dead; completed steps come from checkpoints."""
        live = {lease.runtime_id for lease in await self.store.list_leases()}
        for rec in await resumable(self.store, live):
            try:
                flow, restored = await restore(self.store, rec)
            except FlowError as exc:
                _log.error("resume_failed", job_id=rec.job_id, error=str(exc))
                await self.store.update_job(rec.job_id, state=JobState.FAILED.value, reason="resume_failed",
                                            error=str(exc), finished_at=time.time())
                continue
            await self.store.update_job(rec.job_id, runtime_id=self.id)
            job = Job(self, flow, rec.inputs, rec.job_id, record="durable", restored=restored)
            self._live[job.id] = job
            if self.max_running_jobs is None or self._running < self.max_running_jobs:
                self._launch(job)
            else:
                self._pending.append(job)
            _log.info("job_resumed", job_id=job.id, completed=sorted(restored.outputs), first_seq=restored.first_seq)

    async def _aclose(self) -> None:
        if self._group_ops is not None:
            self._group_ops.close()
        if self.persistent:
            try:
                await self.store.delete_lease(self.id)
            except StoreError as exc:
                _log.warning("lease_release_failed", error=str(exc))
        if self._own_workspace is not None:
            await trio.to_thread.run_sync(shutil.rmtree, self._own_workspace, True)
            self._own_workspace = None


@asynccontextmanager
async def open_runtime(*, max_running_jobs: int | None = None, max_results: int = 10_000,
                       store: str | Path | Store | None = None, resume: bool = False,
                       workspace: str | Path | None = None, stdin_grace: float = 0.5,
                       term_grace: float = 2.0, record_max_events: int = 1000,
                       record_max_bytes: int = 1 << 20, cluster: Any = None) -> AsyncIterator[Runtime]:
    """Open a runtime: the root nursery of every job it spawns.

    ``store``: a path (an embedded :class:`~runtime.store.SqliteStore`), a
    :class:`~runtime.store.Store`, or ``None`` for a bounded :class:`~runtime.store.MemoryStore`.
    With a persistent store the runtime holds a lease in it, and at start kills the processes of
    runtimes whose lease is dead (the orphan sweep); ``resume=True`` also re-spawns their durable
    jobs that were RUNNING, PAUSED or PENDING.

    ``workspace``: the directory under which each job gets ``<job_id>/`` (default: a temporary
    directory removed when the runtime closes).  ``stdin_grace``/``term_grace``: how long a process
    group gets after stdin closes, then after SIGTERM, before SIGKILL.  ``record_max_events`` /
    ``record_max_bytes`` bound each recording job's in-memory ring.

    ``cluster``: a :class:`runtime.cluster.RayCluster` runs the jobs on Ray host actors, each host
    an embedded runtime like this one (``pip install 'corral[ray]'``); the API is the same.  There
    ``store`` must be a path, which each host opens as its own :class:`~runtime.store.SqliteStore`;
    ``resume`` and ``max_running_jobs`` are refused (see :class:`~runtime.cluster.RayCluster`).

    Leaving the block cancels every live job (state CANCELLED, reason ``"shutdown"``) and returns
    once all their nurseries have closed.
    """
    if cluster is not None:
        from .cluster import open_cluster_runtime

        if max_running_jobs is not None:
            raise ValueError("max_running_jobs: on a cluster the bound is RayCluster(jobs_per_host=...)")
        if resume:
            raise ValueError("resume: not supported on a cluster; a named RayCluster lets a new "
                             "controller adopt the jobs its hosts still run")
        if store is not None and not isinstance(store, str | os.PathLike):
            raise TypeError("store: on a cluster give a path (each host opens its own SqliteStore "
                            f"there), not a {type(store).__name__} object")
        async with open_cluster_runtime(cluster, stdin_grace=stdin_grace, term_grace=term_grace,
                                        workspace=workspace, max_results=max_results,
                                        store=None if store is None else os.fspath(store),
                                        record_max_events=record_max_events,
                                        record_max_bytes=record_max_bytes) as crt:
            yield crt  # type: ignore[misc]
        return
    if store is None:
        store_obj: Store = MemoryStore()
    elif isinstance(store, str | os.PathLike):
        store_obj = SqliteStore(store)
    else:
        store_obj = store
    rt = Runtime(store_obj, max_running_jobs=max_running_jobs, max_results=max_results,
                 workspace=None if workspace is None else Path(workspace),
                 stdin_grace=stdin_grace, term_grace=term_grace,
                 record_max_events=record_max_events, record_max_bytes=record_max_bytes)
    body_error: BaseException | None = None
    try:
        async with store_obj, trio.open_nursery() as services:
            await rt._open(services, resume)
            try:
                async with trio.open_nursery() as nursery:
                    rt._nursery = nursery
                    if resume:
                        await rt._resume()
                    try:
                        yield rt
                    except BaseException as exc:
                        body_error = exc
                        raise
                    finally:
                        with trio.CancelScope(shield=True):
                            await rt._shutdown()
            finally:
                with trio.CancelScope(shield=True):
                    await rt._aclose()
    except BaseExceptionGroup as group:
        # Jobs never let errors escape into the root nursery, so a group here only wraps what the
        # body of the ``async with`` raised: hand that back unwrapped.
        if body_error is not None and lone_exception(group) is body_error:
            raise body_error from None
        raise
