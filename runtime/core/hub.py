"""The per-job hub that fans events out to bounded subscriptions.

A subscription buffers at most ``maxlen`` events; when a subscriber falls behind, the oldest
events are dropped and it receives one :class:`~runtime.core.events.Lagged` marker telling how
many it missed -- never unbounded memory, never a stalled job.  The last event of a job,
:class:`~runtime.core.events.JobFinished`, is never dropped.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from actors.stream import Delta, TextDelta

from .events import Event, JobFinished, Pending, StepStream
from .eventsize import TEXT_DELTA_BYTES
from .subscription import Subscription

__all__ = ["EventHub"]


class EventHub:
    """Assigns ``seq`` and ``ts`` and fans events out.  Synchronous and non-blocking to publish.

    ``sink`` (optional) sees every event first: the job's recorder (:meth:`add_sink`).  ``keep``
    (optional) is a ring that wants events only to replay them: while nobody listens it gets a
    :data:`Pending` (the event's class, seq, ts and fields; :func:`materialize` builds it), so that
    an event nobody reads now is not built.  ``observer`` (optional) sees every event as it is
    delivered, after the recorder took it -- :class:`JobFinished` included, which a durable job
    delivers only once it is written: the job's tracing spans.
    ``on_change`` (optional) is told the job's id when a lifecycle event (started, paused, resumed)
    is published: the runtime's :class:`~runtime.core.watch.JobWatch` (which its runtime tells of a
    job's end, once the job has left its live jobs).
    """

    def __init__(self, job_id: str, *, first_seq: int = 0, maxlen: int = 1024,
                 sink: Callable[[Event], None] | None = None,
                 on_change: Callable[[str], None] | None = None) -> None:
        self.job_id = job_id
        self.on_change = on_change
        self.next_seq = first_seq
        self.maxlen = maxlen
        self.sink = sink
        self.keep: Callable[[Event | Pending], None] | None = None
        self.keep_sized: Callable[[Pending, int], None] | None = None
        """The ``keep`` ring for an item whose size its publisher knows (a stream's text token)."""
        self.observer: Callable[[Event], None] | None = None
        self.closed = False
        self._subs: set[Subscription] = set()

    def publish(self, cls: type[Event], **fields: Any) -> Event | None:
        """Build a ``cls`` event with the next seq and deliver it (the event, or ``None`` when
        nobody listens: then only its seq is taken)."""
        if self.closed:
            raise RuntimeError(f"job {self.job_id}: event published after JobFinished")
        if self.sink is None and self.observer is None and not self._subs:
            if self.keep is not None:
                self.keep((cls, self.next_seq, time.time(), fields))
            self.next_seq += 1
            if cls.lifecycle and self.on_change is not None:
                self.on_change(self.job_id)
            if cls is JobFinished:
                self.closed = True
            return None
        event = cls(job_id=self.job_id, seq=self.next_seq, ts=time.time(), **fields)
        self.next_seq += 1
        if self.sink is not None:
            self.sink(event)
        if self.keep is not None:
            self.keep(event)
        self.deliver(event)
        return event

    def step_stream(self, step: str) -> Callable[[Any], None]:
        """A sink publishing each stream update it is given as ``step``'s :class:`StepStream`
        event, and nothing once the hub is closed: :meth:`publish` for a reply's every token,
        without its keyword dict and lifecycle checks."""
        text_size = TEXT_DELTA_BYTES + len(step)

        def publish(update: Any) -> None:
            if self.closed:
                return
            if self.sink is None and self.observer is None and not self._subs:
                seq = self.next_seq
                self.next_seq = seq + 1
                keep = self.keep_sized
                if (keep is not None and type(update) is Delta and type(part := update.delta) is TextDelta
                        and update.metadata is None):
                    keep((StepStream, seq, time.time(), {"step": step, "update": update}), text_size + len(part.text))
                elif self.keep is not None:
                    self.keep((StepStream, seq, time.time(), {"step": step, "update": update}))
                return
            self.publish(StepStream, step=step, update=update)

        return publish

    def build(self, cls: type[Event], **fields: Any) -> Event:
        """A ``cls`` event with the next seq, not yet delivered: the caller writes it first, then
        hands it to :meth:`deliver`."""
        if self.closed:
            raise RuntimeError(f"job {self.job_id}: event published after JobFinished")
        event = cls(job_id=self.job_id, seq=self.next_seq, ts=time.time(), **fields)
        self.next_seq += 1
        return event

    def deliver(self, event: Event) -> None:
        """Give ``event`` to the observer and every subscriber (not to the sink); a
        :class:`JobFinished` closes the hub."""
        if self.observer is not None:
            self.observer(event)
        for sub in self._subs:
            sub.put(event)
        if event.lifecycle and self.on_change is not None:
            self.on_change(self.job_id)
        if type(event) is JobFinished:
            self.close()

    def add_sink(self, sink: Callable[[Event], None]) -> None:
        """Feed every event to ``sink`` too, after the sinks already there.  No sink (and no
        observer, no subscriber) at all: events nobody listens to are not built."""
        first = self.sink
        if first is None:
            self.sink = sink
            return

        def both(event: Event) -> None:
            first(event)
            sink(event)

        self.sink = both

    def close(self) -> None:
        """No more events: every subscription ends after draining."""
        self.closed = True
        for sub in self._subs:
            sub.close()
        self._subs.clear()

    @property
    def subscribers(self) -> int:
        return len(self._subs)

    def subscribe(self, backlog: list[Event] | None = None, maxlen: int | None = None) -> Subscription:
        """A new subscription, pre-filled with ``backlog`` (replayed events)."""
        sub = Subscription(maxlen or self.maxlen)
        for event in backlog or ():
            sub.put(event)
        if self.closed:
            sub.close()
        else:
            self._subs.add(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        self._subs.discard(sub)
