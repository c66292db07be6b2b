"""Store errors: each names the store's path and what is wrong."""

from __future__ import annotations

import os

__all__ = ["StoreCorrupt", "StoreError", "StoreReadOnly", "StoreSchemaTooNew", "StoreWriteFailed"]


class StoreError(Exception):
    """A store cannot do what was asked.  ``path`` names the store, ``problem`` what is wrong."""

    def __init__(self, path: str | os.PathLike[str], problem: str) -> None:
        self.path = os.fspath(path)
        self.problem = problem
        super().__init__(f"store {self.path}: {problem}")


class StoreCorrupt(StoreError):
    """The file is not a readable SQLite database (it was left untouched)."""


class StoreReadOnly(StoreError):
    """The store cannot be written (a read-only file, directory or file system, or opened with
    ``read_only=True``); it can still be read."""


class StoreSchemaTooNew(StoreError):
    """The store was written by a newer corral whose schema this code does not know."""


class StoreWriteFailed(StoreError):
    """A write transaction failed; nothing of its batch was committed (earlier commits stand)."""
