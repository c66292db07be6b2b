"""Opening a cluster runtime: Ray, the hold on a named cluster, the host actors, and the end."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import trio

from ._claim import claim
from ._config import RayCluster
from ._host import Host, HostInfo, HostOptions
from ._ray import ActorHandle, Ray, RayCalls, import_ray
from ._records import HostRef
from ._runtime import ClusterRuntime


@asynccontextmanager
async def open_cluster_runtime(cluster: RayCluster, *, max_running_jobs: int | None = None,
                               max_results: int = 10_000, store: str | os.PathLike[str] | None = None,
                               resume: bool = False, workspace: str | os.PathLike[str] | None = None,
                               stdin_grace: float = 0.5, term_grace: float = 2.0,
                               record_max_events: int = 1000, record_max_bytes: int = 1 << 20,
                               grace: float = 10.0) -> AsyncIterator[ClusterRuntime]:
    """Open a runtime whose jobs run on Ray host actors, each host an embedded runtime.

    The keyword arguments are :func:`runtime.open_runtime`'s, passed to each host's runtime, except
    that ``store`` must be a path (each host opens its own SqliteStore there) and ``resume`` and
    ``max_running_jobs`` are refused (see :class:`RayCluster`).  The controller keeps the
    ``max_results`` latest results too.  ``address=None`` starts a local Ray
    (``RAY_AUTH_MODE=disabled``) unless one is already initialised in this process.  Leaving the
    block cancels every job on every host and stops the hosts gracefully (``ray.kill`` after
    ``grace``) -- unless :meth:`ClusterRuntime.detach` was called on a named cluster.
    """
    options = _host_options(max_running_jobs=max_running_jobs, resume=resume, store=store,
                            max_results=max_results, workspace=workspace, stdin_grace=stdin_grace,
                            term_grace=term_grace, record_max_events=record_max_events,
                            record_max_bytes=record_max_bytes)
    ray = import_ray()
    started_ray = await _connect(ray, cluster)
    calls = RayCalls(ray, max(64, 4 * cluster.hosts * cluster.jobs_per_host))
    detached = False
    actors: list[ActorHandle] = []
    held: ActorHandle | None = None
    try:
        if cluster.name is not None:  # bounded by attach_timeout; not abandoned, so never leaked
            held = await trio.to_thread.run_sync(claim, ray, cluster)
        actors = await trio.to_thread.run_sync(_start_hosts, ray, cluster, options)
        infos: list[HostInfo] = await trio.to_thread.run_sync(lambda: ray.get([a.info.remote() for a in actors]))
        hosts = [HostRef(a, i["pid"], i["runtime_id"], i["node"]) for a, i in zip(actors, infos, strict=True)]
        async with trio.open_nursery() as nursery:
            rt = ClusterRuntime(cluster, hosts, nursery, calls, max_results=max_results)
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
                    await calls.terminate(a, grace)
            if held is not None:  # the next controller may attach now
                await trio.to_thread.run_sync(ray.kill, held)
            if started_ray:
                await trio.to_thread.run_sync(ray.shutdown)


def _host_options(*, max_running_jobs: int | None, resume: bool, store: object, max_results: int,
                  workspace: str | os.PathLike[str] | None, stdin_grace: float, term_grace: float,
                  record_max_events: int, record_max_bytes: int) -> HostOptions:
    """What each host's ``open_runtime()`` gets; refuses what a cluster cannot honour."""
    if max_running_jobs is not None:
        raise ValueError("max_running_jobs: on a cluster the bound is RayCluster(jobs_per_host=...)")
    if resume:
        raise ValueError("resume: not supported on a cluster; a named RayCluster lets a new "
                         "controller adopt the jobs its hosts still run")
    if store is not None and not isinstance(store, str | os.PathLike):
        raise TypeError("store: on a cluster give a path (each host opens its own SqliteStore "
                        f"there), not a {type(store).__name__} object")
    return HostOptions(max_results=max_results, store=None if store is None else os.fspath(store),
                       workspace=None if workspace is None else os.fspath(workspace),
                       stdin_grace=stdin_grace, term_grace=term_grace,
                       record_max_events=record_max_events, record_max_bytes=record_max_bytes)


async def _connect(ray: Ray, cluster: RayCluster) -> bool:
    """Initialise Ray for ``cluster`` unless it is already; whether this call started it."""
    if ray.is_initialized():
        await trio.lowlevel.checkpoint()
        return False
    if cluster.address is None:
        os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    await trio.to_thread.run_sync(lambda: ray.init(address=cluster.address, include_dashboard=False,
                                                   log_to_driver=False))
    return True


def _start_hosts(ray: Ray, cluster: RayCluster, options: HostOptions) -> list[ActorHandle]:
    """Create the host actors; a named cluster gets (or re-gets) detached, named ones."""
    actor_cls = ray.remote(num_cpus=0, max_concurrency=1000)(Host)
    if cluster.name is None:
        return [actor_cls.remote(options, cluster.max_log_events) for _ in range(cluster.hosts)]
    return [actor_cls.options(name=cluster.host_name(i), namespace=cluster.namespace, lifetime="detached",
                              get_if_exists=True).remote(options, cluster.max_log_events)
            for i in range(cluster.hosts)]
