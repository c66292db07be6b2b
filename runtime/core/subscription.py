"""A subscriber's bounded queue of job events (see :class:`~runtime.core.events.EventHub`)."""

from __future__ import annotations

import collections
from collections.abc import AsyncGenerator
from typing import TYPE_CHECKING

import attrs
import trio

if TYPE_CHECKING:
    from .events import Event

__all__ = ["Lagged", "Subscription"]


@attrs.frozen
class Lagged:
    """Marker for a subscriber that fell behind: ``n`` events were dropped before the next one."""

    n: int


class Subscription:
    """One subscriber's bounded queue; parks on an event while empty."""

    __slots__ = ("closed", "dropped", "maxlen", "queue", "wakeup")

    def __init__(self, maxlen: int) -> None:
        self.queue: collections.deque[Event] = collections.deque()
        self.maxlen = maxlen
        self.dropped = 0
        self.closed = False
        self.wakeup: trio.Event | None = None

    def put(self, event: Event) -> None:
        if len(self.queue) >= self.maxlen:
            self.queue.popleft()
            self.dropped += 1
        self.queue.append(event)
        self._wake()

    def close(self) -> None:
        self.closed = True
        self._wake()

    def _wake(self) -> None:
        if self.wakeup is not None:
            self.wakeup.set()
            self.wakeup = None

    async def __aiter__(self) -> AsyncGenerator[Event | Lagged, None]:
        while True:
            if self.dropped:
                n, self.dropped = self.dropped, 0
                yield Lagged(n)
            elif self.queue:
                yield self.queue.popleft()
            elif self.closed:
                return
            else:
                self.wakeup = trio.Event()
                await self.wakeup.wait()
                continue
            await trio.lowlevel.checkpoint_if_cancelled()
