"""The controller: the cluster runtime's API on trio, hosts as Ray actors."""

from __future__ import annotations

import collections
import os
import socket
import time
import uuid
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

import attrs
import trio

from actors.log import get_logger
from actors.process import find_marked, kill_tree

from ..core.events import Event, JobPaused, JobResumed, Lagged, event_from_dict
from ..core.handle import JobView
from ..core.runtime import RuntimeStats
from ..core.states import JobExistsError, JobNotFound, JobResult, JobState
from ..flow import Flow
from ..flow.codec import flow_from_dict, flow_to_dict
from ._log import EventLog

log = get_logger(__name__)


@attrs.frozen
class RayCluster:
    """Where and how wide: ``hosts`` actors, each running up to ``jobs_per_host`` jobs.

    ``address``: ``None`` starts a local Ray; ``"auto"`` joins the cluster started on this machine
    (``ray start --head``); ``"ray://host:10001"`` connects through Ray Client.

    ``name``: ``None`` gives anonymous hosts owned by this controller; they die with it.  A name
    makes the hosts named, detached actors ``<name>-host-<i>`` in ``namespace``.  A controller that
    opens the same name attaches to the live ones and adopts their jobs, so a restarted controller
    carries on where the last one stopped.  :meth:`ClusterRuntime.detach` leaves them running when
    the block ends.  One controller at a time: it holds the cluster through a named actor
    ``<name>-controller`` that lives as long as its process (Ray ends it when that process dies).
    Opening a name another live controller holds waits up to ``attach_timeout`` seconds for it
    to go (a killed controller's hold ends once Ray notices), then raises :class:`ClusterBusy`.

    ``max_log_events``: each job's numbered event log (on its host, and its copy on the controller)
    keeps this many latest events; a reader asking for older ones first gets a :class:`Lagged`.
    """

    address: str | None = None
    hosts: int = attrs.field(default=2, validator=attrs.validators.ge(1))
    jobs_per_host: int = attrs.field(default=16, validator=attrs.validators.ge(1))
    name: str | None = None
    namespace: str = "corral"
    max_log_events: int = attrs.field(default=100_000, validator=attrs.validators.ge(1))
    attach_timeout: float = attrs.field(default=30.0, validator=attrs.validators.ge(0))

    def host_name(self, index: int) -> str | None:
        """The Ray actor name of host ``index`` (``None`` for anonymous hosts)."""
        return None if self.name is None else f"{self.name}-host-{index}"


class ClusterBusy(RuntimeError):
    """A named cluster is held by another live controller (``holder``: its pid, host, since)."""

    def __init__(self, name: str, holder: Mapping[str, Any] | None, waited: float) -> None:
        who = "another controller" if holder is None else \
            f"the controller pid {holder.get('pid')} on {holder.get('host')}"
        super().__init__(f"cluster {name!r} is held by {who} (waited {waited:g}s for it to end): "
                         "one controller at a time; detach() or end that one first")
        self.name = name
        self.holder = dict(holder) if holder is not None else None


class _Claim:
    """The named actor through which one controller holds a named cluster."""

    def __init__(self, holder: dict[str, Any]) -> None:
        self._holder = holder

    def holder(self) -> dict[str, Any]:
        return self._holder


def _claim(ray: Any, cluster: RayCluster) -> Any:
    """Take ``<name>-controller`` (blocking), waiting up to ``attach_timeout`` for a holder to end."""
    name = f"{cluster.name}-controller"
    cls = ray.remote(num_cpus=0, max_restarts=0)(_Claim)
    holder = {"pid": os.getpid(), "host": socket.gethostname(), "since": time.time()}
    start = time.monotonic()
    while True:
        try:
            actor = cls.options(name=name, namespace=cluster.namespace).remote(holder)
            if ray.get(actor.holder.remote()) == holder:
                if time.monotonic() - start > 0.1:
                    log.info("corral.cluster.claimed_after_wait", cluster=cluster.name,
                             waited=round(time.monotonic() - start, 2))
                return actor
        except (ValueError, ray.exceptions.RayActorError):
            pass  # the name is taken (or was, a moment ago): another controller holds the cluster
        waited = time.monotonic() - start
        if waited >= cluster.attach_timeout:
            try:
                other = ray.get(ray.get_actor(name, namespace=cluster.namespace).holder.remote(), timeout=5)
            except Exception:
                other = None
            raise ClusterBusy(cluster.name or "", other, round(waited, 1))
        time.sleep(0.2)


class _HostRef:
    def __init__(self, actor: Any, pid: int, runtime_id: str) -> None:
        self.actor = actor
        self.pid = pid
        self.runtime_id = runtime_id
        self.jobs: set[str] = set()
        self.alive = True


class _ClusterJob:
    def __init__(self, job_id: str, flow: Flow, flow_data: dict[str, Any], inputs: Mapping[str, Any],
                 record: str, max_log_events: int) -> None:
        self.id = job_id
        self.flow = flow
        self.flow_data = flow_data
        self.inputs = dict(inputs)
        self.record = record
        self.state = JobState.PENDING
        self.host: _HostRef | None = None
        self.result: JobResult | None = None
        self.done = trio.Event()
        self.log: EventLog[Event] = EventLog(max_log_events, _event_seq)
        self.launched = trio.Event()

    async def started_or_done(self) -> None:
        """Return once the job runs on its host (its spawn there returned) or has a result."""
        if self.launched.is_set() or self.done.is_set():
            await trio.lowlevel.checkpoint()
            return
        async with trio.open_nursery() as nursery:
            async def on_done() -> None:
                await self.done.wait()
                nursery.cancel_scope.cancel()
            nursery.start_soon(on_done)
            await self.launched.wait()
            nursery.cancel_scope.cancel()


class ClusterJobHandle(JobView):
    """A job on some host: the same methods as :class:`~runtime.job.JobHandle`."""

    __slots__ = ("_job", "_rt")

    def __init__(self, rt: ClusterRuntime, job: _ClusterJob) -> None:
        self._rt = rt
        self._job = job

    @property
    def host_pid(self) -> int | None:
        """The pid of the host actor's process running this job (``None`` while pending)."""
        return None if self._job.host is None else self._job.host.pid

    @property
    def host_runtime_id(self) -> str | None:
        """The id of the embedded runtime running this job: its processes carry it in their marker."""
        return None if self._job.host is None else self._job.host.runtime_id

    async def wait(self) -> JobResult:
        """Wait until the job ended on its host and its nursery there closed."""
        await self._job.done.wait()
        assert self._job.result is not None
        return self._job.result

    async def cancel(self, reason: str = "cancelled") -> JobResult:
        """End the job CANCELLED on its host; returns the terminal result."""
        return await self._rt._control(self._job, "cancel", reason)

    async def abandon(self, reason: str = "abandoned") -> JobResult:
        """End the job ABANDONED on its host; returns the terminal result."""
        return await self._rt._control(self._job, "abandon", reason)

    async def resume(self, payload: Any = None) -> None:
        """Resume a PAUSED job on its host."""
        host = self._job.host
        if host is None or not self._job.launched.is_set():
            raise RuntimeError(f"job {self.id} is not running")
        await self._rt._ray(host.actor.resume.remote, self.id, payload)

    async def events(self, from_seq: int = 0) -> AsyncIterator[Event | Lagged]:
        """The job's events from ``from_seq`` on, streamed from its host's log (re-attach): in
        order, no duplicates; a :class:`Lagged` stands for events that fell out of the bounded log."""
        job = self._job
        await job.started_or_done()  # pending: its events start when it is placed
        if job.result is not None or job.host is None or not job.host.alive:
            missing, kept = job.log.since(from_seq)
            if missing:
                yield Lagged(missing)
            for event in kept:
                yield event
            return
        async for data in self._rt._stream(job.host, job.id, from_seq):
            yield Lagged(data["lagged"]) if "lagged" in data else event_from_dict(data)


class ClusterRuntime:
    """Spawn, find and count jobs over Ray host actors.  Create with :func:`open_cluster_runtime`."""

    def __init__(self, cluster: RayCluster, hosts: list[_HostRef], nursery: trio.Nursery,
                 ray_mod: Any, *, max_results: int = 10_000) -> None:
        self.id = uuid.uuid4().hex
        self.cluster = cluster
        self.max_results = max_results
        self._detached = False
        self.hosts = hosts
        self._nursery = nursery
        self._ray_mod = ray_mod
        self._live: dict[str, _ClusterJob] = {}
        self._pending: collections.deque[_ClusterJob] = collections.deque()
        self._results: collections.OrderedDict[str, JobResult] = collections.OrderedDict()
        self._closing = False
        self._limiter = trio.CapacityLimiter(max(64, 4 * cluster.hosts * cluster.jobs_per_host))

    # -- Ray from trio ----------------------------------------------------------------------------

    async def _ray(self, method: Any, *args: Any) -> Any:
        ray = self._ray_mod
        return await trio.to_thread.run_sync(lambda: ray.get(method(*args)), abandon_on_cancel=True,
                                             limiter=self._limiter)

    async def _stream(self, host: _HostRef, job_id: str, from_seq: int) -> AsyncIterator[dict[str, Any]]:
        ray = self._ray_mod
        gen = host.actor.events.options(num_returns="streaming").remote(job_id, from_seq)

        def step() -> Any:
            try:
                return ray.get(next(gen))
            except StopIteration:
                return None
        try:
            while True:
                batch = await trio.to_thread.run_sync(step, abandon_on_cancel=True, limiter=self._limiter)
                if batch is None:
                    return
                for data in batch:
                    yield data
        finally:
            with trio.CancelScope(shield=True):
                await trio.to_thread.run_sync(lambda: ray.cancel(gen), limiter=self._limiter)

    # -- public API ---------------------------------------------------------------------------------

    async def spawn(self, flow: Flow, inputs: Mapping[str, Any] | None = None, *,
                    record: str = "off", job_id: str | None = None) -> ClusterJobHandle:
        """Start a job on the least-loaded host, or queue it PENDING when every host is full."""
        await trio.lowlevel.checkpoint()
        if self._closing:
            raise RuntimeError("the runtime is shutting down")
        if not any(h.alive for h in self.hosts):
            raise RuntimeError("every host of this cluster was lost: no job can run")
        if not isinstance(flow, Flow):
            raise TypeError(f"spawn() needs a Flow, got {type(flow).__name__}")
        bound = flow.bind_inputs(inputs)  # InputError before anything is placed, as embedded
        data = flow_to_dict(flow)
        if not data.get("portable", True):
            raise ValueError(f"flow {flow.name!r} uses a lambda or callable and cannot run on a cluster")
        job_id = job_id or uuid.uuid4().hex
        if job_id in self._live or job_id in self._results:
            raise JobExistsError(job_id, "live" if job_id in self._live else "finished on this cluster")
        job = _ClusterJob(job_id, flow, data, bound, record, self.cluster.max_log_events)
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
        return self._with_controller(await trio.to_thread.run_sync(self._sum_hosts, abandon_on_cancel=True,
                                                                   limiter=self._limiter))

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

    def stats(self) -> RuntimeStats:
        """Stats summed over the live hosts, plus this controller's pending jobs and results
        (blocking Ray calls; from trio prefer :meth:`stats_async`)."""
        return self._with_controller(self._sum_hosts())

    def leak_problems(self, *, allow_live_jobs: bool = False) -> list[str]:
        """What finished jobs left on the controller, on every host and in this machine's process
        table (blocking Ray calls; :func:`runtime.testing.assert_no_leaks` calls this)."""
        from .testing import cluster_leaks

        return cluster_leaks(self, allow_live_jobs=allow_live_jobs)

    def _sum_hosts(self) -> dict[str, int]:
        ray = self._ray_mod
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

    # -- internals ----------------------------------------------------------------------------------

    def _place(self) -> _HostRef | None:
        live = [h for h in self.hosts if h.alive and len(h.jobs) < self.cluster.jobs_per_host]
        return min(live, key=lambda h: len(h.jobs)) if live else None

    @staticmethod
    def _assign(job: _ClusterJob, host: _HostRef) -> None:
        """Take the host's slot now, synchronously: the next ``_place()`` already sees it taken."""
        job.host = host
        job.state = JobState.RUNNING
        host.jobs.add(job.id)

    async def _launch(self, job: _ClusterJob, host: _HostRef) -> None:
        """Start an assigned job on its host and follow it."""
        try:
            await self._ray(host.actor.spawn.remote, job.flow_data, job.inputs, job.id, job.record)
        except self._ray_mod.exceptions.RayActorError:
            await self._host_lost(host)
            return
        except Exception as exc:
            self._finish(job, JobResult(job_id=job.id, flow=job.flow.name, state=JobState.FAILED,
                                        reason="spawn_failed", error=repr(exc), inputs=job.inputs))
            return
        job.launched.set()
        self._nursery.start_soon(self._follow, job, host, name=f"corral.cluster-follow:{job.id}")

    async def _follow(self, job: _ClusterJob, host: _HostRef) -> None:
        ray = self._ray_mod
        try:
            async for data in self._stream(host, job.id, 0):
                if "lagged" in data:  # the host's log was trimmed before this controller read it
                    continue
                event = event_from_dict(data)
                job.log.append(event)
                if isinstance(event, JobPaused):
                    job.state = JobState.PAUSED
                elif isinstance(event, JobResumed):
                    job.state = JobState.RUNNING
            result = await self._ray(host.actor.result.remote, job.id)
            await self._ray(host.actor.forget.remote, job.id)
        except ray.exceptions.RayActorError:
            await self._host_lost(host)
            return
        except Exception as exc:
            log.error("corral.cluster.follow_failed", job_id=job.id, error=repr(exc))
            result = JobResult(job_id=job.id, flow=job.flow.name, state=JobState.FAILED,
                               reason="stream_failed", error=repr(exc), inputs=job.inputs)
        if result is not None:
            self._finish(job, result)

    def _finish(self, job: _ClusterJob, result: JobResult) -> None:
        if job.result is not None:
            return
        job.result = result
        job.state = result.state
        self._live.pop(job.id, None)
        self._results[job.id] = result
        while len(self._results) > self.max_results:
            self._results.popitem(last=False)
        if job.host is not None:
            job.host.jobs.discard(job.id)
        job.done.set()
        while self._pending and not self._closing:
            host = self._place()
            if host is None:
                break
            nxt = self._pending.popleft()
            self._assign(nxt, host)
            self._nursery.start_soon(self._launch, nxt, host)

    async def _host_lost(self, host: _HostRef) -> None:
        if not host.alive:
            return
        host.alive = False
        log.warning("corral.cluster.host_lost", pid=host.pid, runtime_id=host.runtime_id)
        rid = host.runtime_id
        await trio.to_thread.run_sync(lambda: kill_tree(find_marked(lambda m: m.runtime_id == rid), 1.0))
        for job_id in list(host.jobs):
            job = self._live.get(job_id)
            if job is not None:
                self._finish(job, JobResult(job_id=job.id, flow=job.flow.name, state=JobState.FAILED,
                                            reason="host_lost", error=f"host pid {host.pid} died",
                                            inputs=job.inputs))
        if not any(h.alive for h in self.hosts):  # nothing left to place the queue on: no job waits forever
            while self._pending:
                job = self._pending.popleft()
                self._finish(job, JobResult(job_id=job.id, flow=job.flow.name, state=JobState.FAILED,
                                            reason="no_hosts", error="every host of the cluster was lost",
                                            inputs=job.inputs))

    async def _control(self, job: _ClusterJob, action: str, reason: str) -> JobResult:
        if job.result is None and job.host is None and job in self._pending:
            self._pending.remove(job)
            state = JobState.CANCELLED if action == "cancel" else JobState.ABANDONED
            self._finish(job, JobResult(job_id=job.id, flow=job.flow.name, state=state, reason=reason,
                                        inputs=job.inputs))
        elif job.result is None and job.host is not None and job.host.alive:
            await job.started_or_done()  # assigned a slot, its spawn there maybe still under way
            if job.result is None and job.host.alive:
                try:
                    await self._ray(job.host.actor.control.remote, job.id, action, reason)
                except self._ray_mod.exceptions.RayActorError:
                    await self._host_lost(job.host)
        await job.done.wait()
        assert job.result is not None
        return job.result

    async def _adopt(self) -> None:
        """Follow the jobs the (named) hosts already run: a controller attaching after another."""
        for host in self.hosts:
            for spec in await self._ray(host.actor.adopt.remote):
                job = _ClusterJob(spec["job_id"], flow_from_dict(spec["flow"]), spec["flow"], spec["inputs"],
                                  spec["record"], self.cluster.max_log_events)
                job.host = host
                job.state = JobState(spec["state"])
                host.jobs.add(job.id)
                self._live[job.id] = job
                job.launched.set()
                self._nursery.start_soon(self._follow, job, host, name=f"corral.cluster-follow:{job.id}")
        if self._live:
            log.info("corral.cluster.adopted", jobs=len(self._live), cluster=self.cluster.name)

    async def _detach(self) -> None:
        self._closing = True
        for job in list(self._pending):
            await self._control(job, "cancel", "detached")

    async def _shutdown(self, grace: float) -> None:
        self._closing = True
        ray = self._ray_mod
        for job in list(self._pending):
            await self._control(job, "cancel", "shutdown")
        async with trio.open_nursery() as n:
            for job in list(self._live.values()):
                n.start_soon(self._control, job, "cancel", "shutdown")
        for host in self.hosts:
            if host.alive:
                with trio.move_on_after(grace):
                    try:
                        await self._ray(host.actor.stop.remote)
                    except ray.exceptions.RayActorError:
                        pass
            await trio.to_thread.run_sync(_terminate, ray, host.actor, grace)
            host.alive = False


def _event_seq(event: Event) -> int:
    return event.seq


def _terminate(ray: Any, actor: Any, grace: float) -> None:
    try:
        ray.get(actor.__ray_terminate__.remote(), timeout=grace)
    except ray.exceptions.GetTimeoutError:
        ray.kill(actor)
    except ray.exceptions.RayActorError:
        pass


@asynccontextmanager
async def open_cluster_runtime(cluster: RayCluster, *, grace: float = 10.0, max_results: int = 10_000,
                               **runtime_kw: Any) -> AsyncIterator[ClusterRuntime]:
    """Open a runtime whose jobs run on Ray host actors, each hosting an embedded runtime.

    ``address=None`` starts a local Ray (``RAY_AUTH_MODE=disabled``) unless one is already
    initialised in this process; ``runtime_kw`` go to each host's ``open_runtime()``.  The
    controller keeps the ``max_results`` latest results.  Leaving the block cancels every job on
    every host, stops the hosts gracefully (``ray.kill`` after ``grace``) -- unless
    :meth:`ClusterRuntime.detach` was called on a named cluster.
    """
    import ray

    from ._host import Host

    started_ray = False
    if not ray.is_initialized():
        if cluster.address is None:
            os.environ.setdefault("RAY_AUTH_MODE", "disabled")
        await trio.to_thread.run_sync(lambda: ray.init(address=cluster.address, include_dashboard=False,
                                                       log_to_driver=False))
        started_ray = True
    actor_cls = ray.remote(num_cpus=0, max_concurrency=1000)(Host)
    runtime_kw = {**runtime_kw, "max_results": max_results}
    detached = False
    actors: list[Any] = []
    claim = None
    try:
        if cluster.name is not None:  # bounded by attach_timeout; not abandoned, so never leaked
            claim = await trio.to_thread.run_sync(_claim, ray, cluster)
        actors = await trio.to_thread.run_sync(_start_hosts, actor_cls, cluster, runtime_kw)
        infos = await trio.to_thread.run_sync(lambda: ray.get([a.info.remote() for a in actors]))
        hosts = [_HostRef(a, i["pid"], i["runtime_id"]) for a, i in zip(actors, infos, strict=True)]
        async with trio.open_nursery() as nursery:
            rt = ClusterRuntime(cluster, hosts, nursery, ray, max_results=max_results)
            if cluster.name is not None:
                await rt._adopt()
            try:
                yield rt
            finally:
                detached = rt._detached
                with trio.CancelScope(shield=True), trio.move_on_after(grace * (cluster.hosts + 2)):
                    await (rt._detach() if detached else rt._shutdown(grace))
                nursery.cancel_scope.cancel()
    finally:
        with trio.CancelScope(shield=True):
            if not detached:
                for a in actors:
                    await trio.to_thread.run_sync(_terminate, ray, a, grace)
            if claim is not None:  # the next controller may attach now
                await trio.to_thread.run_sync(ray.kill, claim)
            if started_ray:
                await trio.to_thread.run_sync(ray.shutdown)


def _start_hosts(actor_cls: Any, cluster: RayCluster, runtime_kw: dict[str, Any]) -> list[Any]:
    """Create the host actors; a named cluster gets (or re-gets) detached, named ones."""
    if cluster.name is None:
        return [actor_cls.remote(runtime_kw, cluster.max_log_events) for _ in range(cluster.hosts)]
    return [actor_cls.options(name=cluster.host_name(i), namespace=cluster.namespace, lifetime="detached",
                              get_if_exists=True).remote(runtime_kw, cluster.max_log_events)
            for i in range(cluster.hosts)]
