"""A reader of one job's events on the controller: its copy of the host's numbered log."""

from __future__ import annotations

import trio

from runtime import Event, JobFinished, Lagged

from ._records import ClusterJob


class ClusterEvents:
    """``async for event in handle.events()``: the job's events from seq ``first`` on, in order,
    without duplicates, ending after :class:`JobFinished` (or once the job's result is known).

    Read from the controller's copy of the job's log (which its follower fills as the host
    publishes), so the position is fixed when this is created and nothing published after that is
    missed.  A :class:`Lagged` ``(n)`` stands for ``n`` events skipped: ones the bounded log no
    longer holds (``RayCluster.max_log_events``), and, with ``maxlen``, the oldest of those not yet
    read when more than ``maxlen`` are waiting -- the reader then gets the newest ``maxlen``, as an
    embedded subscription holding ``maxlen`` would.  Nothing is buffered per reader.
    """

    __slots__ = ("_done", "_job", "_maxlen", "_next")

    def __init__(self, job: ClusterJob, first: int, maxlen: int | None = None) -> None:
        if maxlen is not None and maxlen < 0:
            raise ValueError(f"maxlen must be >= 0 or None, got {maxlen}")
        self._job = job
        self._next = first
        self._maxlen = maxlen or None  # 0 or None: bounded by the log only
        self._done = False

    def __aiter__(self) -> ClusterEvents:
        return self

    async def __anext__(self) -> Event | Lagged:
        job = self._job
        while not self._done and job.log.last_seq < self._next:
            if job.done.is_set():
                self._done = True
            else:
                await job.changed()
        if self._done:
            await trio.lowlevel.checkpoint()
            raise StopAsyncIteration
        await trio.lowlevel.checkpoint_if_cancelled()
        skipped = 0
        waiting = job.log.last_seq + 1 - self._next
        if self._maxlen is not None and waiting > self._maxlen:
            skipped = waiting - self._maxlen
            self._next += skipped
        event = job.log.first_from(self._next)
        assert event is not None  # the log holds seqs up to last_seq >= self._next
        if event.seq > self._next:  # trimmed, or never reached the controller
            skipped += event.seq - self._next
            self._next = event.seq
        if skipped:
            return Lagged(skipped)
        self._next = event.seq + 1
        self._done = isinstance(event, JobFinished)
        return event

    async def aclose(self) -> None:
        """Stop reading (nothing to release: the log belongs to the job)."""
        self._done = True
        await trio.lowlevel.checkpoint()
