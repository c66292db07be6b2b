"""Leak checks and a wakeup counter; imports no pytest (usable in an app's own health checks)."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from typing import Protocol, runtime_checkable

import psutil
import trio

from actors.process import find_marked
from actors.tasks import walk_tasks

from ..core.runtime import Runtime

__all__ = ["LeakChecked", "LeakError", "WakeupCounter", "assert_no_leaks", "job_tasks", "marked_processes"]

_TASK_PREFIXES = ("corral.job:", "corral.step:", "corral.task:")


class LeakError(AssertionError):
    """Something a finished job started is still alive."""


@runtime_checkable
class LeakChecked(Protocol):
    """A runtime that checks itself (a cluster runtime checks its controller and every host)."""

    @property
    def id(self) -> str: ...

    def leak_problems(self, *, allow_live_jobs: bool = False) -> list[str]:
        """What finished jobs left, one problem per string (empty: nothing)."""
        ...


def job_tasks(job_ids: set[str] | None = None) -> list[str]:
    """Names of trio tasks that belong to jobs (all jobs, or those in ``job_ids``)."""
    return [task.name for task in walk_tasks()
            if task.name.startswith(_TASK_PREFIXES)
            and (job_ids is None or task.name.split(":", 2)[1] in job_ids)]


def marked_processes(rt: Runtime | LeakChecked) -> list[psutil.Process]:
    """Live OS processes carrying ``rt``'s marker (zombies excluded)."""
    runtime_id = rt.id
    return find_marked(lambda m: m.runtime_id == runtime_id)


def _zombie_children() -> list[int]:
    out = []
    for child in psutil.Process().children(recursive=True):
        try:
            if child.status() == psutil.STATUS_ZOMBIE:
                out.append(child.pid)
        except psutil.NoSuchProcess:
            pass
    return out


def assert_no_leaks(rt: Runtime | LeakChecked, *, allow_live_jobs: bool = False) -> None:
    """Assert that nothing of a finished job remains.

    A runtime that is not this process's :class:`~runtime.Runtime` checks itself through
    :class:`LeakChecked` (a cluster runtime checks its controller, runs this check inside every
    host and sweeps this machine's process table for the hosts' markers -- blocking Ray calls:
    from trio, prefer ``await runtime.cluster.testing.assert_cluster_no_leaks(rt)``).

    Checks ``rt.stats()`` (no live or pending jobs, and no tasks, processes, streams or recorders
    held by jobs), the runtime's root nursery, trio's whole task tree (no task of a job that is not
    live), the OS process table (no process carrying the runtime's marker) and zombies among this
    process's children.  Call it from inside the trio run, after the jobs you care about ended.
    """
    if not isinstance(rt, Runtime):
        found = rt.leak_problems(allow_live_jobs=allow_live_jobs)
        if found:
            raise LeakError("leaks: " + "; ".join(found))
        return
    stats = rt.stats()
    problems: list[str] = []
    if not allow_live_jobs:
        if stats.live_jobs or stats.pending_jobs:
            problems.append(f"{stats.live_jobs} live and {stats.pending_jobs} pending jobs")
        for field in ("tasks", "processes", "process_groups", "streams", "recorders"):
            if getattr(stats, field):
                problems.append(f"stats().{field} == {getattr(stats, field)}")
        if rt.nursery_tasks:
            problems.append(f"{rt.nursery_tasks} tasks in the runtime's root nursery")
    live_ids = {h.id for h in rt.jobs()}
    stray = [name for name in job_tasks() if name.split(":", 2)[1] not in live_ids]
    if stray:
        problems.append(f"tasks of finished jobs in trio's task tree: {stray[:5]}")
    if not allow_live_jobs:
        procs = marked_processes(rt)
        if procs:
            problems.append(f"processes carrying the runtime's marker: {[p.pid for p in procs]}")
    zombies = _zombie_children()
    if zombies:
        problems.append(f"zombie children: {zombies}")
    if problems:
        raise LeakError("leaks: " + "; ".join(problems))


class WakeupCounter(trio.abc.Instrument):
    """A trio Instrument counting ``task_scheduled`` for tasks matching ``predicate``.

    Pass it as a pytest fixture (pytest-trio hands every Instrument fixture to ``trio.run``) or add it
    with ``trio.lowlevel.add_instrument``.  Hooks only record; assert afterwards.
    """

    def __init__(self, predicate: Callable[[trio.lowlevel.Task], bool] | None = None) -> None:
        self.predicate = predicate or (lambda task: task.name.startswith(_TASK_PREFIXES))
        self.count = 0
        self.names: dict[str, int] = {}

    def task_scheduled(self, task: trio.lowlevel.Task) -> None:
        if self.predicate(task):
            self.count += 1
            self.names[task.name] = self.names.get(task.name, 0) + 1

    def reset(self) -> None:
        self.count = 0
        self.names.clear()



async def wait_exited(pids: Iterable[int]) -> None:
    """Return once every process of ``pids`` has exited (a zombie counts as exited): each one's
    pidfd turns readable, so nothing polls.  Bound it with ``trio.fail_after`` in a test."""
    for pid in pids:
        try:
            fd = os.pidfd_open(pid)
        except ProcessLookupError:
            continue
        try:
            await trio.lowlevel.wait_readable(fd)
        finally:
            os.close(fd)
