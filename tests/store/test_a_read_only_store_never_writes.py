"""A store opened read-only reads (a live writer's commits too) and never writes, migrates or
creates a file; a store that cannot be written is refused by a writable open."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from store_support import event, job

import runtime.store.sqlite as sqlite_mod
from runtime.store import SqliteStore, StoreCorrupt, StoreError, StoreReadOnly


def _snapshot(path: Path) -> tuple[bytes, int, list[str]]:
    return path.read_bytes(), path.stat().st_mtime_ns, sorted(p.name for p in path.parent.iterdir())


async def test_read_only_store_reads_and_never_writes_or_migrates(tmp_path, monkeypatch):
    path = tmp_path / "s.db"
    async with SqliteStore(path) as store:
        await store.put_job(job("a"))
        await store.append_events([event("a", 0), event("a", 1)])
    before = _snapshot(path)
    assert before[2] == ["s.db"]  # closed cleanly: no -wal or -shm beside it
    # a newer corral knows one more migration: a read-only open still does not apply it
    v2 = sqlite_mod.Migration(len(sqlite_mod.MIGRATIONS) + 1, ("CREATE TABLE notes (job_id TEXT PRIMARY KEY, note TEXT)",))
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
    assert raw.execute("PRAGMA user_version").fetchone()[0] == len(sqlite_mod.MIGRATIONS) - 1
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
