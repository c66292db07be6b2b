"""The per-job recorder: a bounded ring for late subscribers and/or a batched writer to a sink.

A recorder belongs to one job and lives in the job's nursery (``await nursery.start(rec.run)``).
It is created only when a job asks for recording; a job that records nothing has no recorder and
allocates nothing per event.

- ``ring`` (``max_events`` / ``max_bytes``): the most recent events, so a late subscriber can
  catch up.  Older events are dropped and counted in :attr:`Recorder.dropped`.
- ``sink``: an async callable that persists a batch of items (event rows, checkpoints, ...).
  :meth:`record` and :meth:`write` never block; the flusher task takes everything pending in one
  batch, parks on an event while nothing is pending (no polling; a timer only while something is
  pending and ``flush_window`` is set: it then writes what came within the window in one batch,
  at once for an urgent item or ``flush_at`` pending ones), and on cancellation writes what is
  left under a shield, bounded by ``flush_grace`` (unless ``flush_on_exit=False``: then its owner
  calls :meth:`flush` after the task ended, to write what is left with its own last items).
  :meth:`stop` ends :meth:`run` without a cancellation (an owner that runs it in its own task).
"""

from __future__ import annotations

import collections
from collections.abc import Awaitable, Callable
from typing import Any

import trio

from .log import get_logger

__all__ = ["Recorder", "RecorderFailed"]

_log = get_logger("actors.recorder")


class RecorderFailed(Exception):
    """The sink failed; the recorder stops writing and reports through ``on_error``."""


class Recorder:
    """Bounded in memory, batched to the sink."""

    def __init__(self, *, max_events: int | None = 1000, max_bytes: int = 1 << 20,
                 sink: Callable[[list[Any]], Awaitable[None]] | None = None,
                 on_error: Callable[[BaseException], None] | None = None,
                 flush_grace: float = 30.0, flush_window: float = 0.0, flush_at: int = 512,
                 flush_on_exit: bool = True) -> None:
        if flush_window < 0 or flush_at < 1:
            raise ValueError("flush_window must be >= 0 and flush_at >= 1")
        self._ring: collections.deque[tuple[Any, int]] | None = (
            collections.deque() if max_events else None)
        self.max_events = max_events or 0
        self.max_bytes = max_bytes
        self._sink = sink
        self._on_error = on_error
        self._flush_grace = flush_grace
        self._pending: list[Any] = []
        self._pending_bytes = 0
        self._ring_bytes = 0
        self._wakeup = trio.Event()
        self._flush_window = flush_window
        self._flush_at = flush_at
        self._flush_on_exit = flush_on_exit
        self._hurry = trio.Event()
        self._stopped = trio.Event()
        self._flushing: trio.Event | None = None  # set when the flush under way is done
        self.dropped = 0
        self._counted = 0  # events recorded without a ring (with one: those in it, and the dropped)
        self.written = 0
        self.failed: BaseException | None = None

    @property
    def recorded(self) -> int:
        """How many events were recorded (the ones in the ring and the ones dropped from it)."""
        return self._counted if self._ring is None else len(self._ring) + self.dropped

    @property
    def bytes(self) -> int:
        """Bytes held in memory: the ring plus what waits to be written."""
        return self._ring_bytes + self._pending_bytes

    def record(self, event: Any, item: Any = None, size: int = 0) -> None:
        """Keep ``event`` in the ring and queue ``item`` (if given) for the sink.  Never blocks."""
        ring = self._ring
        if ring is None:
            self._counted += 1
        else:
            ring.append((event, size))
            self._ring_bytes += size
            if len(ring) > self.max_events or self._ring_bytes > self.max_bytes:
                self._trim(ring)
        if item is not None:
            self.write(item, size)

    def keeper(self) -> Callable[[Any, int], None]:
        """:meth:`record` for a publisher's sink (ring only, nothing written): ``keep(event,
        size)``.  The hot path of in-memory recording."""
        ring = self._ring
        if ring is None:
            def count(event: Any, size: int) -> None:
                self._counted += 1

            return count

        append, popleft, max_events, max_bytes = ring.append, ring.popleft, self.max_events, self.max_bytes

        def keep(event: Any, size: int) -> None:
            append((event, size))
            if len(ring) > max_events:  # full: the common case of a long stream, inline
                size -= popleft()[1]
                self.dropped += 1
            held = self._ring_bytes = self._ring_bytes + size
            if held > max_bytes:
                self._trim(ring)

        return keep

    def _trim(self, ring: collections.deque[tuple[Any, int]]) -> None:
        while len(ring) > self.max_events or (self._ring_bytes > self.max_bytes and len(ring) > 1):
            _, old = ring.popleft()
            self._ring_bytes -= old
            self.dropped += 1

    def write(self, item: Any, size: int = 0, *, urgent: bool = False) -> None:
        """Queue ``item`` for the sink.  Never blocks.  With a ``flush_window``, an ``urgent`` item
        (or ``flush_at`` pending ones) is written at once, anything else within the window."""
        if self._sink is None or self.failed is not None:
            return
        self._pending.append(item)
        self._pending_bytes += size
        self._wakeup.set()
        if urgent or len(self._pending) >= self._flush_at:
            self._hurry.set()

    def stop(self) -> None:
        """Let :meth:`run` return at its next wake-up (at once if it is parked): cheaper than
        cancelling it, for an owner that writes what is left itself."""
        self._stopped.set()
        self._wakeup.set()
        self._hurry.set()

    def backlog(self) -> list[Any]:
        """The events in the ring, oldest first."""
        return [event for event, _ in self._ring] if self._ring is not None else []

    async def flush(self) -> None:
        """Write everything queued so far; returns when the sink has it.  Not a schedule point
        when there is nothing to write (and no lock to take: a flush under way is waited for)."""
        while self._flushing is not None:  # another task's flush: wait for it, then write the rest
            await self._flushing.wait()
        if not self._pending or self.failed is not None:
            return
        self._flushing = trio.Event()
        try:
            while self._pending and self.failed is None:
                batch, self._pending = self._pending, []
                self._pending_bytes = 0
                try:
                    assert self._sink is not None
                    # a batch taken from the queue is written even if we are cancelled meanwhile
                    # (shielded, bounded): cancellation must never drop recorded events
                    with trio.CancelScope(shield=True, deadline=trio.current_time() + self._flush_grace) as scope:
                        await self._sink(batch)
                    if scope.cancelled_caught:
                        raise RecorderFailed(f"writing {len(batch)} items took longer than {self._flush_grace}s")
                except Exception as exc:
                    self.failed = exc
                    _log.error("recorder_write_failed", error=repr(exc), items=len(batch))
                    if self._on_error is not None:
                        self._on_error(exc)
                    return
                self.written += len(batch)
        finally:
            done, self._flushing = self._flushing, None
            done.set()

    async def run(self, *, task_status: trio.TaskStatus[Recorder] = trio.TASK_STATUS_IGNORED) -> None:
        """The flusher: parks while nothing is pending; returns after :meth:`stop`; flushes
        (shielded, bounded) when cancelled or stopped."""
        task_status.started(self)
        try:
            while self._sink is not None and self.failed is None and not self._stopped.is_set():
                if not self._wakeup.is_set():  # (set: no schedule point to spend before the window)
                    await self._wakeup.wait()
                if self._flush_window and not self._hurry.is_set():
                    # group commit: what the job records within the window goes in one write
                    with trio.move_on_after(self._flush_window):
                        await self._hurry.wait()
                if self._stopped.is_set():
                    break
                self._wakeup = trio.Event()
                self._hurry = trio.Event()
                await self.flush()
            if not self._stopped.is_set():
                await self._stopped.wait()
        finally:
            if self._flush_on_exit:  # else its owner flushes (with what it writes last)
                with trio.CancelScope(shield=True):
                    await self.flush()
