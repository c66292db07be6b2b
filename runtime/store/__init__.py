"""Stores for job records, event logs, checkpoints, leases and process groups, and how jobs meet them.

:class:`SqliteStore` (the embedded default: one SQLite file, WAL, batched writes from one thread)
and :class:`MemoryStore` (dicts, bounded in finished jobs) both implement the :class:`Store`
protocol::

    async with SqliteStore(path) as store:
        await store.put_job(record)
        await store.append_events(rows)

Layers, each importing only those before it (and :mod:`runtime.flow`, :mod:`actors`; never
:mod:`runtime.core`)::

    errors, records      what a store holds (plain attrs records, state names as strings)
    protocol             the Store protocol
    memory, sqlite       the two stores
    recording            a recording job's ordered writes (events, checkpoints, record updates)
    leases               leases and the orphan sweep of dead runtimes
    resume               where a dead runtime's durable job stood
"""

from .errors import StoreCorrupt as StoreCorrupt
from .errors import StoreError as StoreError
from .errors import StoreReadOnly as StoreReadOnly
from .errors import StoreSchemaTooNew as StoreSchemaTooNew
from .errors import StoreWriteFailed as StoreWriteFailed
from .leases import group_row as group_row
from .leases import lease_alive as lease_alive
from .leases import new_lease as new_lease
from .leases import sweep_dead as sweep_dead
from .memory import MemoryStore as MemoryStore
from .protocol import Store as Store
from .recording import EncodedEvent as EncodedEvent
from .recording import JobUpdate as JobUpdate
from .recording import write_batch as write_batch
from .records import EVENT_ENVELOPE as EVENT_ENVELOPE
from .records import INTERRUPTED as INTERRUPTED
from .records import LIVE_STATES as LIVE_STATES
from .records import PLAIN_TYPES as PLAIN_TYPES
from .records import Checkpoint as Checkpoint
from .records import EventRow as EventRow
from .records import JobRecord as JobRecord
from .records import Lease as Lease
from .records import ProcessGroupRow as ProcessGroupRow
from .records import StoreStats as StoreStats
from .resume import Restored as Restored
from .resume import restore as restore
from .resume import resumable as resumable
from .sqlite import SqliteStore as SqliteStore
