"""How a job records, chosen once at spawn: ``off``, ``memory`` or ``durable``.

Each mode is a strategy object the job holds for its whole life; nothing compares a mode string
after spawn.

- ``off``: nothing is kept in memory; a job's record reaches the store only if the store is
  persistent (its final record).
- ``memory``: a bounded ring of the job's events (``events(replay=True)`` replays it), run as a
  :class:`~actors.recorder.Recorder` task in the job's nursery.
- ``durable``: the ring, plus every event, checkpoint and record update written to the store in
  order by that recorder; replay reads the store.  A write that fails ends the job FAILED
  ``store_error``.
"""

from __future__ import annotations

import json
import typing
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, ClassVar, Literal

import attrs
import trio

from actors.log import get_logger
from actors.recorder import Recorder

from ..store import Checkpoint, EventRow, JobRecord, JobUpdate, Store, StoreError, write_batch
from .events import Event, EventHub, event_from_dict, event_to_dict, jsonable
from .states import JobState

__all__ = ["RECORD_MODES", "Prefetch", "RecordLimits", "RecordMode", "RecordOf", "Recording", "recording_for"]

_log = get_logger("corral.runtime")

RecordMode = Literal["off", "memory", "durable"]
RECORD_MODES: tuple[RecordMode, ...] = typing.get_args(RecordMode)

RecordOf = Callable[[JobState], JobRecord]
"""The job's store record in a state (built only when it is written)."""

Prefetch = Callable[[int], Awaitable[list[Event]]]
"""Recorded events with a seq below the argument (a durable replay reads them from the store)."""


@attrs.frozen
class RecordLimits:
    """The bounds of each recording job's in-memory ring."""

    max_events: int = 1000
    max_bytes: int = 1 << 20


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
        recorder = self._recorder()
        await nursery.start(recorder.run)
        self.recorder = recorder
        hub.add_sink(self._sink(recorder))

    def _sink(self, recorder: Recorder) -> Callable[[Event], None]:
        def sink(event: Event) -> None:
            recorder.record(event, None, len(json.dumps(event_to_dict(event), default=repr)))

        return sink

    def replay_source(self) -> tuple[list[Event] | None, Prefetch | None]:
        return (self.recorder.backlog() if self.recorder is not None else None), None


class _DurableRecording(_MemoryRecording):
    """Recording ``durable``: the ring, and the job's log, checkpoints and record in the store."""

    mode: ClassVar[RecordMode] = "durable"
    stores_events: ClassVar[bool] = True
    __slots__ = ()

    def _recorder(self) -> Recorder:
        store = self._store

        async def sink(batch: list[Any]) -> None:
            await write_batch(store, batch)

        return Recorder(max_events=self._limits.max_events, max_bytes=self._limits.max_bytes,
                        sink=sink, on_error=self._on_error)

    async def start(self, nursery: trio.Nursery, hub: EventHub, record: RecordOf) -> None:
        await super().start(nursery, hub, record)
        try:
            await self._store.put_job(record(JobState.RUNNING))
        except StoreError as exc:
            self._on_error(exc)

    def _sink(self, recorder: Recorder) -> Callable[[Event], None]:
        def sink(event: Event) -> None:
            payload = event_to_dict(event)
            row = EventRow(job_id=event.job_id, seq=event.seq, type=event.type, ts=event.ts, payload=payload)
            recorder.record(event, row, len(json.dumps(payload, default=repr)))

        return sink

    def checkpoint(self, step: str, outputs: Mapping[str, Any], iteration: int, attempt: int) -> None:
        if self.recorder is not None:
            self.recorder.write(Checkpoint(job_id=self.job_id, step=step, outputs=jsonable(dict(outputs)),
                                           iteration=iteration, attempt=attempt))

    def state_changed(self, state: JobState, resume_payload: Any) -> None:
        if self.recorder is not None:
            self.recorder.write(JobUpdate(self.job_id, {"state": state.value,
                                                        "resume_payload": jsonable(resume_payload)}))

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


_MODES: Mapping[str, type[Recording]] = {cls.mode: cls for cls in (Recording, _MemoryRecording, _DurableRecording)}


def recording_for(mode: str) -> type[Recording]:
    """The strategy of recording ``mode``; ``ValueError`` for an unknown one."""
    try:
        return _MODES[mode]
    except KeyError:
        raise ValueError(f"record must be one of {', '.join(RECORD_MODES)}, got {mode!r}") from None
