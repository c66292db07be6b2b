"""``corral resume JOB`` / ``cancel`` / ``abandon`` / ``watch``: steer one job by id, through its
runtime's control endpoint (:func:`runtime.open_client`).

Exit status: 0 on success, 1 when the job's state does not allow it, 2 for an unknown job; each
failure is one line on stderr.
"""

from __future__ import annotations

import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import click

from ..client import ControlClient, open_client
from ..core.states import JobNotFound, JobState, JobStateError
from .common import (
    Interrupts,
    existing_store,
    interruptible,
    store_option,
    trio_run,
    verbose_option,
    verbosity,
)
from .render import EventOutput, configure_logging

__all__ = ["abandon", "cancel", "resume_one", "watch"]

EXIT_STATE_ERROR = 1
EXIT_UNKNOWN_JOB = 2


def steer(path: Path, op: Callable[[ControlClient], Awaitable[Any]], *, run: bool = False) -> Any:
    """Run ``op`` with a client on ``path``; a state error or an unknown job exits in one line."""

    async def go() -> Any:
        async with open_client(store=path, run=run) as client:
            return await op(client)

    try:
        return trio_run(go)
    except JobNotFound as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_UNKNOWN_JOB)
    except JobStateError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_STATE_ERROR)


def resume_one(path: Path, job_id: str, payload: Any, as_json: bool, grace: float) -> None:
    """Resume ``job_id``: through its live runtime, or (ownerless) here, to its end.  Run here,
    Ctrl-C cancels it (exit 130) and SIGTERM drains it (exit 143), as under `corral run`."""
    output = EventOutput(as_json)

    async def op(client: ControlClient) -> tuple[JobState | None, Interrupts]:
        async with interruptible() as interrupts:
            await client.resume(job_id, payload)
            if client.runtime is None or not client.runs_here(job_id):
                return None, interrupts
            click.echo(f"job {job_id}: its runtime is gone; running it here", err=True)
            runtime = client.runtime

            async def cancel() -> None:
                await client.cancel(job_id, f"interrupted ({interrupts.signals[0]})")

            interrupts.stop(runtime, grace, cancel, f"job {job_id}")
            async for event in client.events(job_id):
                output(event)
            return (await client.result(job_id)).state, interrupts

    state, interrupts = steer(path, op, run=True)
    interrupts.exit_if_received()
    if state is None:
        click.echo(f"resumed job {job_id}")
        sys.exit(0)
    sys.exit(0 if state is JobState.COMPLETED else 1)


def _ender(name: str, past: str) -> click.Command:
    @click.command(name=name)
    @click.argument("job_id", metavar="JOB")
    @click.option("--reason", default=past, show_default=True, help="Recorded as the job's reason.")
    @store_option
    @verbose_option
    def command(job_id: str, reason: str, store: str, verbose: int) -> None:
        configure_logging(verbosity(verbose))
        path = existing_store(store)

        async def op(client: ControlClient) -> Any:
            method = client.cancel if name == "cancel" else client.abandon
            return await method(job_id, reason)

        result = steer(path, op)
        click.echo(f"job {job_id} {result.state.value} ({result.reason})")

    command.help = (f"End the job JOB {past.upper()}, through the runtime that runs it; its processes "
                    f"are gone when this returns.  A durable job whose runtime died is taken over "
                    f"here just to end it.  Exit 1: the job has ended; 2: no such job.")
    return command


cancel = _ender("cancel", "cancelled")
abandon = _ender("abandon", "abandoned")


@click.command()
@click.argument("job_id", metavar="JOB")
@click.option("--from-seq", default=0, show_default=True, type=click.IntRange(0), help="The first event to show.")
@click.option("--json", "as_json", is_flag=True, help="Print events as JSON lines.")
@store_option
@verbose_option
def watch(job_id: str, from_seq: int, as_json: bool, store: str, verbose: int) -> None:
    """Show the job JOB's events live (agent tokens included) from its runtime, until its end; a
    job with no live runtime shows what the store recorded.  Exit 2: no such job."""
    configure_logging(verbosity(verbose))
    path = existing_store(store)
    output = EventOutput(as_json)

    async def op(client: ControlClient) -> None:
        async for event in client.events(job_id, from_seq):
            output(event)

    steer(path, op)
