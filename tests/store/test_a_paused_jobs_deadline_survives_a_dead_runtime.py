"""A durable job paused by an escalate rule with a deadline keeps that deadline when its runtime
dies: the next runtime re-arms what was left of it, counted from the original pause (a deadline
already past fires at once, with the rule's on_timeout), never a fresh timeout."""

from __future__ import annotations

import time

import attrs
import pytest
import trio
import trio.testing
from store_support import recorded, until_paused, until_restarted

from runtime import ExitRule, Flow, JobState, Step, open_runtime
from runtime.flow.codec import flow_to_dict
from runtime.store import Checkpoint, EventRow, JobRecord, MemoryStore, SqliteStore, Store, restore
from runtime.testing import assert_no_leaks

BOUND = 60
TIMEOUT = 3600.0


def _flow(on_timeout: str) -> Flow:
    import resume_steps  # importable steps: a resumed flow is rebuilt from its stored definition

    return Flow("pausy", [
        Step("one", run=resume_steps.tag,
             exits=[ExitRule("ask", when="True", action="escalate", timeout=TIMEOUT, on_timeout=on_timeout)]),
        Step("two", run=resume_steps.tag, after=["one"], inputs={"payload": "$resume"}),
    ])


async def _paused_log(store: Store | str, flow: Flow) -> tuple[JobRecord, list[EventRow]]:
    """Run ``flow`` durably until it pauses; its record and its log up to its JobPaused."""
    async with open_runtime(store=store) as rt:
        job = await rt.spawn(flow, record="durable")
        await until_paused(job)
        await recorded(job)
        await job.cancel()
    opened = store if isinstance(store, MemoryStore) else SqliteStore(store)
    async with opened:
        rec, rows = await opened.get_job(job.id), await opened.read_events(job.id)
    k = next(i for i, row in enumerate(rows) if row.type == "job_paused") + 1
    assert rows[k - 1].payload["deadline"] == pytest.approx(rows[k - 1].ts + TIMEOUT)
    return rec, rows[:k]


async def _left_by_a_dead_runtime(store: Store, rec: JobRecord, rows: list[EventRow]) -> None:
    """Put in ``store`` what a runtime that died after writing ``rows`` would have left."""
    async with store:
        await store.put_job(attrs.evolve(rec, state="paused", reason=None, error=None, outputs={},
                                         finished_at=None, runtime_id="dead-runtime"))
        await store.append_events(rows)
        for row in rows:
            if row.type == "step_completed":
                p = row.payload
                await store.put_checkpoint(Checkpoint(job_id=rec.job_id, step=p["step"], outputs=p["outputs"],
                                                      iteration=p["iteration"], attempt=p["attempt"]))


def _with(rows: list[EventRow], kind: str, **changes) -> list[EventRow]:
    """``rows`` with the last row of type ``kind`` changed (``payload`` entries or ``ts``)."""
    i = max(i for i, row in enumerate(rows) if row.type == kind)
    ts = changes.pop("ts", rows[i].ts)
    return [*rows[:i], attrs.evolve(rows[i], ts=ts, payload={**rows[i].payload, **changes}), *rows[i + 1:]]


async def _resume_and_wait(db, job_id: str):
    async with open_runtime(store=db, resume=True) as rt:
        with trio.fail_after(BOUND):  # a fresh timeout would hold the job for an hour
            handle = rt.get(job_id)  # None if it already ended while the runtime opened
            if handle is not None:
                await handle.wait()
        result = await rt.result(job_id)
        events = [e async for e in rt.events(job_id)]
        assert_no_leaks(rt)
    return result, events


@pytest.mark.parametrize("on_timeout, state, reason", [
    ("abandon", JobState.ABANDONED, "escalation_timeout:ask"),
    ("fail", JobState.FAILED, "escalation_timeout:ask"),
    ("advance", JobState.COMPLETED, None),
])
async def test_a_deadline_that_passed_while_no_runtime_ran_fires_at_restart(tmp_path, on_timeout, state, reason):
    rec, rows = await _paused_log(str(tmp_path / "s.db"), _flow(on_timeout))
    crashed = tmp_path / "crashed.db"
    # the runtime died while the job waited; by the time a new one starts, the hour is over
    await _left_by_a_dead_runtime(SqliteStore(crashed), rec, _with(rows, "job_paused", deadline=time.time() - 1))
    result, events = await _resume_and_wait(crashed, rec.job_id)
    assert (result.state, result.reason) == (state, reason), result
    restart = max(e.seq for e in events if e.type == "job_started" and e.resumed)
    after = [e for e in events if e.seq > restart]
    assert [(e.step, e.rule, e.action) for e in after if e.type == "escalation_timed_out"] == [
        ("one", "ask", on_timeout)]
    assert [e.step for e in after if e.type == "step_started"] == (["two"] if on_timeout == "advance" else [])
    if on_timeout == "advance":
        assert [e.payload for e in after if e.type == "job_resumed"] == [None]
        assert result.outputs["two"]["payload"] is None
    assert [e.seq for e in events] == list(range(len(events)))


async def test_a_pause_lost_in_the_crash_counts_from_its_escalation(tmp_path):
    # the runtime died between the rule's exit_resolved and its job_paused: the deadline counts
    # from the escalation, whose event is in the log
    rec, rows = await _paused_log(str(tmp_path / "s.db"), _flow("fail"))
    assert rows[-2].type == "exit_resolved" and rows[-2].payload["action"] == "escalate"
    crashed = tmp_path / "crashed.db"
    await _left_by_a_dead_runtime(SqliteStore(crashed), rec,
                                  _with(rows[:-1], "exit_resolved", ts=time.time() - 2 * TIMEOUT))
    result, _ = await _resume_and_wait(crashed, rec.job_id)
    assert (result.state, result.reason) == (JobState.FAILED, "escalation_timeout:ask"), result


async def test_a_restored_pause_gets_what_was_left_of_its_deadline(autojump_clock):
    # half the hour was gone when the runtime died: the new runtime waits the other half
    first, store = MemoryStore(), MemoryStore()
    rec, rows = await _paused_log(first, _flow("abandon"))
    await _left_by_a_dead_runtime(store, rec, _with(rows, "job_paused", deadline=time.time() + TIMEOUT / 2))
    async with open_runtime(store=store, resume=True) as rt:
        job = rt.get(rec.job_id)
        await until_restarted(job)
        assert job.state is JobState.PAUSED
        await trio.sleep(TIMEOUT / 2 - 60)
        assert job.state is JobState.PAUSED  # not early
        with trio.fail_after(120):  # nor a fresh hour
            result = await job.wait()
        assert (result.state, result.reason) == (JobState.ABANDONED, "escalation_timeout:ask")


async def test_restore_reads_the_last_pause_and_a_resume_clears_it(tmp_path):
    flow = _flow("fail")
    rec = JobRecord(job_id="j", flow_name="pausy", flow=flow_to_dict(flow), inputs={}, state="paused",
                    created_at=1.0, updated_at=1.0, runtime_id="dead", record="durable")

    def row(seq: int, kind: str, **payload) -> EventRow:
        return EventRow("j", seq, kind, 100.0 + seq, {"job_id": "j", "seq": seq, "ts": 100.0 + seq, **payload})

    log = [row(0, "job_started", flow="pausy"), row(1, "step_started", step="one"),
           row(2, "step_completed", step="one", outputs={}, iteration=0, attempt=1),
           row(3, "exit_resolved", step="one", rule="ask", action="escalate"),
           row(4, "job_paused", step="one", rule="ask", deadline=5000.0)]
    async with MemoryStore() as store:
        await store.put_job(rec)
        await store.append_events(log[:4])
        _, at_escalation = await restore(store, rec)  # the JobPaused was lost: counted from the escalation
        assert (at_escalation.paused_on, at_escalation.pause_deadline) == (("one", "ask"), 103.0 + TIMEOUT)
        await store.append_events(log[4:])
        _, paused = await restore(store, rec)
        assert paused.paused and (paused.paused_on, paused.pause_deadline) == (("one", "ask"), 5000.0)
        await store.append_events([row(5, "job_resumed", payload={"ok": 1})])
        _, resumed = await restore(store, rec)
        assert not resumed.paused and (resumed.paused_on, resumed.pause_deadline) == (None, None)
