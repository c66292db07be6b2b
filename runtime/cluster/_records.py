"""What the controller knows of its hosts and of each job it placed or queued."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import trio

from runtime import Event, Flow, JobResult, JobState, RecordMode

from ._log import EventLog
from ._ray import ActorHandle


class HostRef:
    """A host actor: its process, its embedded runtime's id, the jobs it runs for this controller."""

    __slots__ = ("actor", "alive", "jobs", "name", "pid", "runtime_id")

    def __init__(self, actor: ActorHandle, pid: int, runtime_id: str, node: str = "") -> None:
        self.actor = actor
        self.pid = pid
        self.runtime_id = runtime_id
        self.jobs: set[str] = set()
        self.alive = True
        self.name = f"host pid {pid} on {node}" if node else f"host pid {pid}"
        """How errors name this host."""


class ClusterJob:
    """One job on the controller: where it runs, its state and result, and its copy of the job's
    event log (filled by the job's follower task, read by every :meth:`ClusterJobHandle.events`)."""

    def __init__(self, job_id: str, flow: Flow, flow_data: bytes, inputs: Mapping[str, Any],
                 record: RecordMode, max_log_events: int) -> None:
        self.id = job_id
        self.flow = flow
        self.flow_data = flow_data
        self.inputs = dict(inputs)
        self.record: RecordMode = record
        self.state = JobState.PENDING
        self.host: HostRef | None = None
        self.result: JobResult | None = None
        self.done = trio.Event()
        self.launched = trio.Event()
        self.log: EventLog[Event] = EventLog(max_log_events, _event_seq)
        self._changed = trio.Event()

    def append(self, event: Event) -> None:
        """Add the next event the host published; wake the readers."""
        self.log.append(event)
        self._wake()

    def finish(self, result: JobResult) -> None:
        """Record the result (once): the job is done; wake the readers and waiters."""
        self.result = result
        self.state = result.state
        self.done.set()
        self._wake()

    async def changed(self) -> None:
        """Return after the next :meth:`append` or :meth:`finish`."""
        await self._changed.wait()

    def _wake(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

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

    def ended(self, state: JobState, reason: str, error: str | None = None) -> JobResult:
        """A result for a job that ended on the controller's side (never ran, or lost its host)."""
        return JobResult(job_id=self.id, flow=self.flow.name, state=state, reason=reason, error=error,
                         inputs=self.inputs)


def _event_seq(event: Event) -> int:
    return event.seq
