"""Opening a SQLite store file safely (in a worker thread): check before changing anything.

A file that is not SQLite, a SQLite database that is not a corral store, or a schema newer than
this code is refused with the path and the reason, and left untouched; a store that cannot be
written is refused by a writable open with :class:`StoreReadOnly`; a read-only open creates no
file at all.  A writable open switches the file to WAL and applies the missing migrations.
"""

from __future__ import annotations

import os
import sqlite3
import stat
from collections.abc import Sequence
from pathlib import Path

import attrs

from actors.log import get_logger

from .errors import StoreCorrupt, StoreError, StoreReadOnly, StoreSchemaTooNew

__all__ = ["MARKER_KEY", "MARKER_VALUE", "Migration", "StoreFile", "describe"]

_log = get_logger("runtime.store.sqlite")

_SQLITE_HEADER = b"SQLite format 3\x00"
MARKER_KEY = "format"
MARKER_VALUE = "corral-store"
_SQLITE_READONLY = 8
_SQLITE_CORRUPT = 11
_SQLITE_NOTADB = 26


@attrs.frozen
class Migration:
    """Statements that take the schema from ``version - 1`` to ``version`` (one transaction)."""

    version: int
    statements: tuple[str, ...]


def describe(exc: BaseException) -> str:
    """A SQLite error as its message; anything else with its type."""
    if isinstance(exc, sqlite3.Error):
        return str(exc) or type(exc).__name__
    return f"{type(exc).__name__}: {exc}"


class StoreFile:
    """The store file at ``path``, its migrations, and how to connect to it (blocking)."""

    def __init__(self, path: Path, busy_timeout: float, migrations: Sequence[Migration]) -> None:
        self.path = path
        self.busy_timeout = busy_timeout
        self.migrations = migrations

    def connect(self, target: str | None = None, *, uri: bool = False) -> sqlite3.Connection:
        return sqlite3.connect(target or os.fspath(self.path), timeout=self.busy_timeout,
                               isolation_level=None, check_same_thread=False, uri=uri)

    def sqlite_error(self, exc: sqlite3.Error, doing: str) -> StoreError:
        code = getattr(exc, "sqlite_errorcode", None)
        if code is not None and code & 0xFF in (_SQLITE_CORRUPT, _SQLITE_NOTADB):
            return StoreCorrupt(self.path, f"{doing}: {describe(exc)}")
        if code is not None and code & 0xFF == _SQLITE_READONLY:
            return StoreReadOnly(self.path, f"{doing}: {describe(exc)}")
        return StoreError(self.path, f"{doing}: {describe(exc)}")

    def read_only_uri(self) -> str:
        """A ``mode=ro`` URI; ``immutable=1`` too when no writer left a ``-wal`` file, so that a
        read creates no ``-wal``/``-shm`` files (and works in a read-only directory)."""
        uri = self.path.resolve().as_uri() + "?mode=ro"
        wal = self.path.with_name(self.path.name + "-wal")
        return uri if wal.exists() else uri + "&immutable=1"

    def open_read_only(self) -> sqlite3.Connection:
        try:
            st = self.path.stat()
        except FileNotFoundError:
            raise StoreError(self.path, "no such store (a read-only open creates nothing)") from None
        except OSError as exc:
            raise StoreError(self.path, f"cannot stat it: {exc}") from exc
        if not stat.S_ISREG(st.st_mode):
            raise StoreError(self.path, "is not a regular file")
        if st.st_size == 0:
            raise StoreError(self.path, "is an empty file, not a corral store")
        self._inspect()
        try:
            return self.connect(self.read_only_uri(), uri=True)
        except sqlite3.Error as exc:
            raise self.sqlite_error(exc, "cannot open it read-only") from exc

    def _check_writable(self, st: os.stat_result | None) -> None:
        """Refuse a store this process cannot write, before anything is changed."""
        directory = self.path.parent
        if st is not None and not os.access(self.path, os.W_OK):
            raise StoreReadOnly(self.path, "is read-only (no write access to the file); it can only be read")
        wal = self.path.with_name(self.path.name + "-wal")
        if directory.is_dir() and not os.access(directory, os.W_OK | os.X_OK) and not wal.exists():
            raise StoreReadOnly(self.path, f"its directory {directory} is read-only (SQLite needs to create "
                                           "its -wal and -shm files there); it can only be read")

    def open_writable(self) -> tuple[sqlite3.Connection, sqlite3.Connection]:
        """The writer and reader connections of a writable store, created and migrated."""
        path = self.path
        try:
            st: os.stat_result | None = path.stat()
        except FileNotFoundError:
            st = None
        except OSError as exc:
            raise StoreError(path, f"cannot stat it: {exc}") from exc
        if st is not None and not stat.S_ISREG(st.st_mode):
            raise StoreError(path, "is not a regular file")
        self._check_writable(st)
        if st is not None and st.st_size > 0:
            self._inspect()  # refuses a foreign or newer file before anything is written
        elif st is None:
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise StoreError(path, f"cannot create its directory: {exc}") from exc
        try:
            writer = self.connect()
        except sqlite3.Error as exc:
            raise self.sqlite_error(exc, "cannot open it") from exc
        try:
            mode = writer.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise StoreError(path, f"cannot switch it to WAL journal mode (got {mode!r})")
            writer.execute("PRAGMA synchronous=NORMAL")
            writer.execute("PRAGMA wal_autocheckpoint=0")  # the store's Checkpointer, off the write path
            self._migrate(writer)
            reader = self.connect()
            reader.execute("PRAGMA synchronous=NORMAL")
        except sqlite3.Error as exc:
            writer.close()
            raise self.sqlite_error(exc, "cannot open it") from exc
        except BaseException:
            writer.close()
            raise
        return writer, reader

    def _inspect(self) -> None:
        """Refuse a file that is not a corral store (or is one of a newer schema), read-only."""
        try:
            with open(self.path, "rb") as f:
                head = f.read(len(_SQLITE_HEADER))
        except OSError as exc:
            raise StoreError(self.path, f"cannot read it: {exc}") from exc
        if head != _SQLITE_HEADER:
            raise StoreCorrupt(self.path, "is not a SQLite database (no SQLite header); left as it is")
        try:
            conn = self.connect(self.read_only_uri(), uri=True)
        except sqlite3.Error as exc:
            raise self.sqlite_error(exc, "cannot open it read-only") from exc
        try:
            self._check_schema(conn)
        finally:
            conn.close()

    def _check_schema(self, conn: sqlite3.Connection) -> int:
        """The schema version of ``conn``'s database, after checking it is ours and not newer."""
        try:
            tables = sorted(r[0] for r in conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table'"))
            version = int(conn.execute("PRAGMA user_version").fetchone()[0])
            marked = "corral_meta" in tables and conn.execute(
                "SELECT value FROM corral_meta WHERE key = ?", (MARKER_KEY,)).fetchone() == (
                MARKER_VALUE,)
        except sqlite3.Error as exc:
            raise self.sqlite_error(exc, "cannot read its schema; left as it is") from exc
        if (tables or version) and not marked:
            raise StoreError(self.path, (
                f"is a SQLite database but not a corral store (user_version {version}, tables: "
                f"{', '.join(tables[:8]) or 'none'}); left as it is"))
        latest = self.migrations[-1].version
        if version > latest:
            raise StoreSchemaTooNew(self.path, (
                f"was written by a newer corral (schema {version}, this code knows {latest}); "
                "left as it is"))
        if marked and version < 1:
            raise StoreCorrupt(self.path, "has the corral marker but schema version 0")
        return version

    def _migrate(self, conn: sqlite3.Connection) -> None:
        conn.execute("BEGIN IMMEDIATE")
        try:
            version = self._check_schema(conn)  # again, under the write lock
            for migration in self.migrations:
                if migration.version <= version:
                    continue
                for statement in migration.statements:
                    conn.execute(statement)
                conn.execute(f"PRAGMA user_version = {int(migration.version)}")
                _log.info("store_migrated", path=str(self.path), version=migration.version)
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
