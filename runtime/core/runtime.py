"""The runtime: a root nursery that holds job actors and nothing else.

``async with open_runtime() as rt`` opens the root nursery.  ``rt.spawn(flow)`` starts a job actor
in it (or queues it, first in first out, beyond ``max_running_jobs``).  The live-job index holds
live jobs only; a finished job leaves behind its :class:`~runtime.JobResult` in a bounded LRU.
Leaving the block cancels every live job with reason ``"shutdown"`` and waits for their nurseries
to close.  Jobs reach the runtime only through their :class:`~runtime.core.services.JobServices`.
"""

from __future__ import annotations

import collections
import math
import os
import shutil
import uuid
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psutil
import trio

from actors._groups import lone_exception
from actors.log import get_logger

from ..flow import Flow
from ..flow.secrets import require_env_from
from ..store import (
    MemoryStore,
    SqliteStore,
    Store,
    StoreError,
    new_lease,
    sweep_dead,
)
from . import takeover
from .control import ControlServer, serve_control
from .drain import drain as drain_jobs
from .events import Event
from .handle import JobHandle
from .job import Job
from .recording import RECORD_MODES, RecordLimits, RecordMode, recording_for
from .replay import stored_events, stored_result
from .services import GroupOp, JobServices, ProcessOptions
from .states import JobExistsError, JobResult, JobState
from .stats import RuntimeStats, count
from .tracing import JobTracing, job_tracing

if TYPE_CHECKING:
    from opentelemetry.trace import TracerProvider
from .watch import JobWatch

__all__ = ["RECORD_MODES", "RecordMode", "Runtime", "RuntimeStats", "open_runtime"]

_log = get_logger("corral.runtime")


class Runtime:
    """Spawn, find and count jobs.  Create with :func:`open_runtime`."""

    def __init__(self, store: Store, *, max_running_jobs: int | None, max_results: int,
                 workspace: Path | None, stdin_grace: float = 0.5, term_grace: float = 2.0,
                 record_max_events: int = 1000, record_max_bytes: int = 1 << 20,
                 agent_start_timeout: float = 30.0, record_flush_window: float = 0.05,
                 tracing: JobTracing | None = None) -> None:
        if max_running_jobs is not None and max_running_jobs < 1:
            raise ValueError("max_running_jobs must be >= 1 or None")
        self.id = uuid.uuid4().hex
        """This runtime's id: every process its jobs start carries it in its marker."""
        self.max_running_jobs = max_running_jobs
        self.max_results = max_results
        self.store = store
        self._nursery: trio.Nursery | None = None  # set by open_runtime
        self._service_nursery: trio.Nursery | None = None  # the control endpoint's, the UI's (open_runtime)
        self._stoppers: list[trio.CancelScope] = []  # of services that end with the runtime (the UI)
        self._live: dict[str, Job] = {}
        self._pending: collections.deque[Job] = collections.deque()
        self._running = 0
        self._results: collections.OrderedDict[str, JobResult] = collections.OrderedDict()
        self._closing = False
        self._control: ControlServer | None = None
        pid = os.getpid()
        self._services = JobServices(
            runtime_id=self.id, pid=pid, started=psutil.Process(pid).create_time(), store=store,
            process=ProcessOptions(stdin_grace, term_grace, agent_start_timeout),
            limits=RecordLimits(max_events=record_max_events, max_bytes=record_max_bytes,
                                flush_window=record_flush_window),
            workspace_root=workspace, finished=self._job_finished, unqueue=self._unqueue, tracing=tracing,
        )

    # -- public API -------------------------------------------------------------------------------

    async def spawn(self, flow: Flow, inputs: Mapping[str, Any] | None = None, *,
                    record: RecordMode = "off", job_id: str | None = None) -> JobHandle:
        """Start a job of ``flow`` (or queue it as PENDING when ``max_running_jobs`` are running).

        ``inputs`` must fit the flow (see :meth:`Flow.bind_inputs`), else :class:`InputError` is
        raised before anything runs or is stored, as is :class:`SecretUnavailable` for an agent's
        ``env_from`` variable missing from the runtime's environment.  ``job_id`` is an idempotency key: an id that is
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
        recording = recording_for(record)  # a ValueError naming the modes, before anything is stored
        bound = flow.bind_inputs(inputs)
        require_env_from(flow, os.environ)  # SecretUnavailable naming the variable, nothing stored
        if job_id is None:
            job_id = uuid.uuid4().hex
        else:
            if not isinstance(job_id, str) or not job_id:
                raise ValueError(f"job_id must be a non-empty string, got {job_id!r}")
            self._refuse_existing(job_id)
            if await self.store.get_job(job_id) is not None:
                raise JobExistsError(job_id, "in the store")
            self._refuse_existing(job_id)  # spawned by another task while the store was read
        job = Job(self._services, flow, bound, job_id, recording=recording)
        self._admit(job)
        return JobHandle(job)

    async def drain(self, grace: float) -> None:
        """Stop for a deploy: refuse new jobs, give running steps ``grace`` seconds, then let go.

        A durable job starts no new step and ends INTERRUPTED (reason ``"drained"``) once its
        running steps are done -- a PAUSED one at once -- or when ``grace`` is over, its running
        steps then cancelled and their processes killed.  Its record stays live and ownerless
        (``paused`` or ``interrupted``) with its checkpoints, so the next runtime opened with
        ``resume=True`` (or ``corral resume``) carries on from there.  Other jobs run on during
        the grace, then end CANCELLED ``"drained"``.  Returns once every job's nursery has
        closed; from the call on, ``spawn`` raises.
        """
        self._closing = True
        queued = list(self._pending)
        self._pending.clear()
        waiting = {job.id for job in queued}
        await drain_jobs([job for job in self._live.values() if job.id not in waiting], queued, grace)

    def _admit(self, job: Job) -> None:
        """Index ``job`` as live and start it, or queue it behind ``max_running_jobs``."""
        self._live[job.id] = job
        self._services.watch.changed(job.id)  # a new live job (maybe queued)
        if self._has_room():
            self._launch(job)
        else:
            self._pending.append(job)

    def _has_room(self) -> bool:
        return self.max_running_jobs is None or self._running < self.max_running_jobs

    def _refuse_existing(self, job_id: str) -> None:
        if job_id in self._live:
            raise JobExistsError(job_id, "live in this runtime")
        if job_id in self._results:
            raise JobExistsError(job_id, "finished in this runtime")

    def get(self, job_id: str) -> JobHandle | None:
        """The handle of a live (pending, running or paused) job, else ``None``."""
        job = self._live.get(job_id)
        return None if job is None else JobHandle(job)

    def finished(self, job_id: str) -> JobResult | None:
        """The kept result of a job that ended in this runtime, else ``None`` (no store read)."""
        return self._results.get(job_id)

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
        return await stored_result(self.store, job_id, job_id in self._live)

    async def events(self, job_id: str, from_seq: int = 0) -> AsyncIterator[Event]:
        """Replay a job's recorded events from the store, in seq order (durable jobs).

        Raises :class:`JobNotFound` for an unknown id, and :class:`JobStateError` for a job that
        was not recorded durably (its events were never stored: use ``handle.events()``).
        """
        known = self._live.get(job_id)
        async for event in stored_events(self.store, job_id, from_seq,
                                         None if known is None else known.record, job_id in self._results):
            yield event

    def stats(self) -> RuntimeStats:
        """Count what live jobs hold: trio tasks, processes, streams, recorders."""
        return count(self.id, self._live.values(), pending=len(self._pending), results=len(self._results))

    @property
    def control_path(self) -> Path | None:
        """The control endpoint's Unix socket (``None`` without a persistent store)."""
        return None if self._control is None else self._control.path

    @property
    def job_watch(self) -> JobWatch:
        """Told when one of this runtime's jobs changes state (the control endpoint's ``watch``)."""
        return self._services.watch

    async def serve_ui(self, *, port: int = 0) -> str:
        """Serve the browser UI (:mod:`runtime.ui`, the ``ui`` extra) of this runtime and its store on
        ``127.0.0.1:port`` (0: a free port) in its service nursery; the URL, with the page token."""
        from ..ui.server import serve_runtime  # the optional extra: loaded only when asked for
        assert self._service_nursery is not None, "serve_ui() needs an open runtime"
        self._stoppers.append(stop := trio.CancelScope())
        url: str = await self._service_nursery.start(serve_runtime, self, port, stop)
        return url

    @property
    def nursery_tasks(self) -> int:
        """Tasks directly in the root nursery: one per running job, nothing else."""
        return 0 if self._nursery is None else len(self._nursery.child_tasks)

    # -- the jobs' lifecycle ------------------------------------------------------------------------

    def _launch(self, job: Job) -> None:
        assert self._nursery is not None
        self._running += 1
        self._nursery.start_soon(job.run, name=f"corral.job:{job.id}")

    async def _job_finished(self, job_id: str, result: JobResult) -> None:
        """Forget a finished job: keep only its result (bounded LRU); start queued jobs.  No
        schedule point: whoever saw JobFinished next sees the job gone from the live index."""
        job = self._live.pop(job_id, None)
        if job is None:
            return
        if job.task is not None:
            self._running -= 1
        self._results[job_id] = result
        self._services.watch.changed(job_id)  # gone from the live jobs, its result kept
        while len(self._results) > self.max_results:
            self._results.popitem(last=False)
        while self._pending and self._has_room() and not self._closing:
            self._launch(self._pending.popleft())

    def _unqueue(self, job_id: str) -> bool:
        """Remove a queued job before it starts; False if it is not queued."""
        job = self._live.get(job_id)
        if job is None:
            return False
        try:
            self._pending.remove(job)
        except ValueError:
            return False
        return True

    async def _write_groups(self, receive: trio.MemoryReceiveChannel[GroupOp]) -> None:
        async with receive:
            async for op, value in receive:
                try:
                    if isinstance(value, str):
                        await self.store.delete_process_group(value)
                    else:
                        await self.store.put_process_group(value)
                except StoreError as exc:
                    _log.warning("process_group_row_failed", op=op, error=str(exc))

    async def _shutdown(self) -> None:
        self._closing = True
        while self._pending:
            await self._pending.popleft().finish_unstarted(JobState.CANCELLED, "shutdown")
        for job in list(self._live.values()):
            job.cancel_nowait("shutdown")

    async def _open(self, services: trio.Nursery) -> trio.MemorySendChannel[GroupOp] | None:
        """With a persistent store: hold a lease, sweep dead runtimes, record process groups."""
        self._service_nursery = services
        if not self.store.persistent:
            await trio.lowlevel.checkpoint()
            return None
        control = self._control = await serve_control(self, services)
        await self.store.put_lease(new_lease(self.id, None if control is None else os.fspath(control.path)))
        await sweep_dead(self.store, self._services.process.term_grace)
        send, receive = trio.open_memory_channel[GroupOp](math.inf)
        self._services.record_groups(send)
        services.start_soon(self._write_groups, receive)
        return send

    async def take_over(self, *, paused: bool = True) -> list[JobHandle]:
        """Adopt the durable jobs of dead runtimes (``paused=False``: PAUSED ones stay ownerless)."""
        return await takeover.take_over(self, self._services, paused=paused)

    async def adopt(self, job_id: str) -> JobHandle:
        """Take over the durable job ``job_id`` of a runtime that died, and run it here from
        where it stopped (a PAUSED job stays paused, waiting for ``resume``).

        Raises :class:`JobNotFound` for an unknown id; :class:`JobStateError` (naming the job) for
        a job that has ended, was not recorded durably, or whose runtime is alive.
        """
        live = self._live.get(job_id)
        if live is not None:
            await trio.lowlevel.checkpoint()
            return JobHandle(live)
        return await takeover.adopt(self, self._services, job_id)

    async def _aclose(self, group_ops: trio.MemorySendChannel[GroupOp] | None) -> None:
        if self._control is not None:
            self._control.close()
        for scope in self._stoppers:
            scope.cancel()  # what serve_ui() started
        if group_ops is not None:
            group_ops.close()
        if self.store.persistent:
            try:
                await self.store.delete_lease(self.id)
            except StoreError as exc:
                _log.warning("lease_release_failed", error=str(exc))
        own = self._services.take_own_workspace()
        if own is not None:
            await trio.to_thread.run_sync(shutil.rmtree, own, True)


@asynccontextmanager
async def open_runtime(*, max_running_jobs: int | None = None, max_results: int = 10_000,
                       store: str | os.PathLike[str] | Store | None = None, resume: bool = False,
                       workspace: str | os.PathLike[str] | None = None, stdin_grace: float = 0.5,
                       term_grace: float = 2.0, record_max_events: int = 1000,
                       record_max_bytes: int = 1 << 20, agent_start_timeout: float = 30.0,
                       record_flush_window: float = 0.05,
                       tracer_provider: TracerProvider | None = None) -> AsyncIterator[Runtime]:
    """Open a runtime: the root nursery of every job it spawns.

    ``store``: a path (an embedded :class:`~runtime.store.SqliteStore`), a
    :class:`~runtime.store.Store`, or ``None`` for a bounded :class:`~runtime.store.MemoryStore`.
    With a persistent store the runtime holds a lease in it, and at start kills the processes of
    runtimes whose lease is dead (the orphan sweep); ``resume=True`` also re-spawns their durable
    jobs that were RUNNING, PAUSED or PENDING.

    ``workspace``: where each job gets ``<job_id>/`` (default: a temporary directory removed at
    close).  ``stdin_grace``/``term_grace``: a process group's time after stdin closes, then after
    SIGTERM, before SIGKILL.  ``record_max_events`` /
    ``record_max_bytes`` bound each recording job's in-memory ring; a durable job writes what it
    records within ``record_flush_window`` seconds in one transaction (a pause, and its end, at
    once: a job reported ended has its log and record committed).  ``agent_start_timeout``: an
    agent's initialize (+ authenticate) and session/new bound when its spec's ``start_timeout`` is None.
    ``tracer_provider``: where OpenTelemetry spans of jobs and step attempts go (default: the global
    provider, if the app set one; else none, and opentelemetry is not imported).  Jobs on Ray hosts,
    with the same API: :func:`runtime.cluster.open_cluster_runtime`.
    Leaving the block cancels every live job (state CANCELLED, reason ``"shutdown"``) and returns
    once all their nurseries have closed.
    """
    store_obj = _store_of(store)
    rt = Runtime(store_obj, max_running_jobs=max_running_jobs, max_results=max_results,
                 workspace=None if workspace is None else Path(workspace), stdin_grace=stdin_grace,
                 term_grace=term_grace, record_max_events=record_max_events, record_max_bytes=record_max_bytes,
                 agent_start_timeout=agent_start_timeout, record_flush_window=record_flush_window,
                 tracing=job_tracing(tracer_provider))
    body_error: BaseException | None = None
    try:
        async with store_obj, trio.open_nursery() as services:
            group_ops = await rt._open(services)
            try:
                async with trio.open_nursery() as nursery:
                    rt._nursery = nursery
                    if resume:
                        await rt.take_over()
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
                    await rt._aclose(group_ops)
    except BaseExceptionGroup as group:
        # Jobs never let errors escape into the root nursery, so a group here only wraps what the
        # body of the ``async with`` raised: hand that back unwrapped.
        if body_error is not None and lone_exception(group) is body_error:
            raise body_error from None
        raise


def _store_of(store: str | os.PathLike[str] | Store | None) -> Store:
    if store is None:
        return MemoryStore()
    if isinstance(store, str | os.PathLike):
        return SqliteStore(store)
    return store
