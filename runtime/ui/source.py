"""What the pages show, read through the control client: jobs, one job, its events, its processes.

Stored jobs come from the store; live jobs of every live runtime from its control endpoint (so a
job that records nothing is listed while it runs); a job's events live from its owner, or from the
store once it has none.  Nothing here polls: the job list changes when a runtime says so
(:meth:`ControlClient.watch`), a job's events arrive as its owner publishes them.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Mapping
from typing import Any

import attrs
import psutil
import trio

from actors.process import find_marked

from ..client import ControlClient
from ..core.events import Event, event_to_dict
from ..store import LIVE_STATES, JobRecord, Lease, lease_alive

__all__ = ["STATES", "JobRow", "JobSource", "Process"]

#: Job states, in the order the filter offers them.
STATES = ("pending", "running", "paused", "interrupted", "completed", "failed", "abandoned", "cancelled")


@attrs.frozen
class JobRow:
    """One line of the job list."""

    job_id: str
    flow: str
    state: str
    record: str
    created_at: float
    finished_at: float | None = None
    reason: str | None = None
    runtime_id: str | None = None
    owner_pid: int | None = None
    owner_alive: bool = False

    @property
    def duration(self) -> float | None:
        """Seconds from start to end (to now while it is live)."""
        end = self.finished_at if self.finished_at is not None else (
            time.time() if self.state in LIVE_STATES else None)
        return None if end is None else max(0.0, end - self.created_at)


@attrs.frozen
class Process:
    """One live OS process of a job."""

    pid: int
    command: str
    rss: int


def _row(rec: JobRecord, leases: Mapping[str, Lease], alive: Mapping[str, bool]) -> JobRow:
    lease = leases.get(rec.runtime_id or "")
    return JobRow(rec.job_id, rec.flow_name, rec.state, rec.record, rec.created_at, rec.finished_at,
                  rec.reason, rec.runtime_id, lease.pid if lease else None,
                  alive.get(rec.runtime_id or "", False) and rec.state in LIVE_STATES)


class JobSource:
    """The UI's one way to the jobs: a :class:`ControlClient` and its store."""

    def __init__(self, client: ControlClient) -> None:
        self.client = client
        self.store = client.store

    async def jobs(self, *, state: str | None = None, flow: str | None = None,
                   limit: int = 200) -> tuple[list[JobRow], list[str]]:
        """Live and stored jobs, newest first (at most ``limit``), and the flow names seen."""
        leases, alive = await self._owners()
        states = None if state is None else [state]
        records = await self.store.list_jobs(states=states, limit=None if flow else limit)
        rows = {rec.job_id: _row(rec, leases, alive) for rec in records}
        for job in await self.client.live_jobs():  # the owner's word on a live job's state is the last
            if state is not None and job["state"] != state:
                rows.pop(job["job_id"], None)  # stored in the filtered state, no longer in it
                continue
            stored = rows.get(job["job_id"])
            if stored is not None:
                rows[job["job_id"]] = attrs.evolve(stored, state=job["state"], owner_alive=True)
                continue  # running jobs that record nothing are only in their runtime
            lease = leases.get(job["runtime_id"])
            rows[job["job_id"]] = JobRow(job["job_id"], job["flow"], job["state"], job["record"],
                                         job["created_at"], runtime_id=job["runtime_id"],
                                         owner_pid=lease.pid if lease else None, owner_alive=True)
        flows = sorted({row.flow for row in rows.values()})
        listed = sorted((r for r in rows.values() if flow is None or r.flow == flow),
                        key=lambda r: r.created_at, reverse=True)
        return listed[:limit], flows

    async def job(self, job_id: str) -> dict[str, Any] | None:
        """A job's record as the job page shows it (``None``: unknown): its stored record, or
        what its live runtime says of a job that records nothing."""
        rec = await self.store.get_job(job_id)
        if rec is not None:
            leases, alive = await self._owners()
            return {"row": _row(rec, leases, alive), "flow": rec.flow, "inputs": rec.inputs,
                    "outputs": rec.outputs, "error": rec.error}
        live = await self.client.describe(job_id)
        if live is None:
            return None
        row = JobRow(live["job_id"], live["flow"], live["state"], live["record"], live["created_at"],
                     owner_alive=True)
        return {"row": row, "flow": live["flow_def"], "inputs": live["inputs"], "outputs": {}, "error": None}

    async def _owners(self) -> tuple[dict[str, Lease], dict[str, bool]]:
        leases = {lease.runtime_id: lease for lease in await self.store.list_leases()}
        alive = {rid: lease_alive(lease) for rid, lease in leases.items()}
        if self.client.runtime is not None:
            alive[self.client.runtime.id] = True
        return leases, alive

    async def events(self, job_id: str, from_seq: int = 0) -> AsyncIterator[dict[str, Any]]:
        """The job's events from ``from_seq`` as JSON-able dicts: live from its owner (tokens as
        they arrive), else what the store recorded."""
        stream = self.client.events(job_id, from_seq)
        async for event in stream:
            if isinstance(event, Event):
                yield event_to_dict(event)

    async def processes(self, job_id: str) -> list[Process]:
        """The job's live OS processes (found by their marker), with command and RSS."""
        return await trio.to_thread.run_sync(_processes, job_id)


def _processes(job_id: str) -> list[Process]:
    out = []
    for proc in find_marked(lambda m: m.job_id == job_id):
        try:
            with proc.oneshot():
                out.append(Process(proc.pid, " ".join(proc.cmdline())[:300], proc.memory_info().rss))
        except psutil.Error:
            continue
    return sorted(out, key=lambda p: p.pid)
