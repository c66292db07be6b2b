"""The Ray host actor: one embedded trio runtime in a dedicated thread, jobs in its nurseries."""

from __future__ import annotations

import asyncio
import os
import socket
import threading
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypedDict, TypeVar

import trio

from actors.log import get_logger
from runtime import (
    Event,
    Flow,
    JobFinished,
    JobHandle,
    JobResult,
    JobStateError,
    Lagged,
    RecordMode,
    Runtime,
    RuntimeStats,
    event_to_dict,
    open_runtime,
)
from runtime.testing import assert_no_leaks

from ._log import EventLog
from ._ship import error_text, unpack

log = get_logger(__name__)

T = TypeVar("T")


class HostOptions(TypedDict, total=False):
    """What each host passes to its ``open_runtime()`` (see :func:`open_cluster_runtime`)."""

    max_results: int
    store: str | None
    workspace: str | None
    stdin_grace: float
    term_grace: float
    record_max_events: int
    record_max_bytes: int


class HostInfo(TypedDict):
    """A host's process, its machine, and its embedded runtime's id (the marker of every process
    it starts)."""

    pid: int
    runtime_id: str
    node: str


class HostJob(TypedDict):
    """What a host keeps of each job it was given: enough for another controller to follow it."""

    job_id: str
    flow: bytes  # the flow and its inputs as the controller pickled them (runtime.cluster._ship.pack)
    inputs: dict[str, Any]
    record: RecordMode


class AdoptedJob(HostJob):
    """A job a host still holds, with its state there (a :class:`runtime.JobState` value)."""

    state: str


class Host:
    """Hosts one embedded runtime (``open_runtime()``) in a ``trio.run`` thread.

    Ray methods are async (an async actor: Ray cancels streams with GeneratorExit there); they reach
    trio through ``trio.from_thread`` in a small thread pool and wait for the trio side on asyncio
    futures that the trio thread completes with ``call_soon_threadsafe``.  Each job
    keeps a numbered event log here (``events(job_id, from_seq)`` streams it).
    """

    # set in the trio thread before ``__init__`` returns (it raises if the trio run failed to start)
    _token: trio.lowlevel.TrioToken
    _rt: Runtime
    _nursery: trio.Nursery
    _stop: trio.CancelScope

    def __init__(self, options: HostOptions | None = None, max_log_events: int = 100_000) -> None:
        self._options = HostOptions(**options) if options else HostOptions()
        self._max_log_events = max_log_events
        self._cond = threading.Condition()
        self._logs: dict[str, EventLog[dict[str, Any]]] = {}
        self._specs: dict[str, HostJob] = {}
        self._results: dict[str, JobResult] = {}
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = []
        self._pool = ThreadPoolExecutor(max_workers=64, thread_name_prefix="corral-host-call")
        self._thread = threading.Thread(target=self._main, name="corral-host-trio", daemon=True)
        self._thread.start()
        self._ready.wait()
        if self._error is not None:
            raise self._error

    # -- the trio thread ----------------------------------------------------------------------------

    def _main(self) -> None:
        try:
            trio.run(self._trio_main)
        except BaseException as exc:
            self._error = exc
        finally:
            self._ready.set()

    async def _trio_main(self) -> None:
        async with open_runtime(**self._options) as rt, trio.open_nursery() as nursery:
            self._rt, self._nursery = rt, nursery
            self._token = trio.lowlevel.current_trio_token()
            with trio.CancelScope() as stop:
                self._stop = stop
                self._ready.set()
                await trio.sleep_forever()
            with trio.CancelScope(shield=True):
                async with trio.open_nursery() as cancels:
                    for handle in rt.jobs():
                        cancels.start_soon(handle.cancel, "shutdown")

    async def _spawn(self, flow: Flow, inputs: dict[str, Any], job_id: str, record: RecordMode) -> None:
        handle = await self._rt.spawn(flow, inputs, job_id=job_id, record=record)
        events = handle.events(maxlen=1 << 20)  # subscribed before the first event is published
        self._nursery.start_soon(self._pump, handle, events, name=f"corral.host-pump:{job_id}")

    async def _pump(self, handle: JobHandle, events: AsyncIterator[Event | Lagged]) -> None:
        job_log = self._logs[handle.id]
        with trio.CancelScope(shield=True):
            async for event in events:
                if isinstance(event, Lagged):
                    continue
                with self._cond:
                    job_log.append(event_to_dict(event))
                    self._notify()
                if isinstance(event, JobFinished):
                    break
            result = await handle.wait()
        with self._cond:
            self._results[handle.id] = result
            self._notify()

    # -- bridging -------------------------------------------------------------------------------------

    def _notify(self) -> None:
        """Wake every asyncio waiter (call with ``self._cond`` held)."""
        for loop, fut in self._waiters:
            loop.call_soon_threadsafe(_wake, fut)
        self._waiters.clear()

    async def _until(self, ready: Callable[[], bool]) -> None:
        loop = asyncio.get_running_loop()
        while True:
            with self._cond:
                if ready():
                    return
                fut: asyncio.Future[None] = loop.create_future()
                self._waiters.append((loop, fut))
            await fut

    async def _call(self, fn: Callable[[], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn)

    # -- Ray methods ----------------------------------------------------------------------------------

    async def info(self) -> HostInfo:
        """This host's pid, machine and embedded runtime's id (the marker the controller sweeps)."""
        return HostInfo(pid=os.getpid(), runtime_id=self._rt.id, node=socket.gethostname())

    async def spawn(self, payload: bytes, job_id: str, record: RecordMode = "off") -> str | None:
        """Start a job in this host's runtime (``payload``: its flow and inputs, pickled).

        ``None`` once it runs; if it cannot start here, the error as ``Type: message`` (the
        traceback goes to this host's log at DEBUG): a Ray error would wrap it in Ray's text.
        """
        try:
            flow, inputs = unpack(payload)
        except Exception as exc:
            log.debug("corral.cluster.unpickle_failed", job_id=job_id, exc_info=True)
            return error_text(exc)
        with self._cond:
            self._logs[job_id] = EventLog(self._max_log_events, _seq)
            self._specs[job_id] = HostJob(job_id=job_id, flow=payload, inputs=inputs, record=record)
        try:
            await self._call(lambda: trio.from_thread.run(self._spawn, flow, inputs, job_id, record,
                                                          trio_token=self._token))
        except Exception as exc:
            log.debug("corral.cluster.spawn_failed", job_id=job_id, exc_info=True)
            self._drop(job_id)
            return error_text(exc)
        except BaseException:
            self._drop(job_id)
            raise
        return None

    def _drop(self, job_id: str) -> None:
        with self._cond:
            self._logs.pop(job_id, None)
            self._specs.pop(job_id, None)
            self._notify()

    async def events(self, job_id: str, from_seq: int = 0) -> AsyncIterator[list[dict[str, Any]]]:
        """Stream the job's event log from ``from_seq`` in batches (whatever is new at each step):
        no duplicates, and no gap that is not announced by a ``{"lagged": n}`` entry (events that
        fell out of the bounded log); ends after the job's result is known."""
        next_seq = from_seq

        def ready() -> bool:
            return job_id not in self._logs or job_id in self._results or self._logs[job_id].last_seq >= next_seq
        try:
            while True:
                await self._until(ready)
                with self._cond:
                    job_log = self._logs.get(job_id)
                    if job_log is None:
                        return
                    missing, batch = job_log.since(next_seq)
                    done = job_id in self._results
                if batch:
                    next_seq = batch[-1]["seq"] + 1
                    yield [{"lagged": missing}, *batch] if missing else batch
                if done:
                    return
        except (GeneratorExit, asyncio.CancelledError):
            return

    async def result(self, job_id: str) -> JobResult | None:
        """Wait until the job ended and its nursery closed; its result."""
        await self._until(lambda: job_id not in self._logs or job_id in self._results)
        with self._cond:
            return self._results.get(job_id)

    async def forget(self, job_id: str) -> None:
        """Drop a finished job's log and result."""
        with self._cond:
            if job_id in self._results:
                self._logs.pop(job_id, None)
                self._results.pop(job_id, None)
                self._specs.pop(job_id, None)

    async def adopt(self) -> list[AdoptedJob]:
        """Every job this host still holds (running, or ended and not yet forgotten), in spawn order:
        what a controller that attaches to a named host needs to follow them."""
        def states() -> dict[str, str]:
            return {h.id: h.state.value for h in self._rt.jobs()}
        live = await self._call(lambda: trio.from_thread.run_sync(states, trio_token=self._token))
        with self._cond:
            return [AdoptedJob(**spec, state=live.get(job_id, "running")) for job_id, spec in self._specs.items()]

    async def control(self, job_id: str, action: str, reason: str) -> None:
        """Cancel or abandon a job; returns once it is torn down here."""
        async def act() -> None:
            handle = self._rt.get(job_id)
            if handle is not None:
                await (handle.cancel(reason) if action == "cancel" else handle.abandon(reason))
        await self._call(lambda: trio.from_thread.run(act, trio_token=self._token))
        await self.result(job_id)

    async def resume(self, job_id: str, payload: Any) -> None:
        """Resume a paused job."""
        async def act() -> None:
            handle = self._rt.get(job_id)
            if handle is None:
                raise JobStateError(f"job {job_id} has ended")
            await handle.resume(payload)
        await self._call(lambda: trio.from_thread.run(act, trio_token=self._token))

    async def stats(self) -> RuntimeStats:
        """The embedded runtime's stats."""
        return await self._call(lambda: trio.from_thread.run_sync(self._rt.stats, trio_token=self._token))

    async def check_leaks(self, allow_live_jobs: bool = False) -> str | None:
        """Run ``assert_no_leaks`` inside this host's trio run; the problem, or ``None``."""
        def check() -> str | None:
            try:
                assert_no_leaks(self._rt, allow_live_jobs=allow_live_jobs)
            except AssertionError as exc:
                return str(exc)
            return None
        return await self._call(lambda: trio.from_thread.run_sync(check, trio_token=self._token))

    def _stop_blocking(self) -> None:
        if self._thread.is_alive():
            trio.from_thread.run_sync(self._stop.cancel, trio_token=self._token)
        self._thread.join()

    async def stop(self) -> None:
        """Shut the embedded runtime down (cancelling its jobs) and finish the trio run."""
        await self._call(self._stop_blocking)


def _seq(entry: dict[str, Any]) -> int:
    seq: int = entry["seq"]
    return seq


def _wake(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)
