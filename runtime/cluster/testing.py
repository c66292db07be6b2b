"""Leak assertions for a cluster runtime (``runtime.testing.assert_no_leaks`` dispatches here)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import trio

from actors.process import find_marked

if TYPE_CHECKING:
    from ._runtime import ClusterRuntime

__all__ = ["assert_cluster_no_leaks", "cluster_leaks"]


def cluster_leaks(rt: ClusterRuntime, *, allow_live_jobs: bool = False) -> list[str]:
    """What a finished job left anywhere, as problem strings (blocking Ray calls).

    Checks the controller (no live or pending job, no follower task), each live host's own
    ``assert_no_leaks`` run inside its trio run, and the OS process table of this machine (no
    process carrying any host's marker, lost hosts included).
    """
    ray = rt._calls.ray
    problems: list[str] = []
    if not allow_live_jobs:
        if rt.jobs():
            problems.append(f"{len(rt.jobs())} live jobs on the controller")
        if rt.nursery_tasks:
            problems.append(f"{rt.nursery_tasks} tasks in the controller's nursery")
    alive = [h for h in rt.hosts if h.alive]
    found: list[str | None] = ray.get([h.actor.check_leaks.remote(allow_live_jobs) for h in alive])
    problems += [f"host {h.pid}: {problem}" for h, problem in zip(alive, found, strict=True) if problem]
    if not allow_live_jobs:
        ids = {h.runtime_id for h in rt.hosts}
        procs = find_marked(lambda m: m.runtime_id in ids)
        if procs:
            problems.append(f"processes carrying a host's marker: {[p.pid for p in procs]}")
    return problems


async def assert_cluster_no_leaks(rt: ClusterRuntime, *, allow_live_jobs: bool = False) -> None:
    """:func:`cluster_leaks` from trio without blocking the run; raises ``AssertionError``."""
    problems = await trio.to_thread.run_sync(lambda: cluster_leaks(rt, allow_live_jobs=allow_live_jobs))
    if problems:
        raise AssertionError("cluster leaks: " + "; ".join(problems))
