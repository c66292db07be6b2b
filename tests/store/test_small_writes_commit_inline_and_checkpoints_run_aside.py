"""SqliteStore: a small write commits on the trio thread, yet a write lock held by another
connection (another process's runtime, say) never freezes the runtime -- that write waits on the
writer thread and commits once the lock is released -- and the write-ahead log is checkpointed
beside the writes while the store is open.  Real SQLite files in tmp_path."""

from __future__ import annotations

import sqlite3

import trio
import trio.testing
from store_support import job

from runtime.store import SqliteStore
from runtime.store.sqlite_checkpoint import EVERY_TRANSACTIONS


async def test_a_write_waits_for_another_connections_lock_without_freezing_the_runtime(tmp_path):
    db = tmp_path / "s.db"
    async with SqliteStore(db, busy_timeout=30) as store:
        await store.put_job(job("first"))
        other = sqlite3.connect(db, isolation_level=None)
        other.execute("BEGIN IMMEDIATE")  # holds the write lock
        written = trio.Event()

        async def write() -> None:
            await store.put_job(job("second"))
            written.set()

        with trio.fail_after(60):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(write)
                # the runtime goes on while the write waits for the lock (an inline wait would hang here)
                await trio.testing.wait_all_tasks_blocked()
                assert not written.is_set()
                assert other.execute("SELECT job_id FROM jobs").fetchall() == [("first",)]
                other.execute("COMMIT")
                await written.wait()
        other.close()
        assert (await store.get_job("second")) is not None
        assert store.stats().pending_writes == 0


async def test_the_write_ahead_log_is_checkpointed_while_the_store_is_open(tmp_path):
    db = tmp_path / "s.db"
    n = 3 * EVERY_TRANSACTIONS
    async with SqliteStore(db) as store:
        for i in range(n):  # one transaction each
            await store.put_job(job(f"j{i}"))
        assert store.stats().transactions >= n
    assert store.stats().checkpoints >= 1
    conn = sqlite3.connect(db)
    try:
        assert conn.execute("SELECT COUNT(*) FROM jobs").fetchone()[0] == n
    finally:
        conn.close()
