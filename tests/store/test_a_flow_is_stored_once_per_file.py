"""A flow is stored once per file, not once per job: a job row holds its flow's digest, every job
reads back its whole flow (through another connection, another store, a read-only open), a file
of the previous schema keeps its inline flows readable after the migration, and a job whose flow
row is missing is reported, naming the job, instead of read wrong.  Real SQLite files."""

from __future__ import annotations

import sqlite3

import attrs
import pytest
from store_support import job

import runtime.store.sqlite as sqlite_mod
from runtime import Flow, JobState, Step, open_runtime
from runtime.store import SqliteStore, StoreError


async def noop(ctx, inputs):
    return {"ok": True}


def flow(name: str) -> Flow:
    return Flow(name, [Step("a", run=noop), Step("b", run=noop, after=["a"])])


def raw_rows(db, sql: str) -> list[tuple]:
    conn = sqlite3.connect(db)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


async def test_each_flow_is_stored_once_and_every_job_reads_it_whole(tmp_path):
    db = tmp_path / "s.db"
    flows = [flow("first"), flow("second")]
    async with open_runtime(store=db, max_results=64) as rt:
        jobs = [await rt.spawn(flows[i % 2], record="durable" if i % 3 else "off") for i in range(20)]
        assert [(await j.wait()).state for j in jobs] == [JobState.COMPLETED] * 20
        live = {rec.job_id: rec.flow for rec in await rt.store.list_jobs()}
    assert len(live) == 20 and {f["name"] for f in live.values()} == {"first", "second"}
    stored = raw_rows(db, "SELECT digest, flow FROM flows")
    assert len(stored) == 2  # once per flow, for 20 jobs
    refs = raw_rows(db, "SELECT job_id, flow FROM jobs")
    assert {ref for _, ref in refs} == {digest for digest, _ in stored}  # rows hold digests only
    # another store on the file, and a read-only one, read the same whole flows
    async with SqliteStore(db) as store:
        assert {r.job_id: r.flow for r in await store.list_jobs()} == live
        await store.put_job(attrs.evolve(job("extra"), flow=live[jobs[0].id]))
        assert (await store.get_job("extra")).flow == live[jobs[0].id]
    async with SqliteStore(db, read_only=True) as store:
        assert (await store.get_job(jobs[1].id)).flow == live[jobs[1].id]
    assert len(raw_rows(db, "SELECT digest FROM flows")) == 2  # the same flow again: no new row


async def test_a_file_of_the_previous_schema_keeps_its_inline_flows(tmp_path, monkeypatch):
    db = tmp_path / "old.db"
    with monkeypatch.context() as m:  # written by the corral before the flows table
        m.setattr(sqlite_mod, "MIGRATIONS", sqlite_mod.MIGRATIONS[:3])
        async with SqliteStore(db) as store:
            await store.put_job(job("old"))
    assert raw_rows(db, "SELECT flow FROM jobs")[0][0].startswith("{")
    async with SqliteStore(db, read_only=True) as store:  # read as it is, not migrated
        assert (await store.get_job("old")).flow == job("old").flow
    assert raw_rows(db, "PRAGMA user_version") == [(3,)]
    async with SqliteStore(db) as store:  # migrated: the old row as it was, a new one by digest
        await store.put_job(job("new"))
        assert [r.flow for r in await store.list_jobs()] == [job("old").flow] * 2
    assert raw_rows(db, "PRAGMA user_version") == [(sqlite_mod.MIGRATIONS[-1].version,)]
    assert dict(raw_rows(db, "SELECT job_id, substr(flow, 1, 1) FROM jobs")) == {"old": "{", "new": "b"}


async def test_a_job_whose_flow_row_is_missing_is_reported_by_name(tmp_path):
    db = tmp_path / "s.db"
    async with SqliteStore(db) as store:
        await store.put_job(job("a"))
        await store.put_job(attrs.evolve(job("b"), flow={"name": "other", "steps": []}))
    conn = sqlite3.connect(db)
    conn.execute("DELETE FROM flows WHERE digest = (SELECT flow FROM jobs WHERE job_id = 'a')")
    conn.commit()
    conn.close()
    async with SqliteStore(db) as store:
        with pytest.raises(StoreError, match="job 'a': its flow is missing"):
            await store.get_job("a")
        with pytest.raises(StoreError, match="job 'a'"):
            await store.list_jobs()
        assert (await store.get_job("b")).flow == {"name": "other", "steps": []}
