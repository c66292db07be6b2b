"""The controller: the cluster runtime's API on trio, its jobs run by host actors on Ray."""

from __future__ import annotations

import collections
import uuid
from collections.abc import Mapping
from typing import Any

import attrs
import trio

from actors.log import get_logger
from actors.process import find_marked, kill_tree
from runtime import (
    Flow,
    JobExistsError,
    JobNotFound,
    JobPaused,
    JobResult,
    JobResumed,
    JobState,
    RecordMode,
    RuntimeStats,
    event_from_dict,
)

from ._config import RayCluster
from ._handle import ClusterJobHandle
from ._host import AdoptedJob
from ._ray import RayCalls
from ._records import ClusterJob, HostRef
from ._ship import durable_problem, error_text, pack, plain, unpack
from .testing import cluster_leaks

log = get_logger(__name__)


class ClusterRuntime:
    """Spawn, find and count jobs over Ray host actors.  Create with :func:`open_cluster_runtime`."""

    def __init__(self, cluster: RayCluster, hosts: list[HostRef], nursery: trio.Nursery, calls: RayCalls,
                 *, max_results: int = 10_000) -> None:
        self.id = uuid.uuid4().hex
        self.cluster = cluster
        self.max_results = max_results
        self.hosts = hosts
        self._detached = False
        self._nursery = nursery
        self._calls = calls
        self._live: dict[str, ClusterJob] = {}
        self._pending: collections.deque[ClusterJob] = collections.deque()
        self._results: collections.OrderedDict[str, JobResult] = collections.OrderedDict()
        self._closing = False

    # -- public API ---------------------------------------------------------------------------------

    async def spawn(self, flow: Flow, inputs: Mapping[str, Any] | None = None, *,
                    record: RecordMode = "off", job_id: str | None = None) -> ClusterJobHandle:
        """Start a job on the least-loaded host, or queue it PENDING when every host is full."""
        await trio.lowlevel.checkpoint()
        if self._closing:
            raise RuntimeError("the runtime is shutting down")
        if not any(h.alive for h in self.hosts):
            raise RuntimeError("every host of this cluster was lost: no job can run")
        if not isinstance(flow, Flow):
            raise TypeError(f"spawn() needs a Flow, got {type(flow).__name__}")
        bound = flow.bind_inputs(inputs)  # InputError before anything is placed, as embedded
        if record == "durable" and (problem := durable_problem(flow)) is not None:
            raise ValueError(problem)
        data = pack(flow, bound)  # TypeError naming what cannot travel, before anything is placed
        job_id = job_id or uuid.uuid4().hex
        if job_id in self._live or job_id in self._results:
            raise JobExistsError(job_id, "live" if job_id in self._live else "finished on this cluster")
        job = ClusterJob(job_id, flow, data, bound, record, self.cluster.max_log_events)
        self._live[job_id] = job
        host = None if self._pending else self._place()  # FIFO: nobody overtakes a queued job
        if host is None:
            self._pending.append(job)
        else:
            self._assign(job, host)
            await self._launch(job, host)
        return ClusterJobHandle(self, job)

    def get(self, job_id: str) -> ClusterJobHandle | None:
        """The handle of a live job, else ``None``."""
        job = self._live.get(job_id)
        return None if job is None else ClusterJobHandle(self, job)

    def jobs(self) -> list[ClusterJobHandle]:
        """Handles of every live job, in spawn order."""
        return [ClusterJobHandle(self, j) for j in self._live.values()]

    async def result(self, job_id: str) -> JobResult | None:
        """The result of a finished job, ``None`` while it is live; :class:`JobNotFound` if unknown."""
        await trio.lowlevel.checkpoint()
        if job_id in self._live:
            return None
        try:
            return self._results[job_id]
        except KeyError:
            raise JobNotFound(job_id) from None

    async def stats_async(self) -> RuntimeStats:
        """:meth:`stats` without blocking the trio run (the host calls run in a thread)."""
        return self._with_controller(await self._calls.run(self._sum_hosts))

    def stats(self) -> RuntimeStats:
        """Stats summed over the live hosts, plus this controller's pending jobs and results
        (blocking Ray calls; from trio prefer :meth:`stats_async`)."""
        return self._with_controller(self._sum_hosts())

    @property
    def nursery_tasks(self) -> int:
        """Tasks in the controller's nursery (one follower per job placed on a host)."""
        return len(self._nursery.child_tasks)

    def detach(self) -> None:
        """End the block without ending the jobs: the named hosts keep running them, and the next
        controller that opens this cluster's name adopts them.  Jobs still PENDING here (known only
        to this controller) end CANCELLED with reason ``"detached"``; the handles of the jobs left
        running stop updating (get fresh ones from the next controller)."""
        if self.cluster.name is None:
            raise RuntimeError("detach() needs a named cluster (RayCluster(name=...)): "
                               "anonymous hosts end with their controller")
        self._detached = True

    def leak_problems(self, *, allow_live_jobs: bool = False) -> list[str]:
        """What finished jobs left on the controller, on every host and in this machine's process
        table (blocking Ray calls; :func:`runtime.testing.assert_no_leaks` calls this)."""
        return cluster_leaks(self, allow_live_jobs=allow_live_jobs)

    def _sum_hosts(self) -> dict[str, int]:
        ray = self._calls.ray
        total = dict.fromkeys(attrs.fields_dict(RuntimeStats), 0)
        for host in [h for h in self.hosts if h.alive]:
            try:
                st = ray.get(host.actor.stats.remote())
            except ray.exceptions.RayActorError:
                continue  # lost: its jobs end host_lost when its follower notices
            for k in total:
                total[k] += getattr(st, k)
        return total

    def _with_controller(self, total: dict[str, int]) -> RuntimeStats:
        total["pending_jobs"] += len(self._pending)
        total["results"] = len(self._results)
        return RuntimeStats(**total)

    # -- placing and following jobs -----------------------------------------------------------------

    def _place(self) -> HostRef | None:
        live = [h for h in self.hosts if h.alive and len(h.jobs) < self.cluster.jobs_per_host]
        return min(live, key=lambda h: len(h.jobs)) if live else None

    @staticmethod
    def _assign(job: ClusterJob, host: HostRef) -> None:
        """Take the host's slot now, synchronously: the next ``_place()`` already sees it taken."""
        job.host = host
        job.state = JobState.RUNNING
        host.jobs.add(job.id)

    async def _launch(self, job: ClusterJob, host: HostRef) -> None:
        """Start an assigned job on its host and follow it."""
        try:
            error = await self._calls.get(host.actor.spawn.remote, job.flow_data, job.id, job.record)
        except self._calls.ray.exceptions.RayActorError:
            await self._host_lost(host)
            return
        except Exception as exc:
            error = error_text(exc)
        if error is not None:
            self._finish(job, job.ended(JobState.FAILED, "spawn_failed", plain(error, host.name)))
            return
        self._follow_soon(job, host)

    def _follow_soon(self, job: ClusterJob, host: HostRef) -> None:
        job.launched.set()
        self._nursery.start_soon(self._follow, job, host, name=f"corral.cluster-follow:{job.id}")

    async def _follow(self, job: ClusterJob, host: HostRef) -> None:
        """Copy the job's events from its host into its log here, then take its result."""
        ray = self._calls.ray
        try:
            async for data in self._calls.stream(host.actor, job.id, 0):
                if "lagged" in data:  # the host's log was trimmed before this controller read it
                    continue
                event = event_from_dict(data)
                job.append(event)
                if isinstance(event, JobPaused):
                    job.state = JobState.PAUSED
                elif isinstance(event, JobResumed):
                    job.state = JobState.RUNNING
            result: JobResult | None = await self._calls.get(host.actor.result.remote, job.id)
            if result is not None and result.error is not None:
                result = attrs.evolve(result, error=plain(result.error, host.name))
            await self._calls.get(host.actor.forget.remote, job.id)
        except ray.exceptions.RayActorError:
            await self._host_lost(host)
            return
        except Exception as exc:
            log.error("corral.cluster.follow_failed", job_id=job.id, error=repr(exc))
            result = job.ended(JobState.FAILED, "stream_failed", repr(exc))
        if result is not None:
            self._finish(job, result)

    def _finish(self, job: ClusterJob, result: JobResult) -> None:
        if job.result is not None:
            return
        self._live.pop(job.id, None)
        self._results[job.id] = result
        while len(self._results) > self.max_results:
            self._results.popitem(last=False)
        if job.host is not None:
            job.host.jobs.discard(job.id)
        job.finish(result)
        while self._pending and not self._closing:
            host = self._place()
            if host is None:
                break
            nxt = self._pending.popleft()
            self._assign(nxt, host)
            self._nursery.start_soon(self._launch, nxt, host)

    async def _host_lost(self, host: HostRef) -> None:
        if not host.alive:
            return
        host.alive = False
        log.warning("corral.cluster.host_lost", pid=host.pid, runtime_id=host.runtime_id)
        rid = host.runtime_id
        await trio.to_thread.run_sync(lambda: kill_tree(find_marked(lambda m: m.runtime_id == rid), 1.0))
        for job_id in list(host.jobs):
            job = self._live.get(job_id)
            if job is not None:
                self._finish(job, job.ended(JobState.FAILED, "host_lost", f"host pid {host.pid} died"))
        if not any(h.alive for h in self.hosts):  # nothing left to place the queue on: no job waits forever
            while self._pending:
                job = self._pending.popleft()
                self._finish(job, job.ended(JobState.FAILED, "no_hosts", "every host of the cluster was lost"))

    # -- what handles ask ---------------------------------------------------------------------------

    async def _control(self, job: ClusterJob, action: str, reason: str) -> JobResult:
        if job.result is None and job.host is None and job in self._pending:
            self._pending.remove(job)
            state = JobState.CANCELLED if action == "cancel" else JobState.ABANDONED
            self._finish(job, job.ended(state, reason))
        elif job.result is None and job.host is not None and job.host.alive:
            await job.started_or_done()  # assigned a slot, its spawn there maybe still under way
            if job.result is None and job.host.alive:
                try:
                    await self._calls.get(job.host.actor.control.remote, job.id, action, reason)
                except self._calls.ray.exceptions.RayActorError:
                    await self._host_lost(job.host)
        await job.done.wait()
        assert job.result is not None
        return job.result

    async def _resume(self, job: ClusterJob, payload: Any) -> None:
        host = job.host
        if host is None or not job.launched.is_set():
            raise RuntimeError(f"job {job.id} is not running")
        await self._calls.get(host.actor.resume.remote, job.id, payload)

    # -- opening and closing (open_cluster_runtime) -------------------------------------------------

    async def _adopt(self) -> None:
        """Follow the jobs the (named) hosts already run: a controller attaching after another."""
        for host in self.hosts:
            specs: list[AdoptedJob] = await self._calls.get(host.actor.adopt.remote)
            for spec in specs:
                job = ClusterJob(spec["job_id"], unpack(spec["flow"])[0], spec["flow"], spec["inputs"],
                                 spec["record"], self.cluster.max_log_events)
                job.host = host
                job.state = JobState(spec["state"])
                host.jobs.add(job.id)
                self._live[job.id] = job
                self._follow_soon(job, host)
        if self._live:
            log.info("corral.cluster.adopted", jobs=len(self._live), cluster=self.cluster.name)

    async def _detach(self) -> None:
        self._closing = True
        for job in list(self._pending):
            await self._control(job, "cancel", "detached")

    async def _shutdown(self, grace: float) -> None:
        self._closing = True
        ray = self._calls.ray
        for job in list(self._pending):
            await self._control(job, "cancel", "shutdown")
        async with trio.open_nursery() as n:
            for job in list(self._live.values()):
                n.start_soon(self._control, job, "cancel", "shutdown")
        for host in self.hosts:
            if host.alive:
                with trio.move_on_after(grace):
                    try:
                        await self._calls.get(host.actor.stop.remote)
                    except ray.exceptions.RayActorError:
                        pass
            await self._calls.terminate(host.actor, grace)
            host.alive = False
