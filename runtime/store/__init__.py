"""Stores for job records, event logs, checkpoints, leases and process groups.

:class:`SqliteStore` (the embedded default: one SQLite file, WAL, batched writes from one thread)
and :class:`MemoryStore` (dicts, bounded in finished jobs) both implement the :class:`Store`
protocol::

    async with SqliteStore(path) as store:
        await store.put_job(record)
        await store.append_events(rows)
"""

from .errors import StoreCorrupt, StoreError, StoreReadOnly, StoreSchemaTooNew, StoreWriteFailed
from .memory import MemoryStore
from .protocol import Store
from .records import Checkpoint, EventRow, JobRecord, Lease, ProcessGroupRow, StoreStats
from .sqlite import SqliteStore

__all__ = [
    "Checkpoint",
    "EventRow",
    "JobRecord",
    "Lease",
    "MemoryStore",
    "ProcessGroupRow",
    "SqliteStore",
    "Store",
    "StoreCorrupt",
    "StoreError",
    "StoreReadOnly",
    "StoreSchemaTooNew",
    "StoreStats",
    "StoreWriteFailed",
]
