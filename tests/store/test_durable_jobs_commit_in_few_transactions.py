"""A durable job at the speed of SQLite, and nothing weaker: a job reported COMPLETED has its log
and final record committed (read from a fresh connection); a no-op job costs two transactions (its
start record, then its end); a pause is written at once, other writes are grouped within the
flush window; event rows are stored without the envelope their columns hold; a store file of the
previous schema still opens, reads and resumes."""

from __future__ import annotations

import json
import sqlite3

import attrs
import pytest
import trio
import trio.testing

from actors.recorder import Recorder
from runtime import ExitRule, Flow, JobPaused, JobState, Step, open_runtime
from runtime.core.events import event_to_dict
from runtime.store import EventRow, SqliteStore
from runtime.store.sqlite import MIGRATIONS
from runtime.store.sqlite_open import StoreFile
from runtime.testing import WakeupCounter


async def noop(ctx, inputs):
    return {"ok": True}


def two_steps() -> Flow:
    return Flow("two", [Step("a", run=noop), Step("b", run=noop, after=["a"])])


def fresh_rows(db, job_id: str) -> tuple[tuple, list[tuple], list[str]]:
    """The job's record, events and checkpointed steps, read by a new connection of its own."""
    conn = sqlite3.connect(db)
    try:
        record = conn.execute("SELECT state, finished_at, outputs FROM jobs WHERE job_id = ?", (job_id,)).fetchone()
        events = conn.execute("SELECT seq, type FROM events WHERE job_id = ? ORDER BY seq", (job_id,)).fetchall()
        steps = [r[0] for r in conn.execute("SELECT step FROM checkpoints WHERE job_id = ? ORDER BY step", (job_id,))]
    finally:
        conn.close()
    return record, events, steps


async def test_a_completed_durable_job_has_its_log_and_record_committed_when_wait_returns(tmp_path):
    db = tmp_path / "s.db"
    async with open_runtime(store=db, record_flush_window=3600) as rt:
        job = await rt.spawn(two_steps(), record="durable")
        result = await job.wait()
        assert result.state is JobState.COMPLETED
        record, events, steps = fresh_rows(db, job.id)  # the runtime is still open
    assert record[0] == "completed" and record[1] is not None
    assert json.loads(record[2]) == {"a": {"ok": True}, "b": {"ok": True}}
    assert [seq for seq, _ in events] == list(range(len(events)))
    assert events[0][1] == "job_started" and events[-1][1] == "job_finished"
    assert steps == ["a", "b"]


async def test_a_no_op_durable_job_costs_two_transactions(tmp_path):
    async with open_runtime(store=tmp_path / "s.db", record_flush_window=3600) as rt:
        await (await rt.spawn(two_steps(), record="durable")).wait()  # first use: leases, schema
        before = rt.store.stats()
        for _ in range(3):
            await (await rt.spawn(two_steps(), record="durable")).wait()
        after = rt.store.stats()
    # its start record (committed before spawn returns), then its events, checkpoints and final
    # record together: 12 rows
    assert after.transactions - before.transactions == 2 * 3
    assert after.rows_written - before.rows_written == 12 * 3


@pytest.mark.parametrize(("record", "rows_per_job", "most"), [("off", 1, 0.125), ("durable", 12, 0.5)])
async def test_jobs_ending_together_share_their_commits(tmp_path, record, rows_per_job, most):
    # group commit: jobs ending in the same few scheduler rounds put their final records (and a
    # durable job its last events) in one transaction: an eighth of a transaction per unrecorded
    # job at most, half of one per durable job (whose start record is a write of its own)
    n = 200
    async with open_runtime(store=tmp_path / "s.db", max_results=n) as rt:
        await (await rt.spawn(two_steps(), record=record)).wait()  # first use: leases, schema
        before = rt.store.stats()
        jobs = [await rt.spawn(two_steps(), record=record) for _ in range(n)]
        results = [await job.wait() for job in jobs]
        after = rt.store.stats()
        stored = [await rt.store.get_job(job.id) for job in jobs]
    assert [r.state for r in results] == [JobState.COMPLETED] * n
    assert [s.state if s else None for s in stored] == ["completed"] * n
    assert after.rows_written - before.rows_written == n * rows_per_job
    assert after.transactions - before.transactions <= n * most


async def test_a_lone_jobs_commits_wait_for_no_company(tmp_path):
    # with no other task runnable, nobody can join a commit: each of a lone durable job's two
    # commits costs it one schedule point (for the tasks already runnable), not rounds of waiting
    me = trio.lowlevel.current_task()

    async def wakeups(store, record: str) -> int:
        async with open_runtime(store=store) as rt:
            await (await rt.spawn(two_steps(), record=record)).wait()  # first use: leases, schema
            counter = WakeupCounter(lambda task: task is not me)
            trio.lowlevel.add_instrument(counter)
            try:
                assert (await (await rt.spawn(two_steps(), record=record)).wait()).state is JobState.COMPLETED
            finally:
                trio.lowlevel.remove_instrument(counter)
            return counter.count

    unrecorded = await wakeups(None, "off")
    assert await wakeups(tmp_path / "s.db", "durable") == unrecorded + 2


async def test_a_paused_durable_job_is_recorded_paused_at_once(tmp_path):
    db = tmp_path / "s.db"
    flow = Flow("ask", [Step("a", run=noop, exits=[ExitRule("ask", action="escalate")]),
                        Step("b", run=noop, after=["a"])])
    async with open_runtime(store=db, record_flush_window=3600) as rt:
        job = await rt.spawn(flow, record="durable")
        async for event in job.events():
            if isinstance(event, JobPaused):
                break
        # the pause is an urgent write: once every task is blocked, it has been handed to the
        # store, not held for the hour-long window; a write queued after it returns after its commit
        await trio.testing.wait_all_tasks_blocked()
        assert not await rt.store.claim_job("no-such-job", None, "nobody")
        record, events, steps = fresh_rows(db, job.id)
        assert record[0] == "paused" and events[-1][1] == "job_paused" and steps == ["a"]
        await job.resume({})
        assert (await job.wait()).state is JobState.COMPLETED


async def test_the_recorder_groups_writes_within_its_window_and_then_parks(mock_clock):
    batches: list[list[str]] = []

    async def sink(batch):
        batches.append(list(batch))

    recorder = Recorder(sink=sink, flush_window=10.0)
    async with trio.open_nursery() as nursery:
        await nursery.start(recorder.run)
        recorder.write("a")
        recorder.write("b")
        await trio.testing.wait_all_tasks_blocked()
        assert batches == []  # within the window
        recorder.write("pause", urgent=True)
        await trio.testing.wait_all_tasks_blocked()
        assert batches == [["a", "b", "pause"]]
        assert trio.lowlevel.current_statistics().seconds_to_next_deadline == float("inf")  # parked
        recorder.write("c")
        await trio.testing.wait_all_tasks_blocked()
        mock_clock.jump(10.0)
        await trio.testing.wait_all_tasks_blocked()
        assert batches == [["a", "b", "pause"], ["c"]]
        assert trio.lowlevel.current_statistics().seconds_to_next_deadline == float("inf")
        nursery.cancel_scope.cancel()


async def test_event_rows_are_stored_without_the_envelope_their_columns_hold(tmp_path):
    db = tmp_path / "s.db"
    async with open_runtime(store=db) as rt:
        job = await rt.spawn(two_steps(), record="durable")
        await job.wait()
        rows = await rt.store.read_events(job.id)
        subscribed = [e async for e in rt.events(job.id)]
    assert [r.payload for r in rows] == [event_to_dict(e) for e in subscribed]
    conn = sqlite3.connect(db)
    stored = conn.execute("SELECT payload, bare FROM events WHERE job_id = ?", (job.id,)).fetchall()
    conn.close()
    assert stored and all(bare == 1 and job.id not in text and '"seq"' not in text for text, bare in stored)
    # a row whose payload does not repeat its columns is kept whole
    async with SqliteStore(db) as store:
        await store.append_events([EventRow("other", 0, "custom", 1.0, {"seq": 7, "x": 1})])
        assert (await store.read_events("other"))[0].payload == {"seq": 7, "x": 1}


async def test_a_store_of_the_previous_schema_opens_reads_and_resumes(tmp_path):
    # a whole run on the current schema, for the rows a schema-2 runtime would have written
    whole = tmp_path / "whole.db"
    flow = Flow("three", [Step("a", run=noop), Step("b", run=noop, after=["a"]), Step("c", run=noop, after=["b"])])
    async with open_runtime(store=whole) as rt:
        full = await (await rt.spawn(flow, record="durable")).wait()
        rows = await rt.store.read_events(full.job_id)
        rec = await rt.store.get_job(full.job_id)
        cps = await rt.store.get_checkpoints(full.job_id)
    # schema 2, written as corral did before: whole payloads, no `bare` column; the job died
    # after step a's exit was resolved
    old = tmp_path / "old.db"
    writer, reader = StoreFile(old, 5.0, MIGRATIONS[:2]).open_writable()
    reader.close()
    k = next(i for i, r in enumerate(rows) if r.type == "exit_resolved") + 1
    cols = [f.name for f in attrs.fields(type(rec))]
    job = attrs.evolve(rec, state="running", reason=None, outputs={}, finished_at=None, runtime_id="dead")
    writer.execute(f"INSERT INTO jobs ({', '.join(cols)}) VALUES ({', '.join('?' for _ in cols)})",
                   [json.dumps(getattr(job, c)) if c in ("flow", "inputs", "outputs", "resume_payload")
                    else getattr(job, c) for c in cols])
    writer.executemany("INSERT INTO events (job_id, seq, type, ts, payload) VALUES (?, ?, ?, ?, ?)",
                       [(r.job_id, r.seq, r.type, r.ts, json.dumps(r.payload)) for r in rows[:k]])
    cp = cps["a"]
    writer.execute("INSERT INTO checkpoints VALUES (?, ?, ?, ?, ?)",
                   (cp.job_id, cp.step, json.dumps(cp.outputs), cp.iteration, cp.attempt))
    writer.close()
    async with SqliteStore(old, read_only=True) as store:  # read as it is: no migration
        assert await store.read_events(full.job_id) == rows[:k]
    assert sqlite3.connect(old).execute("PRAGMA user_version").fetchone()[0] == 2
    async with open_runtime(store=old, resume=True) as rt:
        result = await rt.get(full.job_id).wait()
        after = await rt.store.read_events(full.job_id)
    assert (result.state, result.outputs) == (full.state, full.outputs)
    assert after[:k] == rows[:k] and [r.seq for r in after] == list(range(len(after)))
    assert [r.payload["step"] for r in after[k:] if r.type == "step_started"] == ["b", "c"]  # a is not run again
    assert sqlite3.connect(old).execute("PRAGMA user_version").fetchone()[0] == MIGRATIONS[-1].version
