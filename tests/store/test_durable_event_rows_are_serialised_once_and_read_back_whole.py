"""A durable job's event is serialised once, when it is recorded (its payload without the
envelope the row's columns hold); what the store gives back is the event as it was published,
on SQLite and through any other store."""

from __future__ import annotations

from typing import Any

import pytest

from actors.stream import Delta, TextDelta
from runtime.core import events as ev
from runtime.store import EncodedEvent, MemoryStore, SqliteStore, write_batch

SAMPLES: dict[str, dict[str, Any]] = {
    "job_started": {"flow": "f", "inputs": {"n": 1, "nested": {"k": [1, 2.5, None, True]}}, "deadline": 12.5},
    "step_started": {"step": "a", "attempt": 2, "iteration": 1},
    "step_completed": {"step": "a", "outputs": {"text": "é\n\"quoted\"", "tuple": (1, 2), "odd": {3}}},
    "step_failed": {"step": "a", "error": "ValueError: no", "action": "retry"},
    "step_cancelled": {"step": "a"},
    "exit_resolved": {"step": "a", "rule": None, "action": "advance"},
    "job_paused": {"step": "a", "rule": "ask", "deadline": None},
    "escalation_timed_out": {"step": "a", "rule": "ask", "action": "abandon"},
    "job_resumed": {"payload": {"approved": True, "by": ["x"]}},
    "step_stream": {"step": "a", "update": Delta(TextDelta("tok"), index=0, metadata={"m": 1})},
    "agent_session": {"step": "a", "session_id": "s1", "loaded": True, "fallback": "refused"},
    "agent_update": {"step": "a", "kind": "plan", "data": {"entries": [{"content": "x"}]}},
    "job_finished": {"state": "completed", "reason": None, "error": None},
}


def test_every_event_type_has_a_sample():
    assert set(SAMPLES) == set(ev.EVENT_TYPES)


@pytest.mark.parametrize("type_", sorted(SAMPLES))
def test_the_bare_payload_is_the_event_dict_without_its_envelope(type_):
    event = ev.EVENT_TYPES[type_](job_id="j", seq=3, ts=1.5, **SAMPLES[type_])
    whole = ev.event_to_dict(event)
    row = EncodedEvent.of(event.job_id, event.seq, event.type, event.ts, ev.bare_payload(event))
    assert row.row().payload == whole
    assert {"type", "job_id", "seq", "ts"}.isdisjoint(ev.bare_payload(event))


@pytest.mark.parametrize("store_kind", ["sqlite", "memory"])
async def test_encoded_rows_read_back_as_the_events_published(tmp_path, store_kind):
    published = [ev.EVENT_TYPES[t](job_id="j", seq=i, ts=100.0 + i, **SAMPLES[t]) for i, t in enumerate(sorted(SAMPLES))]
    rows = [EncodedEvent.of(e.job_id, e.seq, e.type, e.ts, ev.bare_payload(e)) for e in published]
    store = SqliteStore(tmp_path / "s.db") if store_kind == "sqlite" else MemoryStore()
    async with store:
        await write_batch(store, rows)
        back = [ev.event_from_dict(row.payload) for row in await store.read_events("j")]
    # what JSON makes of a tuple and a set is what the event dict held: compare through it
    assert [ev.event_to_dict(e) for e in back] == [ev.event_to_dict(e) for e in published]
    assert [e.type for e in back] == sorted(SAMPLES)
    # where JSON holds the values exactly (no tuple, set or attrs value), the very events come back
    exact = [(b, p) for b, p in zip(back, published, strict=True) if p.type not in ("step_completed", "step_stream")]
    assert len(exact) == len(SAMPLES) - 2
    assert all(b == p for b, p in exact)
