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

import contextlib
import json
import logging
import os
import signal
import sys
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, TextIO, TypeVar

import attrs
import click
import structlog
import trio

from actors.process import sweep_dead_runtimes

from .demo import DEFAULT_STORE, run_demo
from .events import Event, JobPaused, JobStarted, Lagged, event_to_dict
from .flow import InputError
from .job import JobHandle, JobState, JobStateError
from .loading import DEFAULT_MAX_FLOW_BYTES, FlowLoadError, load_flow
from .persistence import INTERRUPTED, LIVE_STATES, sweep_dead
from .runtime import RECORD_MODES, open_runtime
from .store import JobRecord, SqliteStore, StoreError, StoreReadOnly

__all__ = ["EventPrinter", "configure_logging", "main"]

EXIT_INTERRUPTED = 130
EXIT_BAD_INPUT = 2
_SIGNALS = (signal.SIGINT, signal.SIGTERM)
T = TypeVar("T")


def configure_logging(verbosity: int, *, stream: TextIO | None = None, quiet_level: int = logging.WARNING) -> None:
    """Send structlog to ``stream`` (stderr): ``quiet_level`` by default, INFO with -v, DEBUG with -vv."""
    stream = stream or sys.stderr
    level = quiet_level if verbosity <= 0 else logging.INFO if verbosity == 1 else logging.DEBUG
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="%H:%M:%S"),
            structlog.dev.ConsoleRenderer(colors=False, exception_formatter=structlog.dev.plain_traceback),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(file=stream),
        cache_logger_on_first_use=False,
    )


# -- printing events ------------------------------------------------------------------------------


def _short(value: Any, width: int = 100) -> str:
    text = json.dumps(value, default=repr, ensure_ascii=False) if not isinstance(value, str) else value
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def _stream_text(update: Any) -> str:
    """The text of a stream update (as a dict from :func:`event_to_dict`)."""
    if not isinstance(update, Mapping) or update.get("type") != "Delta":
        return ""
    delta = update.get("delta")
    if not isinstance(delta, Mapping):
        return ""
    for key in ("text", "data", "arguments_delta", "content_delta"):
        value = delta.get(key)
        if isinstance(value, str):
            return value
    return ""


_STATE_COLOURS = {"completed": "green", "failed": "red", "abandoned": "yellow", "cancelled": "magenta"}


class EventPrinter:
    """Human-readable job events, one line each; streamed text is written as it arrives.

    Coloured when ``out`` is a terminal and ``NO_COLOR`` is not set (or as ``colour`` says).

    Takes events as dicts (:func:`~runtime.events.event_to_dict`, or a stored event row's payload),
    so a live run and a replay from the store print the same.
    """

    def __init__(self, out: TextIO | None = None, *, colour: bool | None = None) -> None:
        self.out = out or sys.stdout
        if colour is None:  # a terminal, unless NO_COLOR is set (https://no-color.org)
            colour = self.out.isatty() and not os.environ.get("NO_COLOR")
        self.colour = colour
        self._open: str | None = None  # the step whose streamed line is open

    def _style(self, text: str, **kw: Any) -> str:
        return click.style(text, **kw) if self.colour else text

    def _line(self, text: str) -> None:
        self._close()
        self.out.write(text + "\n")
        self.out.flush()

    def _close(self) -> None:
        if self._open is not None:
            self.out.write("\n")
            self._open = None

    def lagged(self, n: int) -> None:
        """A slow reader missed ``n`` events."""
        self._line(self._style(f"  … {n} events dropped (the terminal fell behind)", dim=True))

    def __call__(self, ev: Mapping[str, Any]) -> None:
        kind = ev.get("type")
        step = ev.get("step")
        tag = f"  {step}" if step else ""
        if kind == "job_started":
            how = "resumed" if ev.get("resumed") else "started"
            inputs = f"  inputs {_short(ev.get('inputs'))}" if ev.get("inputs") else ""
            self._line(self._style(f"job {ev.get('job_id')} ({ev.get('flow')}) {how}", bold=True) + inputs)
        elif kind == "step_started":
            extra = "".join(f" {k} {ev[k]}" for k, base in (("attempt", 1), ("iteration", 0))
                            if ev.get(k, base) != base)
            self._line(f"{tag}: started{extra}")
        elif kind == "step_stream":
            text = _stream_text(ev.get("update"))
            if not text:
                return
            prefix = self._style(f"  {step} │ ", dim=True)
            if self._open != step:
                self._close()
                self.out.write(prefix)
                self._open = step
            self.out.write(text.replace("\n", "\n" + prefix))
            self.out.flush()
        elif kind == "step_completed":
            extra = f" (iteration {ev['iteration']})" if ev.get("iteration") else ""
            self._line(f"{tag}: completed{extra}  {_short(ev.get('outputs'))}")
        elif kind == "step_failed":
            self._line(self._style(f"{tag}: failed (attempt {ev.get('attempt')}): {_short(ev.get('error'), 200)}"
                                   f" -> {ev.get('action')}", fg="red"))
        elif kind == "step_cancelled":
            self._line(self._style(f"{tag}: cancelled", fg="magenta"))
        elif kind == "exit_resolved":
            if ev.get("rule") is not None:
                self._line(f"{tag}: exit rule {ev.get('rule')!r} -> {ev.get('action')}")
        elif kind == "job_paused":
            self._line(self._style(f"  paused at {step} by rule {ev.get('rule')!r}", fg="yellow"))
        elif kind == "job_resumed":
            self._line(f"  resumed with {_short(ev.get('payload'))}")
        elif kind == "job_finished":
            state = str(ev.get("state"))
            why = "".join(f"  {k}: {_short(ev[k], 200)}" for k in ("reason", "error") if ev.get(k))
            self._line(self._style(f"job {ev.get('job_id')} {state.upper()}", bold=True,
                                   fg=_STATE_COLOURS.get(state)) + why)
        else:
            self._line(f"  {kind} {_short(dict(ev))}")


def _json_line(data: Any, out: TextIO | None = None) -> None:
    stream = out or sys.stdout
    stream.write(json.dumps(data, default=repr, ensure_ascii=False) + "\n")
    stream.flush()


class _EventOutput:
    """Where a command's events go: JSON lines (``--json``) or an :class:`EventPrinter`."""

    def __init__(self, as_json: bool) -> None:
        self.as_json = as_json
        self.printer = EventPrinter()

    def __call__(self, item: Event | Lagged | Mapping[str, Any]) -> None:
        if isinstance(item, Lagged):
            if self.as_json:
                _json_line({"type": "lagged", "n": item.n})
            else:
                self.printer.lagged(item.n)
            return
        data = event_to_dict(item) if isinstance(item, Event) else item
        if self.as_json:
            _json_line(data)
        else:
            self.printer(data)


# -- helpers --------------------------------------------------------------------------------------


def _parse_inputs(pairs: Iterable[str]) -> dict[str, Any]:
    """``key=value`` pairs; a value that parses as JSON is taken as JSON, else as a string."""
    inputs: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise click.BadParameter(f"{pair!r} is not key=value", param_hint="'-i'")
        try:
            inputs[key.strip()] = json.loads(value)
        except ValueError:
            inputs[key.strip()] = value
    return inputs


def _json_option(value: str | None, what: str) -> Any:
    if value is None:
        return None
    try:
        return json.loads(value)
    except ValueError as exc:
        raise click.BadParameter(f"not JSON: {exc}", param_hint=what) from None


def _import_from_cwd() -> None:
    """Put the current directory first on ``sys.path`` (as ``python -m`` does) for ``module:function``."""
    cwd = os.getcwd()
    if cwd not in sys.path:
        sys.path.insert(0, cwd)


class _BadInput(click.ClickException):
    """An error message, exit status 2 (the input is invalid; nothing ran)."""

    exit_code = EXIT_BAD_INPUT


_READ_ONLY_HINT = "commands that write (run, resume, sweep, demo) need a writable store; jobs, show and events can read it"


def _existing_store(path: str) -> Path:
    store = Path(path)
    if not store.exists():
        raise click.ClickException(f"no store at {store} (run a flow or the demo with --store {store} first)")
    return store


def _new_store(path: str) -> Path:
    """The store a writing command opens: its directory created, refused in one line if it cannot be."""
    store = Path(path)
    if store.is_dir():
        raise _BadInput(f"store {store}: is a directory, not a store file")
    blocker = next((p for p in store.parents if p.exists() and not p.is_dir()), None)
    if blocker is not None:
        raise _BadInput(f"store {store}: {blocker} is a file, not a directory")
    try:
        store.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise _BadInput(f"store {store}: cannot create its directory {store.parent}: "
                        f"{exc.strerror or exc}") from None
    if store.exists() and not os.access(store, os.W_OK):
        raise _BadInput(f"store {store}: is read-only; {_READ_ONLY_HINT}")
    return store


async def _find_job(store: SqliteStore, ref: str) -> JobRecord:
    """A job by id or by unique id prefix."""
    rec = await store.get_job(ref)
    if rec is not None:
        return rec
    matches = [r for r in await store.list_jobs() if r.job_id.startswith(ref)]
    if len(matches) == 1:
        return matches[0]
    if not matches:
        raise click.ClickException(f"no job {ref!r} in the store")
    raise click.ClickException(f"{ref!r} is ambiguous: {', '.join(r.job_id[:12] for r in matches[:5])} ...")


def _when(ts: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts)) if ts else "-"


def _duration(rec: JobRecord) -> str:
    # an interrupted job's updated_at is its last sign of life before its runtime died
    end = rec.finished_at or (rec.updated_at if rec.state in LIVE_STATES else None)
    return f"{end - rec.created_at:.2f}s" if end else "-"


def _trio_run(fn: Callable[..., Awaitable[T]], *args: Any) -> T:
    """``trio.run(fn, *args)``; a store that cannot be opened or written is an error message, not a traceback."""
    try:
        return trio.run(fn, *args)
    except StoreReadOnly as exc:
        raise _BadInput(f"{exc}; {_READ_ONLY_HINT}") from None
    except StoreError as exc:
        raise click.ClickException(str(exc)) from None


async def _resume_quietly(job: JobHandle, payload: Any) -> None:
    """Resume ``job`` unless it is no longer paused (cancelled meanwhile, say)."""
    with contextlib.suppress(JobStateError):
        await job.resume(payload)


async def _watch_signals(signals: Any, on_signal: Any) -> None:
    async for signum in signals:
        on_signal(signum)


# -- the commands ---------------------------------------------------------------------------------


store_option = click.option("--store", default=DEFAULT_STORE, show_default=True, metavar="PATH",
                            help="The SQLite store (created on first use).")
verbose_option = click.option("-v", "--verbose", count=True, help="Log to stderr: -v INFO, -vv DEBUG.")


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


def _verbosity(verbose: int) -> int:
    ctx = click.get_current_context()
    return max(verbose, (ctx.obj or {}).get("verbose", 0))


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
    configure_logging(_verbosity(verbose), quiet_level=logging.ERROR)
    path = _new_store(store)
    report = _trio_run(lambda: run_demo(jobs, path, max_running_jobs=concurrency))
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
@verbose_option
def run(flow_file: str, pairs: tuple[str, ...], store: str, record: str, as_json: bool,
        resume_payload: str | None, max_flow_bytes: int, verbose: int) -> None:
    """Run one flow and show its events live; exit 0 only if the job COMPLETED.

    Ctrl-C (or SIGTERM) cancels the job: its processes die, the store records it CANCELLED, and
    the exit status is 130.  Exit status 2: the flow file or an input is invalid (nothing ran).
    """
    configure_logging(_verbosity(verbose))
    inputs = _parse_inputs(pairs)
    payload = _json_option(resume_payload, "'--resume-payload'")
    _import_from_cwd()
    try:
        flow = load_flow(flow_file, max_bytes=max_flow_bytes)
        flow.bind_inputs(inputs)  # refused before a runtime or a store is opened
    except (FlowLoadError, InputError) as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_BAD_INPUT)
    path = _new_store(store)

    async def go() -> tuple[JobState, bool]:
        interrupted: list[int] = []
        output = _EventOutput(as_json)
        with trio.open_signal_receiver(*_SIGNALS) as signals:
            async with open_runtime(store=path) as rt:
                job = await rt.spawn(flow, inputs, record=record)
                events = job.events(maxlen=100_000)
                async with trio.open_nursery() as nursery:

                    def on_signal(signum: int) -> None:
                        if not interrupted:
                            click.echo(f"\n{signal.Signals(signum).name}: cancelling job {job.id}", err=True)
                            nursery.start_soon(job.cancel, f"interrupted ({signal.Signals(signum).name})")
                        interrupted.append(signum)

                    nursery.start_soon(_watch_signals, signals, on_signal)
                    async for event in events:
                        output(event)
                        if isinstance(event, JobPaused):
                            if payload is not None:
                                nursery.start_soon(_resume_quietly, job, payload)
                            elif not as_json:
                                click.echo("job paused: waiting (use --resume-payload JSON to resume "
                                           "automatically; Ctrl-C cancels)", err=True)
                    result = await job.wait()
                    nursery.cancel_scope.cancel()
        return result.state, bool(interrupted)

    state, interrupted = _trio_run(go)
    if interrupted:
        sys.exit(EXIT_INTERRUPTED)
    sys.exit(0 if state is JobState.COMPLETED else 1)


@main.command()
@store_option
@click.option("--state", "states", multiple=True, type=click.Choice([*(s.value for s in JobState), INTERRUPTED]),
              help="Only jobs in this state (repeatable); interrupted: its runtime died, resume picks it up.")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(0), help="At most this many (0: all).")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per job.")
@verbose_option
def jobs(store: str, states: tuple[str, ...], limit: int, as_json: bool, verbose: int) -> None:
    """List the jobs in the store, newest first."""
    configure_logging(_verbosity(verbose))
    path = _existing_store(store)

    async def go() -> list[JobRecord]:
        async with SqliteStore(path, read_only=True) as st:
            return await st.list_jobs(states=states or None, limit=limit or None)

    records = _trio_run(go)
    if as_json:
        for rec in records:
            _json_line(attrs.asdict(rec))
        return
    if not records:
        click.echo("no jobs")
        return
    click.echo(f"{'JOB':<12}  {'FLOW':<20}  {'STATE':<11}  {'REASON':<24}  {'CREATED':<19}  DURATION")
    for rec in records:
        click.echo(f"{rec.job_id[:12]:<12}  {_short(rec.flow_name, 20):<20}  {rec.state:<11}  "
                   f"{_short(rec.reason or '', 24):<24}  {_when(rec.created_at):<19}  {_duration(rec)}")


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
        rec = await _find_job(st, job_ref)
        return rec, [row.payload for row in await st.read_events(rec.job_id)]


@main.command()
@click.argument("job_ref", metavar="JOB")
@store_option
@click.option("--json", "as_json", is_flag=True, help="The record (and steps) as one JSON object.")
@verbose_option
def show(job_ref: str, store: str, as_json: bool, verbose: int) -> None:
    """Show one job (by id or unique id prefix): state, reason, inputs, outputs, steps."""
    configure_logging(_verbosity(verbose))
    path = _existing_store(store)

    rec, payloads = _trio_run(_job_and_events, path, job_ref)
    steps = _step_summary(payloads)
    if as_json:
        _json_line({**attrs.asdict(rec), "steps": steps})
        return
    rows = [("job", rec.job_id), ("flow", rec.flow_name), ("state", rec.state), ("reason", rec.reason or "-"),
            ("error", rec.error or "-"), ("record", rec.record), ("runtime", rec.runtime_id or "-"),
            ("created", _when(rec.created_at)), ("finished", _when(rec.finished_at)),
            ("duration", _duration(rec)), ("inputs", _short(rec.inputs, 200))]
    for name, value in rows:
        click.echo(f"{name:<9} {value}")
    if rec.outputs:
        click.echo("outputs")
        for step, outputs in rec.outputs.items():
            click.echo(f"  {step}: {_short(outputs, 160)}")
    if steps:
        click.echo(f"steps     (from {len(payloads)} recorded events)")
        for step, entry in steps.items():
            extra = "".join(f"  {k} {entry[k]}" for k in ("attempts", "iterations") if entry[k] > 1)
            error = f"  {_short(entry['error'], 120)}" if "error" in entry and entry["state"] != "completed" else ""
            click.echo(f"  {step:<16} {entry['state']}{extra}{error}")


@main.command()
@click.argument("job_ref", metavar="JOB")
@store_option
@click.option("--json", "as_json", is_flag=True, help="Print events as JSON lines.")
@verbose_option
def events(job_ref: str, store: str, as_json: bool, verbose: int) -> None:
    """Replay a job's recorded events from the store (jobs run with --record durable)."""
    configure_logging(_verbosity(verbose))
    path = _existing_store(store)

    rec, payloads = _trio_run(_job_and_events, path, job_ref)
    if not payloads:
        raise click.ClickException(f"job {rec.job_id} has no recorded events (it ran with record={rec.record}; "
                                   "use --record durable)")
    output = _EventOutput(as_json)
    for payload in payloads:
        output(payload)


@main.command()
@store_option
@click.option("--payload", metavar="JSON", help="Resume jobs that were PAUSED (escalated) with this JSON payload.")
@click.option("--json", "as_json", is_flag=True, help="Print events as JSON lines.")
@verbose_option
def resume(store: str, payload: str | None, as_json: bool, verbose: int) -> None:
    """Resume the durable jobs of runtimes that died, and run them to their end.

    Steps that completed before the crash are not run again (their outputs come from checkpoints).
    Each job's recorded events are printed from its start, then its new ones live.  Jobs that were
    PAUSED stay paused unless --payload is given.  Ctrl-C cancels the resumed jobs.  Exit status 0
    if every resumed job completed.
    """
    configure_logging(_verbosity(verbose))
    path = _existing_store(store)
    data = _json_option(payload, "'--payload'")
    _import_from_cwd()

    async def follow(job: JobHandle, output: _EventOutput) -> None:
        # replay: the job may have started before we subscribed; its log before the crash comes too
        told = False
        async for event in job.events(replay=True, maxlen=100_000):
            output(event)
            if isinstance(event, JobStarted | JobPaused) and job.state is JobState.PAUSED:
                if data is not None:
                    await _resume_quietly(job, data)
                elif not told:
                    told = True
                    click.echo(f"job {job.id} is paused: waiting (pass --payload JSON to resume it; "
                               "Ctrl-C cancels)", err=True)

    async def go() -> tuple[list[JobState], bool]:
        interrupted: list[int] = []
        output = _EventOutput(as_json)
        with trio.open_signal_receiver(*_SIGNALS) as signals:
            async with open_runtime(store=path, resume=True) as rt:
                handles = rt.jobs()
                if not handles:
                    click.echo("nothing to resume", err=True)
                    return [], False
                async with trio.open_nursery() as nursery:

                    def on_signal(signum: int) -> None:
                        if not interrupted:
                            click.echo(f"\n{signal.Signals(signum).name}: cancelling the resumed jobs", err=True)
                            for job in handles:
                                nursery.start_soon(job.cancel, "interrupted")
                        interrupted.append(signum)

                    nursery.start_soon(_watch_signals, signals, on_signal)
                    async with trio.open_nursery() as followers:
                        for job in handles:
                            followers.start_soon(follow, job, output)
                    results = [await job.wait() for job in handles]
                    nursery.cancel_scope.cancel()
        return [r.state for r in results], bool(interrupted)

    states, interrupted = _trio_run(go)
    if interrupted:
        sys.exit(EXIT_INTERRUPTED)
    sys.exit(0 if all(s is JobState.COMPLETED for s in states) else 1)


@main.command()
@store_option
@click.option("--grace", default=1.0, show_default=True, type=click.FloatRange(0),
              help="Seconds between SIGTERM and SIGKILL.")
@verbose_option
def sweep(store: str, grace: float, verbose: int) -> None:
    """Kill processes left by runtimes that died (found by the marker in their environment) and
    forget those runtimes' leases and process groups in the store."""
    configure_logging(_verbosity(verbose))

    has_store = Path(store).exists()
    if has_store:
        _new_store(store)  # refused in one line if it cannot be written

    async def go() -> tuple[int, int]:
        killed = await sweep_dead_runtimes(grace)
        forgotten = 0
        if has_store:
            async with SqliteStore(store) as st:
                forgotten = len(await sweep_dead(st, grace))
        return killed, forgotten

    killed, forgotten = _trio_run(go)
    click.echo(f"killed {killed} processes of dead runtimes; forgot {forgotten} dead runtimes in {store}")
