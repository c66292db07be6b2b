"""The user's handle to a job on a cluster host: the methods of :class:`runtime.JobHandle`."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from runtime import Event, JobResult, JobView, Lagged

from ._events import ClusterEvents
from ._records import ClusterJob

if TYPE_CHECKING:
    from ._runtime import ClusterRuntime


class ClusterJobHandle(JobView):
    """A job on some host: the same methods as :class:`~runtime.JobHandle`, plus where it runs
    and :meth:`events_since` (re-attach by seq)."""

    __slots__ = ("_job", "_rt")
    _job: ClusterJob

    def __init__(self, rt: ClusterRuntime, job: ClusterJob) -> None:
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
        await self._rt._resume(self._job, payload)

    def events(self, *, replay: bool = False, maxlen: int | None = None) -> AsyncIterator[Event | Lagged]:
        """Events from now on (``replay=True``: from seq 0), as :meth:`runtime.JobHandle.events`.

        "Now" is the next seq the controller has seen when this is called: events the host already
        published that are still on their way to the controller are included (on a controller
        that has just adopted the job, that can be all of them), and nothing published after the
        call is missed.  On a cluster every job's log is kept whatever its
        ``record`` mode, so ``replay=True`` starts at seq 0 -- or, for a log longer than
        ``RayCluster.max_log_events``, with a :class:`Lagged` for the events it no longer holds.

        ``maxlen`` bounds how far a slow reader falls behind: when more than ``maxlen`` events
        wait for it, the oldest are skipped and one :class:`Lagged` says how many (the events stay
        in the job's log, which is shared; nothing is buffered per reader).  ``None``: as far
        behind as the log holds.  Ends after :class:`~runtime.JobFinished`.
        """
        job = self._job
        return ClusterEvents(job, 0 if replay else job.log.last_seq + 1, maxlen)

    def events_since(self, seq: int, *, maxlen: int | None = None) -> AsyncIterator[Event | Lagged]:
        """Events ``seq, seq + 1, ...`` (re-attach where a reader left off, on this or on a later
        controller's handle); a :class:`Lagged` first for those the log no longer holds."""
        return ClusterEvents(self._job, seq, maxlen)
