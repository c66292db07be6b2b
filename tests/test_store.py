"""The store: both implementations through the same protocol tests, then SQLite specifics
(batching, parking, WAL, sharing a file, refusing foreign files, failed writes, migrations) and
MemoryStore's eviction bound.  Real SQLite files in tmp_path."""

from __future__ import annotations

import math
import os
import sqlite3
from pathlib import Path

import pytest
import trio
import trio.testing

import runtime.store.sqlite as sqlite_mod
from runtime.store import (
    Checkpoint,
    EventRow,
    JobRecord,
    Lease,
    MemoryStore,
    ProcessGroupRow,
    SqliteStore,
    Store,
    StoreCorrupt,
    StoreError,
    StoreReadOnly,
    StoreSchemaTooNew,
    StoreWriteFailed,
)
from runtime.testing import WakeupCounter


def job(
    job_id: str,
    *,
    state: str = "running",
    created_at: float = 1.0,
    runtime_id: str | None = "rt1",
    finished_at: float | None = None,
    **fields,
) -> JobRecord:
    return JobRecord(
        job_id=job_id,
        flow_name="flow",
        flow={"name": "flow", "steps": [{"name": "a"}]},
        inputs={"ticket": 7},
        state=state,
        created_at=created_at,
        updated_at=created_at,
        runtime_id=runtime_id,
        finished_at=finished_at,
        **fields,
    )


def event(job_id: str, seq: int, **payload) -> EventRow:
    return EventRow(job_id, seq, "step_started", 100.0 + seq, {"seq": seq, **payload})


def snapshot(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir())}


@pytest.fixture(params=["sqlite", "memory"])
async def store(request, tmp_path):
    if request.param == "sqlite":
        opened: Store = SqliteStore(tmp_path / "nested" / "dir" / "corral.db")  # parents created
    else:
        opened = MemoryStore()
    async with opened as s:
        yield s


# -- the protocol, both implementations -----------------------------------------------------------


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


# -- SqliteStore ----------------------------------------------------------------------------------


async def test_concurrent_writers_are_batched(tmp_path):
    async with SqliteStore(tmp_path / "s.db") as store:

        async def writer(i: int) -> None:
            await store.append_events([event("j", i)])

        with trio.fail_after(30):
            async with trio.open_nursery() as nursery:
                for i in range(200):
                    nursery.start_soon(writer, i)
        stats = store.stats()
        assert stats.rows_written == 200 and stats.pending_writes == 0
        assert stats.transactions <= 20  # far fewer transactions than calls
        assert stats.bytes_written > 200 * 20
        assert [e.seq for e in await store.read_events("j")] == list(range(200))


async def test_batch_max_caps_a_transaction_but_never_splits_a_call(tmp_path):
    async with SqliteStore(tmp_path / "s.db", batch_max=10) as store:

        async def writer(i: int) -> None:
            await store.append_events([event("j", i)])

        with trio.fail_after(30):
            async with trio.open_nursery() as nursery:
                for i in range(100):
                    nursery.start_soon(writer, i)
                nursery.start_soon(store.append_events, [event("big", i) for i in range(25)])
        stats = store.stats()
        assert stats.rows_written == 125
        assert stats.transactions >= 11  # 100 single rows in batches of <= 10, the 25 alone
        assert len(await store.read_events("j")) == 100
        assert len(await store.read_events("big")) == 25


async def test_idle_store_parks(tmp_path, mock_clock):
    me = trio.lowlevel.current_task()
    counter = WakeupCounter(lambda task: task is not me)
    async with SqliteStore(tmp_path / "s.db") as store:
        await store.put_job(job("a"))
        await trio.testing.wait_all_tasks_blocked()
        assert trio.lowlevel.current_statistics().seconds_to_next_deadline == math.inf
        trio.lowlevel.add_instrument(counter)
        try:
            mock_clock.autojump_threshold = 0  # autojump only while idle: no threads in flight
            await trio.sleep(3600)
            mock_clock.autojump_threshold = math.inf
            idle = dict(counter.names)
            await store.put_job(job("b"))  # the instrument does see the flusher when there is work
        finally:
            trio.lowlevel.remove_instrument(counter)
        assert idle == {}
        assert any(name.startswith("corral.store.flusher") for name in counter.names)
        assert await store.get_job("b") == job("b")


async def test_wal_mode_and_schema_version(tmp_path):
    path = tmp_path / "s.db"
    async with SqliteStore(path) as store:
        await store.put_job(job("a"))
        raw = sqlite3.connect(path)
        try:
            assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
            assert (
                raw.execute("PRAGMA user_version").fetchone()[0]
                == sqlite_mod.MIGRATIONS[-1].version
            )
            assert raw.execute("SELECT job_id, state FROM jobs").fetchall() == [("a", "running")]
        finally:
            raw.close()


async def test_two_stores_on_one_file_see_each_others_rows(tmp_path):
    path = tmp_path / "shared.db"
    with trio.fail_after(30):
        async with SqliteStore(path) as a, SqliteStore(path) as b:
            await a.put_job(job("from-a"))
            assert await b.get_job("from-a") == job("from-a")
            await b.append_events([event("from-b", 0)])
            assert await a.read_events("from-b") == [event("from-b", 0)]
            async with trio.open_nursery() as nursery:
                for i in range(40):
                    nursery.start_soon(a.append_events, [event("both", 2 * i)])
                    nursery.start_soon(b.append_events, [event("both", 2 * i + 1)])
            assert [e.seq for e in await a.read_events("both")] == list(range(80))
            assert [e.seq for e in await b.read_events("both")] == list(range(80))


async def test_reopen_is_idempotent(tmp_path):
    path = tmp_path / "s.db"
    async with SqliteStore(path) as store:
        await store.put_job(job("a"))
        await store.append_events([event("a", 0)])
    raw = sqlite3.connect(path)
    schema = raw.execute("SELECT type, name, sql FROM sqlite_master ORDER BY name").fetchall()
    raw.close()
    for _ in range(2):
        async with SqliteStore(path) as store:
            assert await store.get_job("a") == job("a")
            assert await store.read_events("a") == [event("a", 0)]
    raw = sqlite3.connect(path)
    assert (
        raw.execute("SELECT type, name, sql FROM sqlite_master ORDER BY name").fetchall() == schema
    )
    assert raw.execute("PRAGMA user_version").fetchone()[0] == 1
    raw.close()


async def test_an_appended_migration_upgrades_a_v1_file(tmp_path, monkeypatch):
    path = tmp_path / "s.db"
    async with SqliteStore(path) as store:
        await store.put_job(job("a"))
    v2 = sqlite_mod.Migration(2, ("CREATE TABLE notes (job_id TEXT PRIMARY KEY, note TEXT)",))
    monkeypatch.setattr(sqlite_mod, "MIGRATIONS", (*sqlite_mod.MIGRATIONS, v2))
    async with SqliteStore(path) as store:
        assert await store.get_job("a") == job("a")
    raw = sqlite3.connect(path)
    assert raw.execute("PRAGMA user_version").fetchone()[0] == 2
    assert raw.execute("SELECT count(*) FROM notes").fetchone() == (0,)
    raw.close()
    monkeypatch.undo()  # this code knows v1 only: the upgraded file is refused
    with pytest.raises(StoreSchemaTooNew, match=r"schema 2, this code knows 1"):
        async with SqliteStore(path):
            pass


async def test_empty_file_becomes_a_store(tmp_path):
    path = tmp_path / "empty.db"
    path.write_bytes(b"")
    async with SqliteStore(path) as store:
        await store.put_job(job("a"))
        assert await store.get_job("a") == job("a")


@pytest.mark.parametrize(
    "content",
    [
        pytest.param(os.urandom(8192), id="random-bytes"),
        pytest.param(b"SQLite format 3\x00" + os.urandom(8192), id="sqlite-header-garbage-body"),
        pytest.param(b"not a database, just text\n" * 40, id="text"),
    ],
)
async def test_corrupt_file_is_refused_and_untouched(tmp_path, content):
    path = tmp_path / "corral.db"
    path.write_bytes(content)
    before = snapshot(tmp_path)
    with pytest.raises(StoreCorrupt) as info:
        async with SqliteStore(path):
            pass
    assert str(path) in str(info.value)
    assert "not a" in str(info.value) or "malformed" in str(info.value)
    assert snapshot(tmp_path) == before  # byte for byte, and no side files


@pytest.mark.parametrize("user_version", [0, 3])
async def test_foreign_sqlite_database_is_refused_and_untouched(tmp_path, user_version):
    path = tmp_path / "app.db"
    raw = sqlite3.connect(path)
    raw.execute("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT)")
    raw.execute("INSERT INTO users (name) VALUES ('ada')")
    raw.execute(f"PRAGMA user_version = {user_version}")
    raw.commit()
    raw.close()
    before = snapshot(tmp_path)
    with pytest.raises(StoreError, match="not a corral store") as info:
        async with SqliteStore(path):
            pass
    assert not isinstance(info.value, StoreSchemaTooNew)
    assert str(path) in str(info.value) and "users" in str(info.value)
    assert snapshot(tmp_path) == before


async def test_newer_schema_is_refused_and_untouched(tmp_path):
    path = tmp_path / "s.db"
    async with SqliteStore(path) as store:
        await store.put_job(job("a"))
    raw = sqlite3.connect(path)
    raw.execute("PRAGMA user_version = 99")
    raw.close()
    before = path.read_bytes()
    with pytest.raises(StoreSchemaTooNew) as info:
        async with SqliteStore(path):
            pass
    assert str(info.value) == (
        f"store {path}: was written by a newer corral (schema 99, this code knows 1); left as it is"
    )
    assert path.read_bytes() == before


async def test_failed_batch_fails_its_callers_and_the_store_goes_on(tmp_path, monkeypatch):
    async with SqliteStore(tmp_path / "s.db") as store:
        await store.append_events([event("j", 0)])
        committed = store.stats().transactions

        def broken(batch):
            raise sqlite3.OperationalError("disk I/O error")

        monkeypatch.setattr(store, "_execute_batch", broken)
        failures: list[StoreWriteFailed] = []

        async def writer(seq: int) -> None:
            try:
                await store.append_events([event("j", seq)])
            except StoreWriteFailed as exc:
                failures.append(exc)

        async with trio.open_nursery() as nursery:
            for seq in (1, 2, 3):
                nursery.start_soon(writer, seq)
        assert len(failures) == 3
        for exc in failures:
            assert "disk I/O error" in str(exc) and str(store.path) in str(exc)
            assert isinstance(exc.__cause__, sqlite3.OperationalError)
        assert store.stats().transactions == committed and store.stats().pending_writes == 0

        monkeypatch.undo()
        await store.append_events([event("j", 4)])
        assert [e.seq for e in await store.read_events("j")] == [0, 4]


async def test_locked_database_fails_the_batch_then_recovers(tmp_path):
    path = tmp_path / "s.db"
    with trio.fail_after(30):
        async with SqliteStore(path, busy_timeout=0.05) as store:
            await store.put_job(job("a"))
            other = sqlite3.connect(path, isolation_level=None)
            other.execute("BEGIN EXCLUSIVE")  # another process holds the write lock
            try:
                errors: list[StoreWriteFailed] = []

                async def writer(seq: int) -> None:
                    try:
                        await store.append_events([event("a", seq)])
                    except StoreWriteFailed as exc:
                        errors.append(exc)

                async with trio.open_nursery() as nursery:
                    for seq in range(3):
                        nursery.start_soon(writer, seq)
                assert len(errors) == 3
                assert all("database is locked" in str(exc) for exc in errors)
                assert await store.get_job("a") == job("a")  # reads go on under WAL
            finally:
                other.execute("ROLLBACK")
                other.close()
            await store.append_events([event("a", 9)])
            assert [e.seq for e in await store.read_events("a")] == [9]


async def test_one_callers_bad_row_does_not_fail_its_batch_mates(tmp_path):
    async with SqliteStore(tmp_path / "s.db") as store:
        bad_errors: list[StoreWriteFailed] = []

        async def bad() -> None:
            try:
                await store.put_job(job("bad", state=None))  # violates NOT NULL
            except StoreWriteFailed as exc:
                bad_errors.append(exc)

        async with trio.open_nursery() as nursery:
            for seq in range(5):
                nursery.start_soon(store.append_events, [event("good", seq)])
            nursery.start_soon(bad)
            for seq in range(5, 10):
                nursery.start_soon(store.append_events, [event("good", seq)])
        assert len(bad_errors) == 1 and "NOT NULL" in str(bad_errors[0])
        assert [e.seq for e in await store.read_events("good")] == list(range(10))
        assert await store.get_job("bad") is None


async def test_write_queued_when_the_store_is_cancelled_is_committed(tmp_path):
    path = tmp_path / "s.db"
    with trio.fail_after(30):
        with trio.CancelScope() as scope:
            async with SqliteStore(path) as store:
                scope.cancel()
                await store.append_events(
                    [event("j", 0), event("j", 1)]
                )  # enqueued, then Cancelled
        assert scope.cancelled_caught
        assert store.stats().pending_writes == 0 and store.stats().rows_written == 2
        async with SqliteStore(path) as store:
            assert [e.seq for e in await store.read_events("j")] == [0, 1]


async def test_write_after_the_flusher_was_cancelled_is_refused_not_hung(tmp_path):
    with trio.CancelScope() as scope:
        async with SqliteStore(tmp_path / "s.db") as store:
            scope.cancel()
            with trio.CancelScope(shield=True), trio.fail_after(10):
                await trio.testing.wait_all_tasks_blocked()  # the flusher has taken its Cancelled
                with pytest.raises(StoreError, match="closing"):
                    await store.put_job(job("late"))
    assert scope.cancelled_caught


async def test_body_exception_propagates_unchanged(tmp_path):
    with pytest.raises(KeyError, match="mine"):
        async with SqliteStore(tmp_path / "s.db") as store:
            await store.put_job(job("a"))
            raise KeyError("mine")
    async with SqliteStore(tmp_path / "s.db") as store:
        assert await store.get_job("a") == job("a")


async def test_body_exception_propagates_unchanged_under_cancellation(tmp_path):
    with trio.CancelScope() as scope:
        with pytest.raises(KeyError, match="mine"):
            async with SqliteStore(tmp_path / "s.db"):
                scope.cancel()
                with trio.CancelScope(shield=True):
                    await trio.testing.wait_all_tasks_blocked()  # the flusher ends Cancelled
                raise KeyError("mine")
    assert not scope.cancelled_caught


async def test_opens_once(tmp_path):
    store = SqliteStore(tmp_path / "s.db")
    async with store:
        pass
    with pytest.raises(RuntimeError, match="only once"):
        async with store:
            pass


# -- MemoryStore ----------------------------------------------------------------------------------


async def test_memory_store_evicts_finished_jobs_oldest_first():
    async with MemoryStore(max_finished_jobs=5) as store:
        for i in range(3):
            await store.put_job(job(f"live{i}", created_at=float(i)))
        for i in range(1000):
            jid = f"done{i}"
            await store.put_job(job(jid, created_at=10.0 + i))
            await store.append_events([event(jid, 0), event(jid, 1)])
            await store.put_checkpoint(Checkpoint(jid, "a", {"i": i}, iteration=1))
            await store.update_job(jid, state="completed", finished_at=20.0 + i)
            assert store.jobs_held <= 3 + 5
        assert store.jobs_held == 8
        kept = [r.job_id for r in await store.list_jobs(states=["completed"])]
        assert kept == [f"done{i}" for i in range(999, 994, -1)]
        assert [r.job_id for r in await store.list_jobs(states=["running"])] == [
            "live2",
            "live1",
            "live0",
        ]
        assert await store.get_job("done0") is None
        assert await store.read_events("done0") == []
        assert await store.get_checkpoints("done994") == {}
        assert len(await store.read_events("done999")) == 2
        assert len(store._events) == 5 and len(store._checkpoints) == 5  # flat, not 1000
        # a job that finishes later counts from when it finished, not when it was created
        await store.update_job("live0", state="failed", finished_at=5000.0)
        assert store.jobs_held == 7 and await store.get_job("done995") is None
        assert await store.get_job("live0") is not None


# -- read-only opening ---------------------------------------------------------------------------


def _snapshot(path: Path) -> tuple[bytes, int, list[str]]:
    return path.read_bytes(), path.stat().st_mtime_ns, sorted(p.name for p in path.parent.iterdir())


async def test_read_only_store_reads_and_never_writes_or_migrates(tmp_path, monkeypatch):
    path = tmp_path / "s.db"
    async with SqliteStore(path) as store:
        await store.put_job(job("a"))
        await store.append_events([event("a", 0), event("a", 1)])
    before = _snapshot(path)
    assert before[2] == ["s.db"]  # closed cleanly: no -wal or -shm beside it
    # a newer corral knows a v2 schema: a read-only open still does not migrate the v1 file
    v2 = sqlite_mod.Migration(2, ("CREATE TABLE notes (job_id TEXT PRIMARY KEY, note TEXT)",))
    monkeypatch.setattr(sqlite_mod, "MIGRATIONS", (*sqlite_mod.MIGRATIONS, v2))
    async with SqliteStore(path, read_only=True) as store:
        assert store.read_only
        assert [r.job_id for r in await store.list_jobs()] == ["a"]
        assert [e.seq for e in await store.read_events("a")] == [0, 1]
        for write in (store.put_job(job("b")), store.update_job("a", state="failed"),
                      store.append_events([event("a", 2)]), store.delete_lease("x")):
            with pytest.raises(StoreReadOnly, match="opened read-only"):
                await write
    assert _snapshot(path) == before  # same bytes, same mtime, no -wal/-shm created
    raw = sqlite3.connect(f"file:{path}?mode=ro&immutable=1", uri=True)
    assert raw.execute("PRAGMA user_version").fetchone()[0] == 1
    raw.close()


async def test_read_only_open_of_a_missing_or_foreign_file_creates_and_changes_nothing(tmp_path):
    missing = tmp_path / "sub" / "missing.db"
    with pytest.raises(StoreError, match="no such store"):
        async with SqliteStore(missing, read_only=True):
            pass
    assert not missing.parent.exists()
    foreign = tmp_path / "foreign.db"
    foreign.write_bytes(b"just some text" * 20)
    with pytest.raises(StoreCorrupt):
        async with SqliteStore(foreign, read_only=True):
            pass


async def test_read_only_sees_a_live_writers_commits(tmp_path):
    path = tmp_path / "s.db"
    async with SqliteStore(path) as writer:
        await writer.put_job(job("a"))
        async with SqliteStore(path, read_only=True) as reader:  # -wal exists: a plain mode=ro read
            assert [r.job_id for r in await reader.list_jobs()] == ["a"]
            await writer.put_job(job("b", created_at=2.0))
            assert [r.job_id for r in await reader.list_jobs()] == ["b", "a"]


async def test_a_store_that_cannot_be_written_is_refused_by_a_writable_open(tmp_path, immutable):
    path = tmp_path / "s.db"
    async with SqliteStore(path) as store:
        await store.put_job(job("a"))
    before = _snapshot(path)
    immutable(path)
    with pytest.raises(StoreReadOnly, match="is read-only"):
        async with SqliteStore(path):
            pass
    async with SqliteStore(path, read_only=True) as store:  # it can still be read
        assert [r.job_id for r in await store.list_jobs()] == ["a"]
    assert _snapshot(path) == before
    # a read-only directory: SQLite could not create the -wal file beside it
    other = tmp_path / "ro-dir"
    other.mkdir()
    async with SqliteStore(other / "s.db") as store:
        await store.put_job(job("a"))
    immutable(other)
    with pytest.raises(StoreReadOnly, match=r"directory .* is read-only"):
        async with SqliteStore(other / "s.db"):
            pass
    async with SqliteStore(other / "s.db", read_only=True) as store:
        assert [r.job_id for r in await store.list_jobs()] == ["a"]
