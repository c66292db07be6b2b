"""The commands that read a store and change nothing: ``jobs``, ``show`` and ``events``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs
import click

from ..core.states import JobState
from ..store import INTERRUPTED, LIVE_STATES, JobRecord, Lease, SqliteStore, lease_alive
from .common import (
    duration,
    existing_store,
    find_job,
    store_option,
    trio_run,
    verbose_option,
    verbosity,
    when,
)
from .render import EventOutput, configure_logging, json_line, short

__all__ = ["events", "jobs", "show"]


@click.command()
@store_option
@click.option("--state", "states", multiple=True, type=click.Choice([*(s.value for s in JobState), INTERRUPTED]),
              help="Only jobs in this state (repeatable); interrupted: its runtime died, resume picks it up.")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(0), help="At most this many (0: all).")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per job.")
@verbose_option
def jobs(store: str, states: tuple[str, ...], limit: int, as_json: bool, verbose: int) -> None:
    """List the jobs in the store, newest first."""
    configure_logging(verbosity(verbose))
    path = existing_store(store)

    async def go() -> tuple[list[JobRecord], dict[str, Lease]]:
        async with SqliteStore(path, read_only=True) as st:
            leases = {lease.runtime_id: lease for lease in await st.list_leases()}
            return await st.list_jobs(states=states or None, limit=limit or None), leases

    records, leases = trio_run(go)
    if as_json:
        for rec in records:
            json_line({**attrs.asdict(rec), "owner": _owner(rec, leases)})
        return
    if not records:
        click.echo("no jobs")
        return
    click.echo(f"{'JOB':<12}  {'FLOW':<20}  {'STATE':<11}  {'REASON':<24}  {'CREATED':<19}  {'DURATION':<9}  OWNER")
    for rec in records:
        owner = _owner(rec, leases)
        shown = "" if owner is None else (f"pid {owner['pid']}@{owner['host']} " if owner["pid"] else "")
        shown += "" if owner is None else ("alive" if owner["alive"] else "none" if owner["runtime_id"] is None
                                           else "dead")
        click.echo(f"{rec.job_id[:12]:<12}  {short(rec.flow_name, 20):<20}  {rec.state:<11}  "
                   f"{short(rec.reason or '', 24):<24}  {when(rec.created_at):<19}  {duration(rec):<9}  {shown}")


def _owner(rec: JobRecord, leases: Mapping[str, Lease]) -> dict[str, Any] | None:
    """Who runs a live job (its runtime's pid and host) and whether that runtime is alive (a job
    let go by a draining runtime has no owner: ``runtime_id`` is None)."""
    if rec.state not in LIVE_STATES:
        return None
    lease = leases.get(rec.runtime_id or "")
    if lease is None:
        return {"runtime_id": rec.runtime_id, "pid": None, "host": None, "alive": False}
    return {"runtime_id": rec.runtime_id, "pid": lease.pid, "host": lease.host, "alive": lease_alive(lease)}


def _step_summary(payloads: list[Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    steps: dict[str, dict[str, Any]] = {}
    for ev in payloads:
        step = ev.get("step")
        if not step or ev.get("type") == "step_stream":
            continue
        entry = steps.setdefault(step, {"state": "pending", "attempts": 0, "iterations": 0})
        kind = ev.get("type")
        if kind == "step_started":
            entry["state"] = "running"
            entry["attempts"] = max(entry["attempts"], int(ev.get("attempt", 1)))
            entry["iterations"] = max(entry["iterations"], int(ev.get("iteration", 0)) + 1)
        elif kind == "step_completed":
            entry["state"] = "completed"
        elif kind == "step_failed":
            entry["state"] = "retrying" if ev.get("action") == "retry" else "failed"
            if ev.get("error"):
                entry["error"] = ev["error"]
        elif kind == "step_cancelled":
            entry["state"] = "cancelled"
    return steps


async def _job_and_events(path: Any, job_ref: str) -> tuple[JobRecord, list[Mapping[str, Any]]]:
    """A job's record (by id or unique prefix) and its recorded event payloads (read-only)."""
    async with SqliteStore(path, read_only=True) as st:
        rec = await find_job(st, job_ref)
        return rec, [row.payload for row in await st.read_events(rec.job_id)]


@click.command()
@click.argument("job_ref", metavar="JOB")
@store_option
@click.option("--json", "as_json", is_flag=True, help="The record (and steps) as one JSON object.")
@verbose_option
def show(job_ref: str, store: str, as_json: bool, verbose: int) -> None:
    """Show one job (by id or unique id prefix): state, reason, inputs, outputs, steps."""
    configure_logging(verbosity(verbose))
    path = existing_store(store)

    rec, payloads = trio_run(_job_and_events, path, job_ref)
    steps = _step_summary(payloads)
    if as_json:
        json_line({**attrs.asdict(rec), "steps": steps})
        return
    rows = [("job", rec.job_id), ("flow", rec.flow_name), ("state", rec.state), ("reason", rec.reason or "-"),
            ("error", rec.error or "-"), ("record", rec.record), ("runtime", rec.runtime_id or "-"),
            ("created", when(rec.created_at)), ("finished", when(rec.finished_at)),
            ("duration", duration(rec)), ("inputs", short(rec.inputs, 200))]
    for name, value in rows:
        click.echo(f"{name:<9} {value}")
    if rec.outputs:
        click.echo("outputs")
        for step, outputs in rec.outputs.items():
            click.echo(f"  {step}: {short(outputs, 160)}")
    if steps:
        click.echo(f"steps     (from {len(payloads)} recorded events)")
        for step, entry in steps.items():
            extra = "".join(f"  {k} {entry[k]}" for k in ("attempts", "iterations") if entry[k] > 1)
            error = f"  {short(entry['error'], 120)}" if "error" in entry and entry["state"] != "completed" else ""
            click.echo(f"  {step:<16} {entry['state']}{extra}{error}")


@click.command()
@click.argument("job_ref", metavar="JOB")
@store_option
@click.option("--json", "as_json", is_flag=True, help="Print events as JSON lines.")
@verbose_option
def events(job_ref: str, store: str, as_json: bool, verbose: int) -> None:
    """Replay a job's recorded events from the store (jobs run with --record durable)."""
    configure_logging(verbosity(verbose))
    path = existing_store(store)

    rec, payloads = trio_run(_job_and_events, path, job_ref)
    if not payloads:
        raise click.ClickException(f"job {rec.job_id} has no recorded events (it ran with record={rec.record}; "
                                   "use --record durable)")
    output = EventOutput(as_json)
    for payload in payloads:
        output(payload)
