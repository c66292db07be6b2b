"""How a job records, chosen once at spawn: ``off``, ``memory`` or ``durable``.

Each mode is a strategy object the job holds for its whole life; nothing compares a mode string
after spawn.

- ``off``: nothing is kept in memory; a job's record reaches the store only if the store is
  persistent (its final record).
- ``memory``: a bounded ring of the job's events (``events(replay=True)`` replays it), an
  :class:`~actors.recorder.Recorder` filled synchronously by the job's hub: no task.
- ``durable``: every event, checkpoint and record update written to the store in order by a
  recorder whose flusher is the job's own parked task (:meth:`Recording.park`); replay reads the
  store.  A write that fails ends the job FAILED ``store_error``.
"""

from __future__ import annotations

import typing
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, ClassVar, Literal

import attrs
import trio

from actors.log import get_logger
from actors.recorder import Recorder

from ..store import Checkpoint, EncodedEvent, JobRecord, JobUpdate, Store, StoreError, write_batch
from .events import (
    Event,
    JobFinished,
    Pending,
    bare_payload,
    event_from_dict,
    jsonable,
    materialize,
)
from .eventsize import ENVELOPE_BYTES, event_size
from .hub import EventHub
from .states import JobState, describe_error

__all__ = ["RECORD_MODES", "Prefetch", "RecordLimits", "RecordMode", "RecordOf", "Recording", "recording_for"]

_log = get_logger("corral.runtime")

RecordMode = Literal["off", "memory", "durable"]
RECORD_MODES: tuple[RecordMode, ...] = typing.get_args(RecordMode)

RecordOf = Callable[[JobState], JobRecord]
"""The job's store record in a state (built only when it is written)."""

Outcome = tuple[JobState, str | None, str | None]
"""How a job ended: its state, reason and error."""

Conclude = Callable[[Outcome], JobState]
"""Makes an outcome the job's result; returns the state its record is stored in."""

Prefetch = Callable[[int], Awaitable[list[Event]]]
"""Recorded events with a seq below the argument (a durable replay reads them from the store)."""


@attrs.frozen
class RecordLimits:
    """The bounds of each recording job's in-memory ring, and how long a durable job's writes wait to group."""

    max_events: int = 1000
    max_bytes: int = 1 << 20
    flush_window: float = attrs.field(default=0.05, validator=attrs.validators.ge(0))
    """Durable: what a job records within this many seconds is written in one transaction (a pause,
    ``flush_at`` pending items and the job's end are written at once)."""


class Recording:
    """Recording ``off``: no recorder, no log; the base of the other modes.  Holding nothing of
    its job, one ``off`` recording serves every job of a runtime (no allocation per job)."""

    mode: ClassVar[RecordMode] = "off"
    stores_events: ClassVar[bool] = False
    """Whether the job's events are in the store (``Runtime.events()`` replays them)."""
    __slots__ = ("_limits", "_on_error", "_store", "job_id", "recorder")

    def __init__(self, job_id: str, store: Store, limits: RecordLimits,
                 on_error: Callable[[BaseException], None]) -> None:
        self.job_id = job_id
        self._store = store
        self._limits = limits
        self._on_error = on_error  # a durable write failed: the job ends FAILED store_error
        self.recorder: Recorder | None = None

    @property
    def keeps_record(self) -> bool:
        """Whether the job's final record is written to the store."""
        return self._store.persistent

    async def start(self, nursery: trio.Nursery, hub: EventHub, record: RecordOf) -> None:
        """Start what this mode runs in the job's ``nursery`` and attach it to ``hub``.  With
        nothing to start, not a checkpoint: a job that records nothing costs no extra schedule."""

    async def park(self, abort: Callable[[Any], trio.lowlevel.Abort]) -> None:
        """Where the job task waits for its outcome (until :meth:`unpark`, or cancelled: then
        ``abort``, as for :func:`trio.lowlevel.wait_task_rescheduled`).  An idle job schedules nothing."""
        await trio.lowlevel.wait_task_rescheduled(abort)

    def unpark(self, task: trio.lowlevel.Task) -> None:
        """Wake the job ``task`` parked in :meth:`park`: its outcome is decided."""
        trio.lowlevel.reschedule(task)

    def checkpoint(self, step: str, outputs: Mapping[str, Any], iteration: int, attempt: int) -> None:
        """A step completed with ``outputs``."""

    def state_changed(self, state: JobState, resume_payload: Any) -> None:
        """The job paused or resumed."""

    def replay_source(self) -> tuple[list[Event] | None, Prefetch | None]:
        """What ``events(replay=True)`` starts from: a backlog of events, or a prefetch."""
        return None, None

    async def flush(self) -> BaseException | None:
        """Write what is queued (shielded: cancellation never drops a recorded event); the error
        that stopped the writes, if any.

        Not a checkpoint when there is nothing to write: a job's end (JobFinished, its result
        kept, its nursery gone) must not be split by a schedule point it does not need.
        """
        return None

    async def end(self, hub: EventHub, outcome: Outcome, conclude: Conclude, record: RecordOf) -> None:
        """The job's end: ``conclude(outcome)`` makes its result, JobFinished is published and the
        final record written (:meth:`finish`)."""
        stored = conclude(outcome)
        state, reason, error = outcome
        hub.publish(JobFinished, state=state.value, reason=reason, error=error)
        await self.finish(lambda _: record(stored), state)

    async def finish(self, record: RecordOf, state: JobState) -> None:
        """The job ended ``state``: write its final ``record(state)`` (built only if this mode keeps one), then
        let go of the recorder.  Shielded: a job cancelled by shutdown is still recorded."""
        try:
            if self.recorder is not None:
                await self.flush()  # the last events, JobFinished included
            if self.keeps_record:
                with trio.CancelScope(shield=True):
                    rec = record(state)
                    try:
                        await self._store.put_job(rec)
                    except StoreError as exc:
                        _log.error("job_record_failed", job_id=rec.job_id, error=str(exc))
        finally:
            self.recorder = None


class _MemoryRecording(Recording):
    """Recording ``memory``: a bounded ring of events in the job's nursery."""

    mode: ClassVar[RecordMode] = "memory"
    __slots__ = ()

    @property
    def keeps_record(self) -> bool:
        return True

    def _recorder(self) -> Recorder:
        return Recorder(max_events=self._limits.max_events, max_bytes=self._limits.max_bytes)

    async def start(self, nursery: trio.Nursery, hub: EventHub, record: RecordOf) -> None:
        # the ring is filled by the hub's keep, synchronously: no task (nothing to write, no window)
        self._begin(hub)
        await trio.lowlevel.checkpoint()

    def _begin(self, hub: EventHub) -> None:
        recorder = self._recorder()
        self.recorder = recorder
        self._attach(hub, recorder)

    def _attach(self, hub: EventHub, recorder: Recorder) -> None:
        # the ring: events sized, and built only to be replayed
        keep = hub.keep_sized = recorder.keeper()

        def sized(item: Event | Pending) -> None:
            keep(item, event_size(item))

        hub.keep = sized

    def replay_source(self) -> tuple[list[Event] | None, Prefetch | None]:
        if self.recorder is None:
            return None, None
        return [materialize(self.job_id, item) for item in self.recorder.backlog()], None


class _DurableRecording(_MemoryRecording):
    """Recording ``durable``: the ring, and the job's log, checkpoints and record in the store."""

    mode: ClassVar[RecordMode] = "durable"
    stores_events: ClassVar[bool] = True
    __slots__ = ("_stored",)

    def __init__(self, job_id: str, store: Store, limits: RecordLimits,
                 on_error: Callable[[BaseException], None]) -> None:
        super().__init__(job_id, store, limits, on_error)
        self._stored = False  # its record is in the store (written at start): the end updates what changed

    def _recorder(self) -> Recorder:
        store = self._store

        async def sink(batch: list[Any]) -> None:
            await write_batch(store, batch)

        # no ring: a durable replay reads the store
        return Recorder(max_events=None, max_bytes=self._limits.max_bytes,
                        sink=sink, on_error=self._on_error, flush_window=self._limits.flush_window,
                        flush_on_exit=False)  # end() writes the rest with JobFinished and the final record

    async def start(self, nursery: trio.Nursery, hub: EventHub, record: RecordOf) -> None:
        self._begin(hub)
        try:  # (the write is the schedule point)
            await self._store.put_job(record(JobState.RUNNING))
        except StoreError as exc:
            self._on_error(exc)
        else:
            self._stored = True

    async def park(self, abort: Callable[[Any], trio.lowlevel.Abort]) -> None:
        """The parked job task is the recorder's flusher (no task of its own): it writes what
        the job records within the flush window, and parks on an event while nothing is pending."""
        if self.recorder is None:
            await super().park(abort)
        else:  # (its recorder goes only at its end, after the park)
            await self.recorder.run()  # until unpark() stops it (its end writes the rest: end())

    def unpark(self, task: trio.lowlevel.Task) -> None:
        if self.recorder is None:
            super().unpark(task)
        else:
            self.recorder.stop()

    def _attach(self, hub: EventHub, recorder: Recorder) -> None:
        def sink(event: Event) -> None:
            row = _encoded(event)
            recorder.record(event, row, ENVELOPE_BYTES + len(row.text))

        hub.add_sink(sink)

    async def end(self, hub: EventHub, outcome: Outcome, conclude: Conclude, record: RecordOf) -> None:
        """The last events, JobFinished and the final record commit in one write; only then is
        JobFinished delivered.  If that write fails, a COMPLETED job ends FAILED ``store_error``."""
        recorder = self.recorder
        if recorder is None or recorder.failed is not None:
            await self._end_failed(hub, outcome, conclude, record)
            return
        stored = conclude(outcome)
        event = hub.build(JobFinished, state=outcome[0].value, reason=outcome[1], error=outcome[2])
        row = _encoded(event)
        size = ENVELOPE_BYTES + len(row.text)
        recorder.write(row, size)
        final = record(stored)
        # the end changes a few columns of the record written at start: set just those (the
        # unchanged indexed ones are not rewritten)
        recorder.write(JobUpdate(final.job_id, _end_fields(final)) if self._stored else final)
        with trio.CancelScope(shield=True):
            await recorder.flush()
        failed = typing.cast("BaseException | None", recorder.failed)  # set while it flushed, if it failed
        if failed is not None:
            _log.error("job_record_failed", job_id=self.job_id, error=describe_error(failed))
            if outcome[0] is JobState.COMPLETED:
                outcome = (JobState.FAILED, "store_error", describe_error(failed))
                conclude(outcome)
                event = JobFinished(job_id=event.job_id, seq=event.seq, ts=event.ts, state="failed",
                                    reason=outcome[1], error=outcome[2])
        recorder.record(event, None, size)
        self.recorder = None
        hub.deliver(event)

    async def _end_failed(self, hub: EventHub, outcome: Outcome, conclude: Conclude, record: RecordOf) -> None:
        """The end of a job whose writes failed before: it cannot have COMPLETED; its final record
        is still tried alone (the failure is logged)."""
        failed = self.recorder.failed if self.recorder is not None else None
        if failed is not None and outcome[0] is JobState.COMPLETED:
            outcome = (JobState.FAILED, "store_error", describe_error(failed))
        await super().end(hub, outcome, conclude, record)

    def checkpoint(self, step: str, outputs: Mapping[str, Any], iteration: int, attempt: int) -> None:
        if self.recorder is not None:
            self.recorder.write(Checkpoint(job_id=self.job_id, step=step, outputs=jsonable(dict(outputs)),
                                           iteration=iteration, attempt=attempt))

    def state_changed(self, state: JobState, resume_payload: Any) -> None:
        if self.recorder is not None:
            self.recorder.write(JobUpdate(self.job_id, {"state": state.value,
                                                        "resume_payload": jsonable(resume_payload)}), urgent=True)

    def replay_source(self) -> tuple[list[Event] | None, Prefetch | None]:
        recorder, store, job_id = self.recorder, self._store, self.job_id

        async def prefetch(before: int) -> list[Event]:
            if recorder is not None:
                await recorder.flush()
            return [event_from_dict(row.payload) for row in await store.read_events(job_id) if row.seq < before]

        return None, prefetch

    async def flush(self) -> BaseException | None:
        if self.recorder is None:
            return None
        with trio.CancelScope(shield=True):
            await self.recorder.flush()
        return self.recorder.failed


_END_FIELDS = ("state", "reason", "error", "outputs", "updated_at", "finished_at", "next_seq", "resume_payload")
"""What a job's end changes in its record (its flow, inputs, mode and creation time stay)."""


def _end_fields(final: JobRecord) -> dict[str, Any]:
    """The columns of ``final`` a job's end sets; its owner only when it lets go (drained)."""
    fields = {name: getattr(final, name) for name in _END_FIELDS}
    if final.runtime_id is None:
        fields["runtime_id"] = None
    return fields

def _encoded(event: Event) -> EncodedEvent:
    """``event``'s row in the store, serialised once, here."""
    return EncodedEvent.of(event.job_id, event.seq, event.type, event.ts, bare_payload(event))


_MODES: Mapping[str, type[Recording]] = {cls.mode: cls for cls in (Recording, _MemoryRecording, _DurableRecording)}


def recording_for(mode: str) -> type[Recording]:
    """The strategy of recording ``mode``; ``ValueError`` for an unknown one."""
    try:
        return _MODES[mode]
    except KeyError:
        raise ValueError(f"record must be one of {', '.join(RECORD_MODES)}, got {mode!r}") from None
