"""Records to put in a store, and a real write fault; shared by the tests in tests/store/."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from runtime import Flow, JobPaused, JobStarted, Step
from runtime.store import EventRow, JobRecord

TESTS = Path(__file__).resolve().parents[1]  # tests/: resume_steps.py, resume_agent.py


def job(
    job_id: str,
    *,
    state: str = "running",
    created_at: float = 1.0,
    runtime_id: str | None = "rt1",
    finished_at: float | None = None,
    **fields,
) -> JobRecord:
    return JobRecord(
        job_id=job_id,
        flow_name="flow",
        flow={"name": "flow", "steps": [{"name": "a"}]},
        inputs={"ticket": 7},
        state=state,
        created_at=created_at,
        updated_at=created_at,
        runtime_id=runtime_id,
        finished_at=finished_at,
        **fields,
    )


def event(job_id: str, seq: int, **payload) -> EventRow:
    return EventRow(job_id, seq, "step_started", 100.0 + seq, {"seq": seq, **payload})


def snapshot(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir())}


async def noop(ctx, inputs):
    return {"n": 1}


def small_flow(i: int = 0) -> Flow:
    # "build flow": a fresh flow object every iteration, as the leaking framework's users did
    return Flow(f"loop{i % 3}", [Step("a", run=noop), Step("b", run=noop, after=["a"])])


@contextmanager
def writes_fail(db: Path) -> Iterator[None]:
    """Every write transaction to the open SQLite store at ``db`` fails with a real
    ``sqlite3.OperationalError: disk I/O error`` until the block ends: its write-ahead log is made
    immutable (``chattr +i``; root ignores permission bits, not this).  Reads go on."""
    wal = db.with_name(db.name + "-wal")
    assert wal.exists(), f"{wal}: no write-ahead log (is the store open and written?)"
    subprocess.run(["chattr", "+i", str(wal)], check=True, capture_output=True)
    try:
        yield
    finally:
        subprocess.run(["chattr", "-i", str(wal)], check=True, capture_output=True)


async def first_events(job, n: int) -> list:
    """The first ``n`` events ``job`` publishes.  Subscribes at once: call it right after spawn
    (before any checkpoint), so that none is missed."""
    events = job.events()
    seen = []
    try:
        async for event in events:
            seen.append(event)
            if len(seen) == n:
                return seen
    finally:
        await events.aclose()
    raise AssertionError(f"job {job.id} ended after {len(seen)} events: {seen}")


async def until_paused(job) -> None:
    """Return once ``job`` publishes JobPaused (call it right after spawn)."""
    events = job.events()
    try:
        async for event in events:
            if isinstance(event, JobPaused):
                return
    finally:
        await events.aclose()
    raise AssertionError(f"job {job.id} ended without pausing: {job.result}")


async def recorded(job) -> None:
    """Return once every event ``job`` (a durable job) has published so far is in the store.

    A durable replay must return every event before it from the store, so before reading it the
    job writes what its recorder still holds; the first event of a replay comes after that write.
    """
    replay = job.events(replay=True)
    try:
        await replay.__anext__()
    finally:
        await replay.aclose()


async def until_restarted(job) -> None:
    """Return once a resumed job has published its JobStarted(resumed=True), replayed from the
    store if it came before (a durable job): by then it stands where the dead runtime left it."""
    events = job.events(replay=True)
    try:
        async for event in events:
            if isinstance(event, JobStarted) and event.resumed:
                return
    finally:
        await events.aclose()
    raise AssertionError(f"job {job.id} ended without a resumed start: {job.result}")
