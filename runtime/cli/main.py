"""The ``corral`` command line (also ``python -m runtime``).

Built with click: mature and everywhere, commands compose as groups with typed options, help text
comes from the docstrings, and ``click.testing.CliRunner`` drives it in-process.  Each command runs
its own ``trio.run``.

Logging: this is the only place structlog is configured.  Log lines go to stderr (level WARNING,
``-v`` for INFO, ``-vv`` for DEBUG) so stdout carries only the command's output — with ``--json``
every stdout line is one JSON object.

A flow file's python steps (``run: examples.steps:triage``) are imported with the current
directory first on ``sys.path``, as ``python -m`` does: run ``corral`` from the directory your
step modules are importable from.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

import click
import trio

from actors.process import sweep_dead_runtimes

from ..core.events import JobPaused
from ..core.handle import JobHandle
from ..core.recording import RECORD_MODES, RecordMode
from ..core.runtime import open_runtime
from ..core.states import JobResult, JobState
from ..flow import InputError, SecretUnavailable
from ..flow.secrets import require_env_from
from ..store import SqliteStore, sweep_dead
from . import control, inspect, ui
from .common import (
    EXIT_BAD_INPUT,
    EXIT_INTERRUPTED,
    Interrupts,
    existing_store,
    grace_option,
    import_from_cwd,
    interruptible,
    json_option,
    new_store,
    parse_inputs,
    resume_quietly,
    store_option,
    trio_run,
    verbose_option,
    verbosity,
)
from .control import resume_one
from .demo import run_demo
from .render import EventOutput, configure_logging
from .yaml import DEFAULT_MAX_FLOW_BYTES, FlowLoadError, load_flow

__all__ = ["main"]



# -- helpers --------------------------------------------------------------------------------------


# -- the commands ---------------------------------------------------------------------------------




@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="corral", prog_name="corral", message="%(prog)s %(version)s")
@click.option("-v", "--verbose", count=True, help="Log to stderr: -v INFO, -vv DEBUG.")
@click.pass_context
def main(ctx: click.Context, verbose: int) -> None:
    """corral: an actor-model runtime for agent workflows on trio.

    Every job owns one trio nursery; whatever ends it — complete, fail, abandon, cancel, timeout,
    shutdown — closes the nursery, so nothing the job started can outlive it.
    """
    ctx.ensure_object(dict)
    ctx.obj["verbose"] = verbose
    configure_logging(verbose)




@main.command()
@click.option("--jobs", "jobs", default=200, show_default=True, type=click.IntRange(1), help="How many jobs to spawn.")
@click.option("--concurrency", default=12, show_default=True, type=click.IntRange(1),
              help="Jobs running at once (each runs a four-process agent tree).")
@store_option
@verbose_option
def demo(jobs: int, concurrency: int, store: str, verbose: int) -> None:
    """Run N jobs of triage -> fix -> review through every terminal path, then a leak report.

    Every step drives the bundled fake ACP agent behind two wrapper generations.  Some jobs are
    abandoned by an exit rule, some fail after a retry, some are cancelled mid-stream, the rest
    complete.  The report is read from the store, the process table and trio's statistics; the
    exit status is 1 if any leak figure is not zero.  The demo fails jobs on purpose, so its log
    level is ERROR unless -v is given.
    """
    configure_logging(verbosity(verbose), quiet_level=logging.ERROR)
    path = new_store(store)
    report = trio_run(lambda: run_demo(jobs, path, max_running_jobs=concurrency))
    click.echo(report.render())
    if report.interrupted:
        sys.exit(EXIT_INTERRUPTED)
    sys.exit(0 if report.ok else 1)


@main.command()
@click.argument("flow_file", metavar="FLOW.yaml")
@click.option("-i", "--input", "pairs", multiple=True, metavar="KEY=VALUE",
              help="A job input (repeatable); VALUE is JSON if it parses as JSON, else a string.")
@store_option
@click.option("--record", type=click.Choice(RECORD_MODES), default="durable", show_default=True,
              help="What the job records (durable: events and checkpoints in the store).")
@click.option("--json", "as_json", is_flag=True, help="Print events as JSON lines.")
@click.option("--resume-payload", metavar="JSON",
              help="When an escalate rule pauses the job, resume it with this JSON payload.")
@click.option("--max-flow-bytes", type=click.IntRange(0), default=DEFAULT_MAX_FLOW_BYTES, show_default=True,
              envvar="CORRAL_MAX_FLOW_BYTES", metavar="N",
              help="Refuse a flow file larger than this, before parsing it (env CORRAL_MAX_FLOW_BYTES).")
@grace_option
@verbose_option
def run(flow_file: str, pairs: tuple[str, ...], store: str, record: RecordMode, as_json: bool,
        resume_payload: str | None, max_flow_bytes: int, grace: float, verbose: int) -> None:
    """Run one flow and show its events live; exit 0 only if the job COMPLETED.

    Ctrl-C (SIGINT) cancels the job: its processes die, the store records it CANCELLED, and the
    exit status is 130.  SIGTERM (a deploy) drains: no new step starts, running steps get
    --grace seconds, then a durable job is let go -- stored interrupted (or paused), resumable
    by `corral resume` -- and one that is not durable is cancelled; exit status 143.  Exit
    status 2: the flow file or an input is invalid (nothing ran).
    """
    configure_logging(verbosity(verbose))
    inputs = parse_inputs(pairs)
    payload = json_option(resume_payload, "'--resume-payload'")
    import_from_cwd()
    try:
        flow = load_flow(flow_file, max_bytes=max_flow_bytes)
        flow.bind_inputs(inputs)  # refused before a runtime or a store is opened
        require_env_from(flow, os.environ)
    except (FlowLoadError, InputError, SecretUnavailable) as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_BAD_INPUT)
    path = new_store(store)

    async def go() -> tuple[JobState, Interrupts]:
        output = EventOutput(as_json)
        async with interruptible() as interrupts, open_runtime(store=path) as rt:
            job = await rt.spawn(flow, inputs, record=record)
            events = job.events(maxlen=100_000)

            async def cancel() -> None:
                await job.cancel(f"interrupted ({interrupts.signals[0]})")

            interrupts.stop(rt, grace, cancel, f"job {job.id}")
            async with trio.open_nursery() as resumers:
                async for event in events:
                    output(event)
                    if isinstance(event, JobPaused):
                        if payload is not None:
                            resumers.start_soon(resume_quietly, job, payload)
                        elif not as_json:
                            click.echo("job paused: waiting (use --resume-payload JSON to resume "
                                       "automatically; Ctrl-C cancels)", err=True)
            result = await job.wait()
        return result.state, interrupts

    state, interrupts = trio_run(go)
    interrupts.exit_if_received()
    sys.exit(0 if state is JobState.COMPLETED else 1)


@main.command()
@click.argument("job_id", metavar="[JOB]", required=False)
@store_option
@click.option("--payload", metavar="JSON", help="Resume the PAUSED job JOB with this JSON payload.")
@click.option("--json", "as_json", is_flag=True, help="Print events as JSON lines.")
@grace_option
@verbose_option
def resume(job_id: str | None, store: str, payload: str | None, as_json: bool, grace: float,
           verbose: int) -> None:
    """Resume the paused job JOB with --payload; with no JOB, take over the durable jobs of
    runtimes that died and run them to their end.

    JOB under a live runtime is resumed there (exit 0 once it runs again).  JOB whose runtime died
    is taken over and run here to its end, its events shown (exit 0 if it completed).  Exit 1: JOB
    is not paused; 2: no such job.

    With no JOB, steps that completed before the crash are not run again (their outputs come from
    checkpoints); each job's recorded events are printed from its start, then its new ones live.
    PAUSED jobs are left paused in the store (resume each with JOB --payload), and so is a job
    that pauses here: it is let go, ownerless, and the command returns.  Exit status 0 if every
    resumed job completed or was left paused.  Ctrl-C cancels the jobs running here (130);
    SIGTERM drains them as `corral run` does (143).
    """
    configure_logging(verbosity(verbose))
    path = existing_store(store)
    data = json_option(payload, "'--payload'")
    import_from_cwd()
    if job_id is not None:
        resume_one(path, job_id, data, as_json, grace)
    if payload is not None:
        raise click.UsageError("--payload resumes one paused job: give its JOB id")

    async def follow(job: JobHandle, output: EventOutput) -> None:
        # replay: the job may have started before we subscribed; its log before the crash comes too
        async for event in job.events(replay=True, maxlen=100_000):
            output(event)
            if isinstance(event, JobPaused) and job.state is JobState.PAUSED:  # paused now, here
                await job.release()
                click.echo(f"job {job.id} paused at step {event.step}: left paused; resume it with "
                           f"`corral resume {job.id} --payload JSON`", err=True)

    async def go() -> tuple[list[JobResult], Interrupts]:
        output = EventOutput(as_json)
        async with interruptible() as interrupts, open_runtime(store=path) as rt:
            handles = await rt.take_over(paused=False)
            if not handles:
                click.echo("nothing to resume", err=True)
                return [], interrupts

            async def cancel() -> None:
                async with trio.open_nursery() as nursery:
                    for job in handles:
                        nursery.start_soon(job.cancel, "interrupted")

            interrupts.stop(rt, grace, cancel, "the resumed jobs")
            async with trio.open_nursery() as followers:
                for job in handles:
                    followers.start_soon(follow, job, output)
            results = [await job.wait() for job in handles]
        return results, interrupts

    results, interrupts = trio_run(go)
    interrupts.exit_if_received()
    sys.exit(0 if all(r.state is JobState.COMPLETED or r.reason == "released" for r in results) else 1)


@main.command()
@store_option
@click.option("--grace", default=1.0, show_default=True, type=click.FloatRange(0),
              help="Seconds between SIGTERM and SIGKILL.")
@verbose_option
def sweep(store: str, grace: float, verbose: int) -> None:
    """Kill processes left by runtimes that died (found by the marker in their environment) and
    forget those runtimes' leases and process groups in the store."""
    configure_logging(verbosity(verbose))

    has_store = Path(store).exists()
    if has_store:
        new_store(store)  # refused in one line if it cannot be written

    async def go() -> tuple[int, int]:
        killed = await sweep_dead_runtimes(grace)
        forgotten = 0
        if has_store:
            async with SqliteStore(store) as st:
                forgotten = len(await sweep_dead(st, grace))
        return killed, forgotten

    killed, forgotten = trio_run(go)
    click.echo(f"killed {killed} processes of dead runtimes; forgot {forgotten} dead runtimes in {store}")


main.add_command(ui.ui)
main.add_command(control.cancel)
main.add_command(control.abandon)
main.add_command(control.watch)
main.add_command(inspect.jobs)
main.add_command(inspect.show)
main.add_command(inspect.events)
