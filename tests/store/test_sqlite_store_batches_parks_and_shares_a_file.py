"""SqliteStore: concurrent writes are batched into few transactions, an idle store parks, two stores
share one WAL file, opening is idempotent and migrates, cancellation never drops a queued write
nor hangs a late one, and a body's exception comes out unchanged.  Real SQLite files in tmp_path."""

from __future__ import annotations

import itertools
import math
import sqlite3

import pytest
import trio
import trio.testing
from store_support import event, job

import runtime.store.sqlite as sqlite_mod
import runtime.store.sqlite_writer as sqlite_writer
from runtime.store import SqliteStore, StoreError, StoreSchemaTooNew
from runtime.testing import WakeupCounter


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


async def test_a_flood_of_small_writes_commits_a_chunk_at_a_time_with_the_loop_running_between(tmp_path):
    # 600 writers at once: not one 512-row transaction in the writer thread (a round trip that
    # every later write queues behind, so each next batch is as big) but inline chunks of at most
    # INLINE_ROWS, and a task that only checkpoints sees the rows arrive chunk by chunk
    n = 600
    async with SqliteStore(tmp_path / "s.db") as store:
        seen: list[int] = []
        done = trio.Event()

        async def writer(i: int) -> None:
            await store.append_events([event("j", i)])

        async def watch() -> None:
            while not done.is_set():
                seen.append(store.stats().rows_written)
                await trio.lowlevel.checkpoint()

        with trio.fail_after(30):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(watch)
                async with trio.open_nursery() as writers:
                    for i in range(n):
                        writers.start_soon(writer, i)
                done.set()
        stats = store.stats()
        assert stats.rows_written == n and stats.pending_writes == 0
        # (trio runs a round's tasks in a random order: two samples a round apart can straddle two commits)
        steps = [b - a for a, b in itertools.pairwise(seen)]
        assert max(steps) <= 2 * sqlite_writer.INLINE_ROWS
        assert stats.transactions >= n / sqlite_writer.INLINE_ROWS
        assert [e.seq for e in await store.read_events("j")] == list(range(n))


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
            async with trio.open_nursery() as nursery:  # the instrument does see a task that writes
                nursery.start_soon(store.put_job, job("b"), name="writer")
        finally:
            trio.lowlevel.remove_instrument(counter)
        assert idle == {}
        assert "writer" in counter.names
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
    assert raw.execute("PRAGMA user_version").fetchone()[0] == len(sqlite_mod.MIGRATIONS)
    raw.close()


async def test_an_appended_migration_upgrades_a_v1_file(tmp_path, monkeypatch):
    path = tmp_path / "s.db"
    async with SqliteStore(path) as store:
        await store.put_job(job("a"))
    known = len(sqlite_mod.MIGRATIONS)
    v2 = sqlite_mod.Migration(known + 1, ("CREATE TABLE notes (job_id TEXT PRIMARY KEY, note TEXT)",))
    monkeypatch.setattr(sqlite_mod, "MIGRATIONS", (*sqlite_mod.MIGRATIONS, v2))
    async with SqliteStore(path) as store:
        assert await store.get_job("a") == job("a")
    raw = sqlite3.connect(path)
    assert raw.execute("PRAGMA user_version").fetchone()[0] == known + 1
    assert raw.execute("SELECT count(*) FROM notes").fetchone() == (0,)
    raw.close()
    monkeypatch.undo()  # this code does not know the appended one: the upgraded file is refused
    with pytest.raises(StoreSchemaTooNew, match=rf"schema {known + 1}, this code knows {known}"):
        async with SqliteStore(path):
            pass


async def test_empty_file_becomes_a_store(tmp_path):
    path = tmp_path / "empty.db"
    path.write_bytes(b"")
    async with SqliteStore(path) as store:
        await store.put_job(job("a"))
        assert await store.get_job("a") == job("a")


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
