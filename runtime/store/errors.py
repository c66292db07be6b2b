"""Store errors: each names the store's path and what is wrong."""

from __future__ import annotations

import os

__all__ = ["StoreCorrupt", "StoreError", "StoreSchemaTooNew", "StoreWriteFailed"]


class StoreError(Exception):
    """A store cannot do what was asked.  ``path`` names the store, ``problem`` what is wrong."""

    def __init__(self, path: str | os.PathLike[str], problem: str) -> None:
        self.path = os.fspath(path)
        self.problem = problem
        super().__init__(f"store {self.path}: {problem}")


class StoreCorrupt(StoreError):
    """The file is not a readable SQLite database (it was left untouched)."""


class StoreSchemaTooNew(StoreError):
    """The store was written by a newer corral whose schema this code does not know."""


class StoreWriteFailed(StoreError):
    """A write transaction failed; nothing of its batch was committed (earlier commits stand)."""
