"""The SQLite store's WAL checkpoints, off the write path.

SQLite's automatic checkpoint runs inside the commit that crosses its threshold: that commit
copies the log back into the database and syncs both files, milliseconds on a real disk, while
every writer behind it waits.  The store's writer connection turns it off
(``wal_autocheckpoint=0``) and :class:`Checkpointer` runs a ``PASSIVE`` checkpoint on a
connection of its own, in a worker thread, once enough has been committed since the last one.
WAL mode lets it run while the writer commits (it waits for no reader or writer, and never holds
the write lock); durability is unchanged (a commit is in the log either way).  It parks on an
event while nothing is due, and ends when :meth:`Checkpointer.close` is called.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path

import trio

from actors.log import get_logger

from .sqlite_open import describe

__all__ = ["Checkpointer"]

_log = get_logger("runtime.store.sqlite")

EVERY_TRANSACTIONS = 128
"""Commits between checkpoints (a small transaction appends a few pages: near SQLite's 1000-page default)."""
EVERY_BYTES = 2 << 20
"""Or this many bytes of rows committed since the last checkpoint, whichever comes first."""


class Checkpointer:
    """Runs a ``PASSIVE`` WAL checkpoint in a worker thread when :meth:`committed` says one is due."""

    def __init__(self, path: Path, connect: Callable[[], sqlite3.Connection]) -> None:
        self.path = path
        self._connect = connect
        self._conn: sqlite3.Connection | None = None
        self._wake = trio.Event()
        self._closing = False
        self._transactions = 0
        self._bytes = 0
        self.checkpoints = 0

    def committed(self, nbytes: int) -> None:
        """A transaction of ``nbytes`` bytes of rows was committed."""
        self._transactions += 1
        self._bytes += nbytes
        if self._transactions >= EVERY_TRANSACTIONS or self._bytes >= EVERY_BYTES:
            self._wake.set()

    def close(self) -> None:
        """Let :meth:`run` return (after the checkpoint running now, if any)."""
        self._closing = True
        self._wake.set()

    async def run(self) -> None:
        try:
            while True:
                await self._wake.wait()
                self._wake = trio.Event()
                if self._closing:
                    break
                self._transactions = self._bytes = 0
                # not cancellable midway (a thread); a checkpoint cut short is safe in SQLite anyway
                if await trio.to_thread.run_sync(self._checkpoint):
                    self.checkpoints += 1
        finally:
            with trio.CancelScope(shield=True):
                await trio.to_thread.run_sync(self._close_sync)

    def _checkpoint(self) -> bool:
        """One checkpoint (in a worker thread); whether it ran."""
        try:
            if self._conn is None:
                self._conn = self._connect()
            self._conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
        except sqlite3.Error as exc:  # the next one tries again; SQLite checkpoints on close too
            _log.warning("store_checkpoint_failed", path=str(self.path), error=describe(exc))
            return False
        return True

    def _close_sync(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
