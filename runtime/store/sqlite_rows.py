"""Records <-> SQLite rows: each record class is one table whose columns are its fields; fields
marked JSON (``metadata={"json": True}``) are stored as JSON text."""

from __future__ import annotations

import collections
import hashlib
import json
import operator
from collections.abc import Sequence
from typing import Any

import attrs
import cattrs

from .recording import EncodedEvent, JobUpdate
from .records import (
    EVENT_ENVELOPE,
    JSON_FIELD,
    PLAIN_TYPES,
    Checkpoint,
    EventRow,
    JobRecord,
    Lease,
    ProcessGroupRow,
    compact_json,
    prepare_job_update,
)

__all__ = ["CHECKPOINTS", "EVENTS", "EVENTS_UPSERT", "FLOWS_INSERT", "GROUPS", "JOBS", "LEASES", "Rows", "Table"]


@attrs.frozen
class Table:
    """A record class stored in one table whose columns are the class's fields."""

    name: str
    cls: type
    columns: tuple[str, ...]
    json_columns: frozenset[str]
    upsert: str
    select: str


def _table(name: str, cls: type, keys: tuple[str, ...]) -> Table:
    fields = attrs.fields(cls)
    columns = tuple(f.name for f in fields)
    cols = ", ".join(f'"{c}"' for c in columns)
    marks = ", ".join("?" for _ in columns)
    updates = ", ".join(f'"{c}" = excluded."{c}"' for c in columns if c not in keys)
    upsert = (f"INSERT INTO {name} ({cols}) VALUES ({marks}) "
              f"ON CONFLICT ({', '.join(keys)}) DO UPDATE SET {updates}")
    return Table(name, cls, columns, frozenset(f.name for f in fields if f.metadata.get(JSON_FIELD)),
                  upsert, f"SELECT {cols} FROM {name}")


JOBS = _table("jobs", JobRecord, ("job_id",))
EVENTS = _table("events", EventRow, ("job_id", "seq"))
CHECKPOINTS = _table("checkpoints", Checkpoint, ("job_id", "step"))
LEASES = _table("leases", Lease, ("runtime_id",))
GROUPS = _table("process_groups", ProcessGroupRow, ("marker",))


class Rows:
    """Converts records to query parameters and rows back to records."""

    def __init__(self) -> None:
        self._conv = _make_converter()
        # the JSON text and digest of the flow dicts written last, by identity: every job of a flow
        # holds the same (never mutated) dict, serialized and hashed once
        self._flow_texts: collections.OrderedDict[int, tuple[Any, str, str]] = collections.OrderedDict()
        # digests of flows this store has committed to the flows table (the newest ``_FLOW_TEXTS``):
        # a job of one of them writes no flows row; any other writes one (a no-op if present)
        self._flows_stored: collections.OrderedDict[str, None] = collections.OrderedDict()
        self.bare_events = True
        """Whether the events table has the ``bare`` column (schema 3 on)."""
        self.flow_table = True
        """Whether the file has the ``flows`` table (schema 4 on): a job row holds its flow's digest."""

    def _flow(self, flow: Any) -> tuple[str, str]:
        """The JSON text of ``flow`` and its digest."""
        hit = self._flow_texts.get(id(flow))
        if hit is not None and hit[0] is flow:
            return hit[1], hit[2]
        text = compact_json(flow)
        digest = "b2:" + hashlib.blake2b(text.encode(), digest_size=16).hexdigest()
        self._flow_texts[id(flow)] = (flow, text, digest)
        if len(self._flow_texts) > _FLOW_TEXTS:
            self._flow_texts.popitem(last=False)
        return text, digest

    def _job_params(self, rec: JobRecord, flows: dict[str, str]) -> tuple[Any, ...]:
        """The upsert parameters of job record ``rec``; its flow's row is added to ``flows`` unless
        it is known to be stored."""
        values = list(_JOB_VALUES(rec))  # the columns' values in one C call, then the few to encode
        text, digest = self._flow(values[_JOB_FLOW])
        if not self.flow_table:
            values[_JOB_FLOW] = text
        else:
            values[_JOB_FLOW] = digest
            if digest not in self._flows_stored:
                flows[digest] = text
        for i in _JOB_JSON:
            values[i] = compact_json(values[i])
        return tuple(values)

    def committed(self, ops: Sequence[tuple[str, list[tuple[Any, ...]]]]) -> None:
        """``ops`` (from :meth:`ops`) were committed: their flows are stored (the flows row, if
        any, is the first statement: nothing else to look through on every write)."""
        if not ops or ops[0][0] is not FLOWS_INSERT:
            return
        for digest, _ in ops[0][1]:
            self._flows_stored[digest] = None
            self._flows_stored.move_to_end(digest)
        while len(self._flows_stored) > _FLOW_TEXTS:
            self._flows_stored.popitem(last=False)

    @property
    def jobs_select(self) -> str:
        """The SELECT of job rows :meth:`record` reads (a digest in ``flow`` read as its flow)."""
        return _JOBS_BY_DIGEST_SELECT if self.flow_table else JOBS.select

    def column_value(self, table: Table, column: str, value: Any) -> Any:
        """``value`` as stored in ``column`` (JSON text for a JSON column): JSON-able data as it
        is (no converter walk), anything else unstructured first."""
        if column in table.json_columns:
            try:
                return compact_json(value)
            except TypeError:
                return compact_json(self._conv.unstructure(value))
        return value if value.__class__ in PLAIN_TYPES else self._conv.unstructure(value)

    def params(self, table: Table, rec: Any) -> tuple[Any, ...]:
        """The upsert parameters of ``rec``, in ``table.columns`` order (the records hold plain
        values and JSON-able data: read as they are, no unstructuring walk); not for job records,
        whose flow :meth:`ops` stores apart."""
        return tuple(compact_json(getattr(rec, c)) if c in table.json_columns else getattr(rec, c)
                     for c in table.columns)

    @property
    def events_select(self) -> str:
        """The SELECT of event rows :meth:`event` reads."""
        return f"SELECT {_EVENT_COLUMNS}, {'bare' if self.bare_events else '0'} FROM events"

    def event_params(self, row: EventRow) -> tuple[Any, ...]:
        """The upsert parameters of ``row``: its payload without the type, job_id, seq and ts that
        the columns hold (``bare`` 1), or whole when it holds other values there (``bare`` 0)."""
        p = row.payload
        if (p.get("seq") == row.seq and p.get("ts") == row.ts and p.get("job_id") == row.job_id
                and p.get("type") == row.type):
            return (row.job_id, row.seq, row.type, row.ts,
                    compact_json({k: v for k, v in p.items() if k not in EVENT_ENVELOPE}), 1)
        return row.job_id, row.seq, row.type, row.ts, compact_json(p), 0

    def event(self, row: tuple[Any, ...]) -> EventRow:
        """The event row a selected ``row`` holds (a bare payload given back its envelope)."""
        job_id, seq, type_, ts, text, bare = row
        payload = json.loads(text)
        if bare:
            payload = {"type": type_, "job_id": job_id, "seq": seq, "ts": ts, **payload}
        return EventRow(job_id, seq, type_, ts, payload)

    def update(self, job_id: str, fields: dict[str, Any], now: float) -> tuple[str, list[tuple[Any, ...]]]:
        """The UPDATE of ``fields`` of job ``job_id`` (``TypeError`` naming an unknown field)."""
        fields = prepare_job_update(job_id, fields, now)
        sets = ", ".join(f'"{name}" = ?' for name in fields)
        values = tuple(self.column_value(JOBS, name, value) for name, value in fields.items())
        return f"UPDATE jobs SET {sets} WHERE job_id = ?", [(*values, job_id)]

    def ops(self, batch: Sequence[EventRow | EncodedEvent | Checkpoint | JobRecord | JobUpdate],
            now: float) -> tuple[list[tuple[str, list[tuple[Any, ...]]]], list[tuple[int, str]]]:
        """The statements that write ``batch`` in one transaction, and the index and job of each
        update among them (to check that it found its job).  The flows of job records not known to
        be stored come first, then the event rows in one statement and the checkpoints in one more
        (each in order: no other statement writes their tables), then the job records and updates
        in order.  Tell :meth:`committed` once they are."""
        flows: dict[str, str] = {}
        events: list[tuple[Any, ...]] = []
        checkpoints: list[tuple[Any, ...]] = []
        jobs: list[tuple[str, list[tuple[Any, ...]]]] = []
        updated: list[tuple[int, str]] = []
        for item in batch:
            if type(item) is EncodedEvent:
                events.append((item.job_id, item.seq, item.type, item.ts, item.text, 1))
            elif isinstance(item, EventRow):
                events.append(self.event_params(item))
            elif isinstance(item, Checkpoint):
                checkpoints.append(self.params(CHECKPOINTS, item))
            elif isinstance(item, JobUpdate):
                updated.append((len(jobs), item.job_id))
                jobs.append(self.update(item.job_id, dict(item.fields), now))
            elif isinstance(item, JobRecord):
                jobs.append((JOBS.upsert, [self._job_params(item, flows)]))
            else:
                raise TypeError(f"write_records: cannot write {type(item).__name__}")
        ops = [(FLOWS_INSERT, list(flows.items()))] if flows else []
        if events:
            ops.append((EVENTS_UPSERT, events))
        if checkpoints:
            ops.append((CHECKPOINTS.upsert, checkpoints))
        return ops + jobs, [(len(ops) + i, job_id) for i, job_id in updated]

    def record(self, table: Table, row: tuple[Any, ...]) -> Any:
        """The record a selected ``row`` of ``table`` holds (``ValueError`` for a job whose flow
        the file lacks)."""
        if table is JOBS and row[_JOB_FLOW] is None:
            raise ValueError(f"job {row[0]!r}: its flow is missing from the flows table")
        data = {c: json.loads(v) if c in table.json_columns else v
                for c, v in zip(table.columns, row, strict=True)}
        return self._conv.structure(data, table.cls)


_FLOW_TEXTS = 64
_JOB_FLOW = JOBS.columns.index("flow")
_JOB_VALUES = operator.attrgetter(*JOBS.columns)
_JOB_JSON = tuple(i for i, c in enumerate(JOBS.columns) if c in JOBS.json_columns and i != _JOB_FLOW)
_JOBS_BY_DIGEST_SELECT = JOBS.select.replace('"flow"', (
    "CASE WHEN substr(jobs.flow, 1, 1) = '{' THEN jobs.flow "
    "ELSE (SELECT flows.flow FROM flows WHERE flows.digest = jobs.flow) END"), 1)
FLOWS_INSERT = "INSERT INTO flows (digest, flow) VALUES (?, ?) ON CONFLICT (digest) DO NOTHING"
_EVENT_COLUMNS = "job_id, seq, type, ts, payload"
EVENTS_UPSERT = (f"INSERT INTO events ({_EVENT_COLUMNS}, bare) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (job_id, seq) "
                 "DO UPDATE SET type = excluded.type, ts = excluded.ts, payload = excluded.payload, bare = excluded.bare")


def _make_converter() -> cattrs.Converter:
    """Records <-> row dicts.  JSON fields hold data already unstructured by the caller: their
    dicts pass through as they are (``json.dumps`` checks them), not walked value by value."""
    conv = cattrs.Converter()
    conv.register_unstructure_hook(dict, lambda value: value)
    return conv
