"""The runtime: a root nursery that holds job actors and nothing else.

``async with open_runtime() as rt`` opens the root nursery.  ``rt.spawn(flow)`` starts a job actor
in it (or queues it, first in first out, beyond ``max_running_jobs``).  The live-job index holds
live jobs only; a finished job leaves behind its :class:`~runtime.job.JobResult` in a bounded LRU.
Leaving the block cancels every live job with reason ``"shutdown"`` and waits for their nurseries
to close.
"""

from __future__ import annotations

import collections
import os
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import attrs
import psutil
import trio

from actors.acp import PermissionPolicy
from actors.adapter import AgentAdapter
from actors.process import Marker, live_marked

from .events import Event
from .executors import executor_for
from .flow import AgentSpec, Flow, Step
from .job import Job, JobHandle, JobResult, JobState

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

    def __init__(self, nursery: trio.Nursery, *, max_running_jobs: int | None, max_results: int,
                 workspace: Path | None, stdin_grace: float = 0.5, term_grace: float = 2.0) -> None:
        if max_running_jobs is not None and max_running_jobs < 1:
            raise ValueError("max_running_jobs must be >= 1 or None")
        self.id = uuid.uuid4().hex
        self.max_running_jobs = max_running_jobs
        self.max_results = max_results
        self._nursery = nursery
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
        job_id = job_id or uuid.uuid4().hex
        if job_id in self._live:
            raise ValueError(f"job id {job_id!r} is already live")
        job = Job(self, flow, inputs or {}, job_id, record=record)
        self._live[job_id] = job
        if self.max_running_jobs is None or self._running < self.max_running_jobs:
            self._launch(job)
        else:
            self._pending.append(job)
        return JobHandle(job)

    def get(self, job_id: str) -> JobHandle | None:
        """The handle of a live (pending, running or paused) job, else ``None``."""
        job = self._live.get(job_id)
        return None if job is None else JobHandle(job)

    def jobs(self) -> list[JobHandle]:
        """Handles of every live job, in spawn order."""
        return [JobHandle(j) for j in self._live.values()]

    def result(self, job_id: str) -> JobResult | None:
        """The result of a finished job still held in memory, else ``None``."""
        res = self._results.get(job_id)
        if res is not None:
            self._results.move_to_end(job_id)
        return res

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
        processes = len(live_marked(lambda m: m.runtime_id == self.id)) if with_processes else 0
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
        """Start the job's per-job actors (recorder) in its nursery."""
        await trio.lowlevel.checkpoint()

    def step_checkpoint(self, job: Job, step: str, outputs: Mapping[str, Any], iteration: int) -> None:
        """A step completed (durable jobs checkpoint it)."""

    def replay_backlog(self, job: Job) -> list[Event] | None:
        return job.recorder.backlog() if job.recorder is not None else None

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
        """Forget a finished job: keep only its result (bounded LRU)."""
        await trio.lowlevel.cancel_shielded_checkpoint()
        assert job.result is not None
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

    async def _aclose(self) -> None:
        if self._own_workspace is not None:
            await trio.to_thread.run_sync(shutil.rmtree, self._own_workspace, True)
            self._own_workspace = None


@asynccontextmanager
async def open_runtime(*, max_running_jobs: int | None = None, max_results: int = 10_000,
                       workspace: str | Path | None = None, stdin_grace: float = 0.5,
                       term_grace: float = 2.0) -> AsyncIterator[Runtime]:
    """Open a runtime: the root nursery of every job it spawns.

    ``workspace``: the directory under which each job gets ``<job_id>/`` (default: a temporary
    directory removed when the runtime closes).  ``stdin_grace``/``term_grace``: how long a process
    group gets after stdin closes, then after SIGTERM, before SIGKILL.

    Leaving the block cancels every live job (state CANCELLED, reason ``"shutdown"``) and returns
    once all their nurseries have closed.
    """
    rt: Runtime | None = None
    body_error: BaseException | None = None
    try:
        async with trio.open_nursery() as nursery:
            rt = Runtime(nursery, max_running_jobs=max_running_jobs, max_results=max_results,
                         workspace=None if workspace is None else Path(workspace),
                         stdin_grace=stdin_grace, term_grace=term_grace)
            try:
                yield rt
            except BaseException as exc:
                body_error = exc
                raise
            finally:
                with trio.CancelScope(shield=True):
                    await rt._shutdown()
    except BaseExceptionGroup as group:
        # Jobs never let errors escape into the root nursery, so a group here only wraps what the
        # body of the ``async with`` raised: hand that back unwrapped.
        if body_error is not None and list(group.exceptions) == [body_error]:
            raise body_error from None
        raise
    finally:
        if rt is not None:
            with trio.CancelScope(shield=True):
                await rt._aclose()
