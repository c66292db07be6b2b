"""A file that is not a corral store (random bytes, a broken SQLite file, someone else's database,
a newer schema) is refused with its path named, and left byte for byte as it was."""

from __future__ import annotations

import os
import sqlite3

import pytest
from store_support import job, snapshot

from runtime.store import SqliteStore, StoreCorrupt, StoreError, StoreSchemaTooNew
from runtime.store import sqlite as sqlite_mod


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
        f"store {path}: was written by a newer corral (schema 99, this code knows {len(sqlite_mod.MIGRATIONS)}); left as it is"
    )
    assert path.read_bytes() == before
