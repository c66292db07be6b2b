"""SqliteStore and MemoryStore keep the same Store protocol: records round-trip, replace and update;
lists filter and order; events come back in seq order; checkpoints, leases and process groups
behave alike; writes are counted; a closed store refuses."""

from __future__ import annotations

import pytest
from store_support import event, job

from runtime.store import (
    Checkpoint,
    Lease,
    MemoryStore,
    ProcessGroupRow,
    SqliteStore,
    Store,
    StoreError,
)


@pytest.fixture(params=["sqlite", "memory"])
async def store(request, tmp_path):
    if request.param == "sqlite":
        opened: Store = SqliteStore(tmp_path / "nested" / "dir" / "corral.db")  # parents created
    else:
        opened = MemoryStore()
    async with opened as s:
        yield s


async def test_is_a_store(store):
    assert isinstance(store, Store)


async def test_job_round_trip_replace_and_update(store):
    rec = job(
        "j1",
        outputs={"a": {"text": "hi"}},
        record="durable",
        next_seq=3,
        resume_payload={"answer": [1, 2]},
        reason=None,
        error="boom",
    )
    await store.put_job(rec)
    assert await store.get_job("j1") == rec
    assert await store.get_job("nope") is None

    replaced = job("j1", state="paused", created_at=2.0)
    await store.put_job(replaced)
    assert await store.get_job("j1") == replaced

    await store.update_job(
        "j1",
        state="completed",
        reason="done",
        outputs={"b": 1},
        finished_at=9.0,
        updated_at=9.5,
        next_seq=12,
        resume_payload="ok",
    )
    got = await store.get_job("j1")
    assert (
        got.state,
        got.reason,
        got.outputs,
        got.finished_at,
        got.updated_at,
        got.next_seq,
        got.resume_payload,
    ) == ("completed", "done", {"b": 1}, 9.0, 9.5, 12, "ok")
    assert got.flow == replaced.flow and got.created_at == 2.0

    await store.update_job("j1", error="late")
    assert (await store.get_job("j1")).updated_at > 9.5  # defaults to now

    with pytest.raises(TypeError, match="'colour'"):
        await store.update_job("j1", colour="red")
    with pytest.raises(TypeError, match="'job_id'"):
        await store.update_job("j1", job_id="j2")
    with pytest.raises(StoreError, match="no job 'ghost'"):
        await store.update_job("ghost", state="failed")


async def test_list_jobs_newest_first_with_filters(store):
    recs = [
        job("a", state="completed", created_at=1.0, runtime_id="rt1"),
        job("b", state="running", created_at=3.0, runtime_id="rt2"),
        job("c", state="failed", created_at=2.0, runtime_id="rt1"),
        job("d", state="running", created_at=4.0, runtime_id=None),
    ]
    for rec in recs:
        await store.put_job(rec)

    def ids(found):
        return [r.job_id for r in found]

    assert ids(await store.list_jobs()) == ["d", "b", "c", "a"]
    assert ids(await store.list_jobs(states=["running"])) == ["d", "b"]
    assert ids(await store.list_jobs(states={"completed", "failed"})) == ["c", "a"]
    assert ids(await store.list_jobs(runtime_id="rt1")) == ["c", "a"]
    assert ids(await store.list_jobs(states=["running"], runtime_id="rt2")) == ["b"]
    assert ids(await store.list_jobs(limit=2)) == ["d", "b"]
    assert ids(await store.list_jobs(states=iter(["failed", "running"]), limit=1)) == ["d"]
    assert await store.list_jobs(states=[]) == []
    assert await store.list_jobs(limit=0) == []
    assert (await store.list_jobs(runtime_id="rt2"))[0] == recs[1]


async def test_events_in_seq_order_and_from_seq(store):
    # one batch spanning two jobs, out of order
    await store.append_events([event("j1", 2), event("j2", 0), event("j1", 0), event("j1", 1)])
    await store.append_events([event("j1", 3, text="x" * 1000)])
    await store.append_events([])
    got = await store.read_events("j1")
    assert [e.seq for e in got] == [0, 1, 2, 3]
    assert got[0] == event("j1", 0) and got[3].payload["text"] == "x" * 1000
    assert [e.seq for e in await store.read_events("j1", from_seq=2)] == [2, 3]
    assert await store.read_events("j1", from_seq=4) == []
    assert await store.read_events("j2") == [event("j2", 0)]
    assert await store.read_events("none") == []
    # writing a seq again (a resumed job re-recording) replaces the row
    await store.append_events([event("j1", 1, again=True)])
    assert (await store.read_events("j1", 1))[0].payload == {"seq": 1, "again": True}
    assert len(await store.read_events("j1")) == 4


async def test_checkpoints_latest_wins(store):
    await store.put_checkpoint(Checkpoint("j1", "draft", {"text": "v1"}, iteration=1))
    await store.put_checkpoint(Checkpoint("j1", "review", {"ok": False}, iteration=1, attempt=2))
    await store.put_checkpoint(Checkpoint("j1", "draft", {"text": "v2"}, iteration=2))
    await store.put_checkpoint(Checkpoint("j2", "draft", {"text": "other"}, iteration=1))
    assert await store.get_checkpoints("j1") == {
        "draft": Checkpoint("j1", "draft", {"text": "v2"}, iteration=2, attempt=1),
        "review": Checkpoint("j1", "review", {"ok": False}, iteration=1, attempt=2),
    }
    assert await store.get_checkpoints("none") == {}


async def test_leases(store):
    one = Lease("rt1", pid=100, started=1000.5, host="h1", created_at=2.0)
    two = Lease("rt2", pid=200, started=2000.5, host="h2", created_at=1.0)
    await store.put_lease(one)
    await store.put_lease(two)
    assert await store.list_leases() == [two, one]  # oldest first
    renewed = Lease("rt1", pid=101, started=1001.5, host="h1", created_at=0.5)
    await store.put_lease(renewed)
    assert await store.list_leases() == [renewed, two]
    await store.delete_lease("rt2")
    await store.delete_lease("never")
    assert await store.list_leases() == [renewed]


async def test_process_groups(store):
    rows = [
        ProcessGroupRow("rt1", "j1", 500, "m1"),
        ProcessGroupRow("rt2", "j2", 600, "m2"),
        ProcessGroupRow("rt1", "j3", 700, "m3"),
    ]
    for row in rows:
        await store.put_process_group(row)
    assert await store.list_process_groups() == rows
    assert await store.list_process_groups("rt1") == [rows[0], rows[2]]
    moved = ProcessGroupRow("rt1", "j1", 501, "m1")
    await store.put_process_group(moved)
    assert await store.list_process_groups("rt1") == [moved, rows[2]]
    await store.delete_process_group("m3")
    await store.delete_process_group("never")
    assert await store.list_process_groups() == [moved, rows[1]]
    await store.delete_process_groups("rt1")
    assert await store.list_process_groups() == [rows[1]]
    assert await store.list_process_groups("rt1") == []


async def test_counts_writes(store):
    before = store.stats()
    await store.append_events([event("j", 0), event("j", 1), event("j", 2)])
    after = store.stats()
    assert after.rows_written - before.rows_written == 3
    assert after.transactions - before.transactions == 1
    assert after.pending_writes == 0


@pytest.mark.parametrize("kind", ["sqlite", "memory"])
async def test_closed_store_refuses(kind, tmp_path):
    s = SqliteStore(tmp_path / "s.db") if kind == "sqlite" else MemoryStore()
    with pytest.raises(StoreError, match="not open"):
        await s.put_job(job("early"))
    async with s:
        await s.put_job(job("a"))
    with pytest.raises(StoreError, match="not open"):
        await s.put_job(job("b"))
    with pytest.raises(StoreError, match="not open"):
        await s.get_job("a")
