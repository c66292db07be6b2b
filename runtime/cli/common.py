"""What the CLI's commands share: options, argument parsing, store paths, trio.run, signals."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from pathlib import Path
from typing import Any, TypeVar

import click
import trio

from actors._groups import lone_exception

from ..core.handle import JobHandle
from ..core.runtime import Runtime
from ..core.states import JobStateError
from ..store import LIVE_STATES, JobRecord, SqliteStore, StoreError, StoreReadOnly

EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 143
DEFAULT_GRACE = 10.0
EXIT_BAD_INPUT = 2
SIGNALS = (signal.SIGINT, signal.SIGTERM)
T = TypeVar("T")

DEFAULT_STORE = ".corral/corral.db"
"""Where the CLI keeps its store unless ``--store`` says otherwise."""

store_option = click.option("--store", default=DEFAULT_STORE, show_default=True, metavar="PATH",
                            help="The SQLite store (created on first use).")
grace_option = click.option(
    "--grace", default=DEFAULT_GRACE, show_default=True, type=click.FloatRange(0), metavar="SECONDS",
    help="On SIGTERM: how long running steps get to finish before durable jobs are let go "
         "(INTERRUPTED, resumable by `corral resume`) and the others cancelled.")
verbose_option = click.option("-v", "--verbose", count=True, help="Log to stderr: -v INFO, -vv DEBUG.")


def verbosity(verbose: int) -> int:
    """A command's ``-v`` count, or the group's (``corral -v run ...``) if that is higher."""
    ctx = click.get_current_context()
    group_verbose: int = (ctx.obj or {}).get("verbose", 0)
    return max(verbose, group_verbose)


class Interrupts:
    """The SIGINT/SIGTERM received while :func:`interruptible`'s body ran."""

    def __init__(self) -> None:
        self.signals: list[str] = []
        self.on_first: Callable[[str], Awaitable[object]] | None = None

    @property
    def received(self) -> bool:
        return bool(self.signals)

    def stop(self, rt: Runtime, grace: float, cancel: Callable[[], Awaitable[object]], what: str) -> None:
        """On the first signal, SIGTERM drains ``rt`` (a deploy: durable jobs stay resumable) and
        SIGINT (Ctrl-C) runs ``cancel``."""

        async def on_first(name: str) -> None:
            if name == "SIGTERM":
                click.echo(f"\nSIGTERM: draining {what} (grace {grace:g}s); durable jobs stay "
                           "resumable with `corral resume`", err=True)
                await rt.drain(grace)
            else:
                click.echo(f"\n{name}: cancelling {what}", err=True)
                await cancel()

        self.on_first = on_first

    def exit_if_received(self) -> None:
        """Exit 143 after a SIGTERM, 130 after a SIGINT; return if neither came."""
        if self.signals:
            sys.exit(EXIT_TERMINATED if self.signals[0] == "SIGTERM" else EXIT_INTERRUPTED)


@contextlib.asynccontextmanager
async def interruptible() -> AsyncIterator[Interrupts]:
    """Catch SIGINT and SIGTERM while the body runs (instead of dying with a KeyboardInterrupt):
    the first one runs ``interrupts.on_first(signal_name)`` in a task; later ones are counted.
    The body must end the work itself (``on_first`` cancels jobs, say); on exit the watcher stops."""
    interrupts = Interrupts()
    with trio.open_signal_receiver(*SIGNALS) as signals:
        async with trio.open_nursery() as nursery:

            async def watch() -> None:
                async for signum in signals:
                    interrupts.signals.append(signal.Signals(signum).name)
                    if len(interrupts.signals) == 1 and interrupts.on_first is not None:
                        nursery.start_soon(interrupts.on_first, interrupts.signals[0])

            nursery.start_soon(watch)
            try:
                yield interrupts
            finally:
                nursery.cancel_scope.cancel()


def parse_inputs(pairs: Iterable[str]) -> dict[str, Any]:
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


def json_option(value: str | None, what: str) -> Any:
    if value is None:
        return None
    try:
        return json.loads(value)
    except ValueError as exc:
        raise click.BadParameter(f"not JSON: {exc}", param_hint=what) from None


def import_from_cwd() -> None:
    """Put the current directory first on ``sys.path`` (as ``python -m`` does) for ``module:function``."""
    cwd = os.getcwd()
    if cwd not in sys.path:
        sys.path.insert(0, cwd)


class BadInput(click.ClickException):
    """An error message, exit status 2 (the input is invalid; nothing ran)."""

    exit_code = EXIT_BAD_INPUT


READ_ONLY_HINT = "commands that write (run, resume, sweep, demo) need a writable store; jobs, show and events can read it"


def existing_store(path: str) -> Path:
    store = Path(path)
    if not store.exists():
        raise click.ClickException(f"no store at {store} (run a flow or the demo with --store {store} first)")
    return store


def new_store(path: str) -> Path:
    """The store a writing command opens: its directory created, refused in one line if it cannot be."""
    store = Path(path)
    if store.is_dir():
        raise BadInput(f"store {store}: is a directory, not a store file")
    blocker = next((p for p in store.parents if p.exists() and not p.is_dir()), None)
    if blocker is not None:
        raise BadInput(f"store {store}: {blocker} is a file, not a directory")
    try:
        store.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise BadInput(f"store {store}: cannot create its directory {store.parent}: "
                        f"{exc.strerror or exc}") from None
    if store.exists() and not os.access(store, os.W_OK):
        raise BadInput(f"store {store}: is read-only; {READ_ONLY_HINT}")
    return store


async def find_job(store: SqliteStore, ref: str) -> JobRecord:
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


def when(ts: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts)) if ts else "-"


def duration(rec: JobRecord) -> str:
    # an interrupted job's updated_at is its last sign of life before its runtime died
    end = rec.finished_at or (rec.updated_at if rec.state in LIVE_STATES else None)
    return f"{end - rec.created_at:.2f}s" if end else "-"


def trio_run(fn: Callable[..., Awaitable[T]], *args: Any) -> T:
    """``trio.run(fn, *args)``; a store that cannot be opened or written is an error message, not a traceback."""
    try:
        try:
            return trio.run(fn, *args)
        except BaseExceptionGroup as group:  # one error from inside the command's nurseries
            lone = lone_exception(group)
            if lone is None:
                raise
            raise lone from None
    except StoreReadOnly as exc:
        raise BadInput(f"{exc}; {READ_ONLY_HINT}") from None
    except StoreError as exc:
        raise click.ClickException(str(exc)) from None


async def resume_quietly(job: JobHandle, payload: Any) -> None:
    """Resume ``job`` unless it is no longer paused (cancelled meanwhile, say)."""
    with contextlib.suppress(JobStateError):
        await job.resume(payload)
