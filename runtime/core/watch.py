"""Which jobs of a runtime changed state: the feed behind the control endpoint's ``watch``.

Every job's :class:`~runtime.core.events.EventHub` tells its runtime's :class:`JobWatch` when it
publishes a lifecycle event (started, paused, resumed, finished).  Each watcher collects the ids
of the jobs that changed since it last looked, in a bounded set (past :data:`MAX_PENDING` ids it
only remembers that "many" changed), and parks on an event until there is one: N idle watchers
and jobs cost no wakeup.
"""

from __future__ import annotations

from collections.abc import Iterable

import trio

__all__ = ["MAX_PENDING", "JobWatch", "Watcher"]

#: Changed job ids a watcher keeps before it only knows that many changed.
MAX_PENDING = 1000


class Watcher:
    """One reader of a :class:`JobWatch`: ``async for changed in watcher`` yields the set of job
    ids that changed since the last step (``None``: more than :data:`MAX_PENDING` did)."""

    __slots__ = ("_closed", "_overflow", "_pending", "_wakeup")

    def __init__(self) -> None:
        self._pending: set[str] = set()
        self._overflow = False
        self._closed = False
        self._wakeup = trio.Event()

    def add(self, job_id: str) -> None:
        """``job_id`` changed (synchronous, never blocks)."""
        if not self._overflow:
            self._pending.add(job_id)
            if len(self._pending) > MAX_PENDING:
                self._overflow, self._pending = True, set()
        self._wakeup.set()

    def add_many(self, job_ids: Iterable[str] | None) -> None:
        """These jobs changed (``None``: an unknown many); an empty iterable only wakes the reader."""
        if job_ids is None:
            self._overflow, self._pending = True, set()
        for job_id in job_ids or ():
            self.add(job_id)
        self._wakeup.set()

    def close(self) -> None:
        """No more changes: the reader gets what is pending, then the iteration ends."""
        self._closed = True
        self._wakeup.set()

    def __aiter__(self) -> Watcher:
        return self

    async def __anext__(self) -> set[str] | None:
        await self._wakeup.wait()
        if self._closed and not self._pending and not self._overflow:
            raise StopAsyncIteration
        self._wakeup = trio.Event()
        if self._closed:
            self._wakeup.set()  # the next step ends the iteration
        changed: set[str] | None = None if self._overflow else self._pending
        self._pending, self._overflow = set(), False
        return changed


class JobWatch:
    """The watchers of one runtime's jobs."""

    __slots__ = ("_watchers",)

    def __init__(self) -> None:
        self._watchers: set[Watcher] = set()

    def changed(self, job_id: str) -> None:
        """``job_id`` changed state (called by its hub; synchronous, never blocks)."""
        for watcher in self._watchers:
            watcher.add(job_id)

    def open(self) -> Watcher:
        """A new watcher; :meth:`close` it when done."""
        watcher = Watcher()
        self._watchers.add(watcher)
        return watcher

    def close(self, watcher: Watcher) -> None:
        self._watchers.discard(watcher)

    @property
    def watchers(self) -> int:
        return len(self._watchers)
