"""The user's side of a job: the handle, what every handle shows, and its event iterator."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import Any, Protocol

import trio

from actors.actor import ActorStopped

from ..flow import Flow
from .events import Event, Lagged
from .hub import EventHub
from .job import Job
from .messages import Abandon, Cancel, Resume
from .recording import Prefetch
from .states import JobResult, JobState, JobStateError
from .subscription import Subscription

__all__ = ["EventIterator", "JobHandle", "JobView"]


class _Viewed(Protocol):
    """What a :class:`JobView` reads: a job here, or a cluster's record of one on a host."""

    @property
    def id(self) -> str: ...
    @property
    def state(self) -> JobState: ...
    @property
    def flow(self) -> Flow: ...
    @property
    def result(self) -> JobResult | None: ...


class EventIterator:
    """``async for event in job.events()``; subscribed when created, so nothing is missed.

    ``prefetch`` (durable replay) is awaited on first use: it returns the recorded events that came
    before the subscription; live events with a seq already yielded are skipped.
    """

    def __init__(self, sub: Subscription, hub: EventHub, prefetch: Prefetch | None = None) -> None:
        self._sub = sub
        self._hub = hub
        self._it = sub.__aiter__()
        self._prefetch = prefetch
        self._first_live = hub.next_seq
        self._backlog: list[Event] = []
        self._last_seq = -1

    def __aiter__(self) -> EventIterator:
        return self

    async def __anext__(self) -> Event | Lagged:
        if self._prefetch is not None:
            prefetch, self._prefetch = self._prefetch, None
            self._backlog = [e for e in await prefetch(self._first_live) if e.seq < self._first_live]
        if self._backlog:
            event = self._backlog.pop(0)
            self._last_seq = event.seq
            return event
        try:
            while True:
                item = await self._it.__anext__()
                if isinstance(item, Lagged) or item.seq > self._last_seq:
                    if not isinstance(item, Lagged):
                        self._last_seq = item.seq
                    return item
        except StopAsyncIteration:
            self._hub.unsubscribe(self._sub)
            raise

    async def aclose(self) -> None:
        self._hub.unsubscribe(self._sub)
        await self._it.aclose()


class JobView:
    """What every job handle shows of its job: this runtime's, or one on a cluster host."""

    __slots__ = ()
    _job: _Viewed  # set by the subclass

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.id} {self._job.flow.name} {self.state.value}>"

    @property
    def id(self) -> str:
        """The job id: the ``job_id`` given to spawn, or a generated hex uuid (``JobResult.job_id``)."""
        return self._job.id

    @property
    def state(self) -> JobState:
        """The current state; terminal only once the nursery has closed (see :meth:`wait`)."""
        return self._job.state

    @property
    def flow(self) -> Flow:
        """The :class:`~runtime.Flow` the job runs."""
        return self._job.flow

    @property
    def result(self) -> JobResult | None:
        """The result once the job has ended and its nursery closed (on its host), else ``None``."""
        return self._job.result


class JobHandle(JobView):
    """The user's handle to a job.  Cheap; holds no resources of its own.

    Attributes: ``id``, ``state``, ``flow`` and ``result`` (``None`` until the job has ended).
    """

    __slots__ = ("_job",)
    _job: Job

    def __init__(self, job: Job) -> None:
        self._job = job

    @property
    def record(self) -> str:
        """The job's recording mode (``off``, ``memory`` or ``durable``)."""
        return self._job.record

    @property
    def created_at(self) -> float:
        """When the job was first spawned (``time.time()``; kept across a resume)."""
        return self._job.created_at

    @property
    def inputs(self) -> Mapping[str, Any]:
        """The job's bound inputs."""
        return self._job.inputs

    async def wait(self) -> JobResult:
        """Wait until the job has ended *and* its nursery closed (processes reaped)."""
        return await self._job.wait()

    async def cancel(self, reason: str = "cancelled") -> JobResult:
        """End the job CANCELLED; returns once it is torn down."""
        return await self._control(Cancel(reason))

    async def abandon(self, reason: str = "abandoned") -> JobResult:
        """End the job ABANDONED; returns once it is torn down."""
        return await self._control(Abandon(reason))

    async def _control(self, msg: Cancel | Abandon) -> JobResult:
        await self._job.control(msg)
        return await self._job.wait()

    async def release(self) -> JobResult:
        """Let go of this durable job without ending it: no new step starts, and once the running
        ones are done (a PAUSED job: at once) it ends here INTERRUPTED, reason ``"released"``,
        its record left live and ownerless with its checkpoints, for another runtime to resume
        (``rt.adopt(job_id)``, ``open_runtime(resume=True)``, ``corral resume``).

        Raises :class:`JobStateError` for a job that is not recorded durably (nothing could
        resume it).  See also :meth:`Runtime.drain`, which lets go of every job.
        """
        if not self._job.recording.stores_events:
            await trio.lowlevel.checkpoint()
            raise JobStateError(f"job {self.id} is not recorded durably (record={self._job.record!r}): "
                                "no other runtime could resume it; cancel it instead")
        self._job.drain("released")
        return await self._job.wait()

    async def resume(self, payload: Any = None) -> None:
        """Resume a PAUSED job; ``payload`` is visible to later steps as ``$resume``.

        Raises :class:`JobStateError` if the job is not paused, or if it has ended: a job's outcome
        can be decided while it is paused (a sibling step fails, the flow times out), and ``state``
        reads PAUSED until its nursery has closed and the terminal state is known.
        """
        if self._job.state is not JobState.PAUSED:
            await trio.lowlevel.checkpoint()
            raise JobStateError(f"job {self.id} is {self.state.value}, not paused")
        await trio.lowlevel.checkpoint_if_cancelled()  # no schedule point between check and act
        try:
            error = self._job.request_nowait(Resume(payload))
        except ActorStopped:
            raise JobStateError(f"job {self.id} has ended") from None
        if error is not None:
            raise error
        await trio.lowlevel.cancel_shielded_checkpoint()  # resumed: a cancel now must not say otherwise

    def events(self, *, replay: bool = False, maxlen: int | None = None) -> AsyncIterator[Event | Lagged]:
        """Events from now on (``replay=True``: from seq 0, when the job records them).

        The subscription starts when this is called, ends after :class:`JobFinished`, and buffers
        at most ``maxlen`` events; a subscriber that falls behind gets a :class:`Lagged` marker.
        """
        job = self._job
        if not replay:
            return EventIterator(job.hub.subscribe(None, maxlen), job.hub)
        backlog, prefetch = job.recording.replay_source()
        return EventIterator(job.hub.subscribe(backlog, maxlen), job.hub, prefetch)
