"""Leak assertions for a cluster runtime (the embedded ``assert_no_leaks`` inspects one trio run)."""

from __future__ import annotations

import trio

from actors.process import live_marked

from ._controller import ClusterRuntime

__all__ = ["assert_cluster_no_leaks"]


async def assert_cluster_no_leaks(rt: ClusterRuntime) -> None:
    """Assert nothing of a finished job remains anywhere: no live or pending job on the controller,
    each live host's own ``assert_no_leaks`` passes there, and no process on this machine carries
    any host's marker (hosts lost included)."""
    problems: list[str] = []
    if rt.jobs():
        problems.append(f"{len(rt.jobs())} live jobs on the controller")
    for host in rt.hosts:
        if host.alive:
            problem = await rt._ray(host.actor.check_leaks.remote)
            if problem:
                problems.append(f"host {host.pid}: {problem}")
    ids = {h.runtime_id for h in rt.hosts}
    procs = await trio.to_thread.run_sync(lambda: live_marked(lambda m: m.runtime_id in ids))
    if procs:
        problems.append(f"processes carrying a host's marker: {[p.pid for p in procs]}")
    if problems:
        raise AssertionError("cluster leaks: " + "; ".join(problems))
