"""What a runtime holds, counted from the live objects themselves (``Runtime.stats()``)."""

from __future__ import annotations

from collections.abc import Iterable

import attrs

from actors.process import find_marked
from actors.tasks import walk_tasks

from .job import Job

__all__ = ["RuntimeStats", "count"]


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
    process_groups: int = 0
    """Process groups live jobs hold: agent adapters, command steps, agents' terminals."""


def count(runtime_id: str, live: Iterable[Job], *, pending: int, results: int) -> RuntimeStats:
    """Count what the ``live`` jobs of runtime ``runtime_id`` hold: trio tasks, processes (one scan
    of the process table for all jobs: every live process carrying the runtime's marker), streams,
    recorders and their bytes."""
    jobs = tasks = streams = recorders = recorded = groups = 0
    for job in live:
        jobs += 1
        if job.task is not None and job.result is None:
            tasks += sum(1 for _ in walk_tasks(job.task))
        groups += len(job.resources.process_groups)
        streams += job.resources.open_streams()
        recorder = job.recording.recorder
        if recorder is not None:
            recorders += 1
            recorded += recorder.bytes
    processes = len(find_marked(lambda m: m.runtime_id == runtime_id)) if groups else 0
    return RuntimeStats(
        live_jobs=jobs - pending, pending_jobs=pending, tasks=tasks, processes=processes,
        streams=streams, recorders=recorders, recorded_bytes=recorded, results=results, process_groups=groups,
    )
