"""A SQLite write that fails (a disk error, a lock held elsewhere, one caller's bad row) fails the
callers whose rows it held, and only those; the store goes on."""

from __future__ import annotations

import sqlite3

import trio
import trio.testing
from store_support import event, job, writes_fail

from runtime.store import SqliteStore, StoreWriteFailed


async def test_failed_batch_fails_its_callers_and_the_store_goes_on(tmp_path):
    path = tmp_path / "s.db"
    async with SqliteStore(path) as store:
        await store.append_events([event("j", 0)])
        committed = store.stats().transactions
        failures: list[StoreWriteFailed] = []

        async def writer(seq: int) -> None:
            try:
                await store.append_events([event("j", seq)])
            except StoreWriteFailed as exc:
                failures.append(exc)

        with writes_fail(path):  # a real disk I/O error from SQLite
            async with trio.open_nursery() as nursery:
                for seq in (1, 2, 3):
                    nursery.start_soon(writer, seq)
        assert len(failures) == 3
        for exc in failures:
            assert "disk I/O error" in str(exc) and str(store.path) in str(exc)
            assert isinstance(exc.__cause__, sqlite3.OperationalError)
        assert store.stats().transactions == committed and store.stats().pending_writes == 0

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
