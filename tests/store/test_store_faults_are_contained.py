"""A runtime refuses a store file it cannot use (corrupt, a newer schema) and leaves it as it was; a
durable write that fails ends only that job (FAILED store_error), keeps what was written, and the
runtime goes on."""

from __future__ import annotations

import pytest
import trio
import trio.testing
from store_support import first_events, noop, recorded, small_flow, writes_fail

from runtime import Flow, JobState, Step, open_runtime
from runtime.store import SqliteStore, StoreCorrupt, StoreSchemaTooNew
from runtime.testing import assert_no_leaks

BOUND = 60


async def test_corrupt_file_is_refused_and_left_alone(tmp_path):
    db = tmp_path / "c.db"
    db.write_bytes(b"definitely not sqlite" * 100)
    before = db.read_bytes()
    with pytest.raises(StoreCorrupt) as info:
        async with open_runtime(store=db):
            pass
    assert str(db) in str(info.value)
    assert db.read_bytes() == before


async def test_newer_schema_is_refused(tmp_path):
    import sqlite3

    db = tmp_path / "c.db"
    async with SqliteStore(db):
        pass
    conn = sqlite3.connect(db)
    conn.execute("PRAGMA user_version = 999")
    conn.commit()
    conn.close()
    with pytest.raises(StoreSchemaTooNew, match="999"):
        async with open_runtime(store=db):
            pass


async def test_failed_store_write_fails_only_that_job(tmp_path):
    gate = trio.Event()

    async def wait_gate(ctx, inputs):
        await gate.wait()
        return {"late": True}

    db = tmp_path / "c.db"
    async with open_runtime(store=db) as rt:
        flow = Flow("f", [Step("a", run=noop), Step("b", run=wait_gate, after=["a"])])
        job = await rt.spawn(flow, record="durable")
        await first_events(job, 5)  # b waits at its gate
        await recorded(job)
        written = [r.seq for r in await rt.store.read_events(job.id)]
        assert written == list(range(5))
        with writes_fail(db):  # a real disk I/O error from SQLite for every write from here
            gate.set()
            with trio.fail_after(BOUND):
                result = await job.wait()
        assert result.state is JobState.FAILED and result.reason == "store_error"
        assert "disk I/O error" in result.error
        assert [r.seq for r in await rt.store.read_events(job.id)][: len(written)] == written
        other = await rt.spawn(small_flow(), record="durable")
        assert (await other.wait()).state is JobState.COMPLETED
        assert_no_leaks(rt)
