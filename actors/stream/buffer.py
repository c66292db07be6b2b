"""The coalescing buffer between a fast producer and the job's event hub; it parks when idle.

:class:`StreamBuffer` publishes through ``publish``, a plain synchronous non-blocking callable.
The first delta is published at once; after that, consecutive deltas of the same channel are
merged and published when the buffer holds ``max_buffered_chars`` characters or when
``flush_interval`` has passed since the first buffered delta, whichever comes first. Channels are
never reordered. The buffer's ticker task (``buffer.run``, started in the job's nursery) holds a
timer only while something is buffered; otherwise it parks on an event, so any number of idle
buffers cost zero scheduler wakeups. The ticker exits as soon as the terminal update is published.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any

import trio

from ..log import get_logger
from .parts import Delta, DeltaPart, Done, Full, Part, StreamClosed, Update

__all__ = ["CLOSE_GRACE", "StreamBuffer"]

log = get_logger("actors.stream")

CLOSE_GRACE: float = 1.0
"""Seconds a close waits (shielded) for the buffer's ticker task to exit.

The ticker exits within one scheduling round once closed, so this bound only guards teardown."""


class _Run:
    """Consecutive buffered deltas of one channel, merged into one ``Delta`` when published."""

    __slots__ = ("channel", "chars", "cls", "first", "index", "metadata", "name", "pieces", "plain")

    def __init__(
        self, first: DeltaPart, index: int | None, metadata: Mapping[str, Any] | None, chunk: str
    ) -> None:
        self.first = first
        self.cls = type(first)
        self.channel = first._channel()
        self.index = index
        self.metadata = metadata
        self.name = first._name()
        self.pieces = [chunk]
        self.chars = len(chunk)
        self.plain = first._CHANNEL is None and first._NAME is None  # one channel, no names

    def joins(self, part: DeltaPart) -> bool:
        """Whether ``part`` (same class, index and metadata) continues this run's channel."""
        if part._channel() != self.channel:
            return False
        name = part._name()
        if name is not None:
            if self.name is None:
                self.name = name
            elif name != self.name:
                return False
        return True

    def update(self) -> Delta:
        """The merged ``Delta``; it keeps its index and metadata."""
        first = self.first
        if len(self.pieces) == 1 and self.name == first._name():
            part = first
        else:
            part = first._rebuilt("".join(self.pieces), self.name)
        return Delta(part, index=self.index, metadata=self.metadata)


class StreamBuffer:
    """Coalesces the deltas of one message and publishes them in order, then one terminal.

    Start the ticker in the job's nursery with ``await nursery.start(buffer.run)``; it lives until
    the terminal update is published (by :meth:`close_nowait` / :meth:`aclose`), or until the
    nursery is cancelled, in which case the buffered deltas are published, then
    ``Done(metadata={"cancelled": True})``.

    Args:
        publish: called synchronously with each :data:`Update`; must not block.
        max_buffered_chars: publish the buffer as soon as it holds this many characters
            (``0`` publishes every delta at once).
        flush_interval: seconds after the first buffered delta at which the buffer is published.
        index: the ``index`` given to published ``Delta`` updates and the synthesized ``Done``.
    """

    def __init__(
        self,
        publish: Callable[[Update], None],
        *,
        max_buffered_chars: int = 128,
        flush_interval: float = 0.05,
        index: int | None = None,
    ) -> None:
        if max_buffered_chars < 0:
            raise ValueError(f"max_buffered_chars must be >= 0, got {max_buffered_chars!r}")
        if not flush_interval >= 0:
            raise ValueError(f"flush_interval must be >= 0, got {flush_interval!r}")
        self._publish = publish
        self._max_chars = max_buffered_chars
        self._interval = flush_interval
        self._index = index
        self._runs: deque[_Run] = deque()
        self._chars = 0
        self._first_sent = False
        self._closing = False
        self._deadline = math.inf
        self._timer: trio.CancelScope | None = None
        self._wake = trio.Event()
        self._started = False
        self._finished = trio.Event()

    @property
    def index(self) -> int | None:
        """The index given to published deltas and to the synthesized ``Done``."""
        return self._index

    @property
    def closed(self) -> bool:
        """True once closing has begun: no delta is accepted any more."""
        return self._closing

    @property
    def buffered_chars(self) -> int:
        """Characters buffered and not yet published."""
        return self._chars

    @property
    def running(self) -> bool:
        """True while the ticker task (:meth:`run`) is alive."""
        return self._started and not self._finished.is_set()

    def add(self, delta: DeltaPart | Delta) -> None:
        """Buffer one delta; never blocks. The very first delta is published at once.

        A bare channel delta is published as ``Delta(delta, index=buffer.index)``; a ``Delta``
        keeps its own index and metadata and merges only with deltas that share them.

        Raises:
            StreamClosed: the buffer is closing or closed.
            TypeError: ``delta`` is not a delta.
        """
        if self._closing:
            raise StreamClosed("delta after the stream's terminal update")
        if isinstance(delta, Part):
            part, index, metadata = delta, self._index, None
        elif isinstance(delta, Delta):
            part, index, metadata = delta.delta, delta.index, delta.metadata
            if not isinstance(part, Part):
                raise TypeError(f"expected a delta part, got {type(part).__name__}")
        else:
            raise TypeError(f"expected a delta, got {type(delta).__name__}")
        if not self._first_sent:
            self._first_sent = True
            self._publish(delta if isinstance(delta, Delta) else Delta(part, index=index))
            return
        chunk = part.chunk
        runs = self._runs
        if runs:
            run = runs[-1]
            if (
                type(part) is run.cls
                and index == run.index
                and metadata == run.metadata
                and (run.plain or run.joins(part))
            ):
                run.pieces.append(chunk)
                run.chars += len(chunk)
            else:
                runs.append(_Run(part, index, metadata, chunk))
            self._chars += len(chunk)
            if self._chars >= self._max_chars:
                self._flush()
            return
        runs.append(_Run(part, index, metadata, chunk))
        self._chars += len(chunk)
        if self._chars >= self._max_chars:
            self._flush()
        else:
            self._arm()  # the window starts at the first buffered delta

    def close_nowait(self, terminal: Full | Done | None = None) -> bool:
        """Publish every buffered delta, then ``terminal`` (default ``Done(index=buffer.index)``).

        The closing flag is set before the drain, so a delta offered from now on (even from inside
        ``publish``) raises :class:`StreamClosed` instead of being published late. The ticker is
        woken to exit. Returns True if this call published the terminal, False if the buffer was
        already closed and ``terminal`` is None.

        Raises:
            StreamClosed: the buffer is already closed and a ``terminal`` was given.
        """
        if terminal is not None and not isinstance(terminal, Full | Done):
            raise TypeError(f"a terminal update is Full or Done, got {type(terminal).__name__}")
        if self._closing:
            if terminal is not None:
                raise StreamClosed("the stream's terminal update is already published")
            return False
        self._closing = True
        try:
            self._flush()
            self._publish(terminal if terminal is not None else Done(index=self._index))
        finally:
            self._disarm()
            self._wake.set()
        return True

    async def aclose(self, terminal: Full | Done | None = None) -> None:
        """:meth:`close_nowait`, then wait (shielded, bounded) until the ticker task has exited.

        The terminal is published before the first checkpoint, so even a cancelled close publishes
        the buffered deltas and the terminal. The ticker is reaped even when the buffer was
        already closed.
        """
        try:
            self.close_nowait(terminal)
        finally:
            await self._reap()
        await trio.lowlevel.checkpoint_if_cancelled()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """The ticker: publish the buffer when its window ends; exit after the terminal.

        Parks on an event while the buffer is empty (no deadline is armed). When the surrounding
        nursery is cancelled before the stream closed, it publishes the buffered deltas and then
        ``Done(index=buffer.index, metadata={"cancelled": True})``.
        """
        if self._started:
            raise RuntimeError("StreamBuffer.run was already started")
        self._started = True
        try:
            task_status.started()
            while not self._closing:
                with trio.CancelScope(deadline=self._deadline) as timer:
                    self._timer = timer
                    try:
                        await self._wake.wait()
                    finally:
                        self._timer = None
                if (
                    timer.cancelled_caught
                    and not self._closing
                    and trio.current_time() >= self._deadline
                ):
                    self._flush()
        except trio.Cancelled:
            if not self._closing:
                log.debug("stream buffer cancelled before its terminal", index=self._index)
                self.close_nowait(Done(index=self._index, metadata={"cancelled": True}))
            raise
        finally:
            self._finished.set()

    def _arm(self) -> None:
        self._deadline = trio.current_time() + self._interval
        if self._timer is not None:
            self._timer.deadline = self._deadline

    def _disarm(self) -> None:
        self._deadline = math.inf
        if self._timer is not None:
            self._timer.deadline = math.inf

    def _flush(self) -> None:
        # Pop one run at a time: a reentrant close (from inside publish) drains the same deque,
        # so every run is published exactly once and the terminal comes after all of them.
        runs = self._runs
        while runs:
            run = runs.popleft()
            self._chars -= run.chars
            self._publish(run.update())
        self._disarm()

    async def _reap(self) -> None:
        if self.running:
            with trio.move_on_after(CLOSE_GRACE, shield=True):
                await self._finished.wait()
