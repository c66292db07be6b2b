"""The control client: finds a job's owner through the store and asks it over its socket.

A job whose runtime is alive is steered through that runtime's control endpoint
(:mod:`runtime.core.control`).  A durable job whose runtime died is *ownerless*: cancel and
abandon take it over for just long enough to end it; resume needs ``run=True``, which takes it
over in the client's own runtime and runs it to its end there (leaving the ``async with`` block
waits for such jobs).
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import trio

from actors._groups import raise_lone
from actors.acp.errors import ProtocolError, RemoteError
from actors.acp.jsonrpc import JsonRpcConnection

from ..core.control import (
    JOB_NOT_FOUND,
    JOB_STATE_ERROR,
    job_description,
    job_summary,
    result_from_wire,
)
from ..core.events import Event, JobStarted, event_from_dict
from ..core.handle import JobHandle
from ..core.recording import recording_for
from ..core.runtime import Runtime, open_runtime
from ..core.states import JobNotFound, JobResult, JobState, JobStateError
from ..core.watch import Watcher
from ..store import LIVE_STATES, JobRecord, Lease, SqliteStore, Store, lease_alive

__all__ = ["ControlClient", "open_client"]


class ControlClient:
    """Resume, cancel, abandon and watch jobs by id.  Create with :func:`open_client`."""

    def __init__(self, store: Store, path: Path | None, runtime: Runtime | None) -> None:
        self.store = store
        self._path = path
        self._runtime = runtime  # run=True: ownerless jobs are taken over and run here
        self._adopted: list[JobHandle] = []

    # -- finding the owner ----------------------------------------------------------------------

    async def _owner(self, job_id: str) -> tuple[JobRecord | None, Lease | None]:
        """The job's record (``None``: not in the store) and its live owner's lease, if any."""
        rec = await self.store.get_job(job_id)
        leases = [lease for lease in await self.store.list_leases()
                  if lease.control is not None and lease_alive(lease)]
        if rec is not None:
            if self._runtime is not None and rec.runtime_id == self._runtime.id:
                return rec, None
            return rec, next((lease for lease in leases if lease.runtime_id == rec.runtime_id), None)
        for lease in leases:  # a job that records nothing is in the store only once it has ended
            with contextlib.suppress(JobNotFound):
                await self._call(lease, "state", {"job_id": job_id})
                return None, lease
        return None, None

    async def _call(self, lease: Lease, method: str, params: dict[str, Any]) -> Any:
        assert lease.control is not None
        async with _connect(lease.control) as conn:
            return await _request(conn, method, params, params.get("job_id"))

    async def _route(self, job_id: str, method: str, params: dict[str, Any]) -> tuple[JobRecord | None, Any]:
        """Ask the job's live owner; (record, answer).  The answer is ``None`` with no live owner."""
        rec, lease = await self._owner(job_id)
        if lease is not None:
            return rec, await self._call(lease, method, {"job_id": job_id, **params})
        if rec is None and (self._runtime is None or self._runtime.get(job_id) is None):
            raise JobNotFound(job_id)
        return rec, None

    @property
    def runtime(self) -> Runtime | None:
        """The runtime of a ``run=True`` client, where the jobs it took over run; else ``None``."""
        return self._runtime

    def runs_here(self, job_id: str) -> bool:
        """Whether ``job_id`` was taken over by this client's runtime (``run=True``)."""
        return self._local(job_id) is not None

    def _local(self, job_id: str) -> JobHandle | None:
        return None if self._runtime is None else self._runtime.get(job_id)

    # -- the operations -------------------------------------------------------------------------

    async def resume(self, job_id: str, payload: Any = None) -> None:
        """Resume the PAUSED job ``job_id`` with ``payload``; returns once it runs again."""
        local = self._local(job_id)
        if local is not None:
            await local.resume(payload)
            return
        rec, answer = await self._route(job_id, "resume", {"payload": payload})
        if answer is not None:
            return
        assert rec is not None
        _check_live(rec, "resumed")
        if rec.state != JobState.PAUSED.value:
            raise JobStateError(f"job {job_id} is {rec.state}, not paused")
        if self._runtime is None:
            raise JobStateError(f"job {job_id} is paused and its runtime is gone: open the client with "
                                f"run=True (or `corral resume {job_id} --payload JSON`) to run it here")
        handle = await self._runtime.adopt(job_id)
        self._adopted.append(handle)
        started = handle.events()  # subscribed before the job starts: its JobStarted is seen
        async for event in started:
            if isinstance(event, JobStarted):
                break
        await started.aclose()  # type: ignore[attr-defined]
        await handle.resume(payload)

    async def cancel(self, job_id: str, reason: str = "cancelled") -> JobResult:
        """End ``job_id`` CANCELLED; returns its result once it is torn down."""
        return await self._end(job_id, "cancel", reason)

    async def abandon(self, job_id: str, reason: str = "abandoned") -> JobResult:
        """End ``job_id`` ABANDONED; returns its result once it is torn down."""
        return await self._end(job_id, "abandon", reason)

    async def _end(self, job_id: str, method: str, reason: str) -> JobResult:
        local = self._local(job_id)
        if local is not None:
            return await (local.cancel(reason) if method == "cancel" else local.abandon(reason))
        try:
            rec, answer = await self._route(job_id, method, {"reason": reason})
        except _OwnerGone:
            return await self._stored_result(job_id)
        if answer is not None:
            return result_from_wire(answer)
        assert rec is not None
        _check_live(rec, "cancelled" if method == "cancel" else "abandoned")
        async with self._runtime_for_takeover() as rt:  # ownerless: taken over just to end it
            handle = await rt.adopt(job_id)
            return await (handle.cancel(reason) if method == "cancel" else handle.abandon(reason))

    @contextlib.asynccontextmanager
    async def _runtime_for_takeover(self) -> AsyncIterator[Runtime]:
        if self._runtime is not None:
            yield self._runtime
            return
        if self._path is None:
            raise JobStateError("this client has no store path to take a job over in")
        async with open_runtime(store=self._path) as rt:
            yield rt

    async def result(self, job_id: str) -> JobResult:
        """Wait until ``job_id`` has ended; its result."""
        local = self._local(job_id)
        if local is not None:
            return await local.wait()
        try:
            rec, answer = await self._route(job_id, "wait", {})
        except (_OwnerGone, JobNotFound):  # ended and forgotten by its owner: the store says how
            return await self._stored_result(job_id)
        if answer is not None:
            return result_from_wire(answer)
        assert rec is not None
        if rec.state in LIVE_STATES:
            raise JobStateError(f"job {job_id} reads {rec.state} and its runtime is gone: nothing runs "
                                "it; resume or adopt it")
        return _result_of(rec)

    async def events(self, job_id: str, from_seq: int = 0) -> AsyncIterator[Event]:
        """The job's events from ``from_seq``: live from its owner (stream tokens included) until
        its last event; for a job with no live owner, what the store recorded."""
        local = self._local(job_id)
        if local is not None:
            async for event in local.events(replay=True):
                if isinstance(event, Event) and event.seq >= from_seq:
                    yield event
            return
        rec, lease = await self._owner(job_id)
        if lease is not None:
            async for event in _stream_events(lease, job_id, from_seq):
                yield event
            return
        if rec is None:
            raise JobNotFound(job_id)
        if not recording_for(rec.record).stores_events:
            raise JobStateError(f"job {job_id} was not recorded (record={rec.record!r}) and its "
                                "runtime is gone: there are no events to show")
        for row in await self.store.read_events(job_id, from_seq):
            yield event_from_dict(row.payload)

    async def live_jobs(self) -> list[dict[str, Any]]:
        """Summaries (``job_id``, ``flow``, ``state``, ``record``, ``created_at``, ``runtime_id``) of
        the live jobs of every live runtime on the store, those that record nothing included."""
        out: list[dict[str, Any]] = []
        if self._runtime is not None:
            out += [{**job_summary(h), "runtime_id": self._runtime.id} for h in self._runtime.jobs()]
        for lease in await self._live_leases():
            with contextlib.suppress(JobStateError):
                answer = await self._call(lease, "jobs", {})
                out += [{**job, "runtime_id": answer["runtime_id"]} for job in answer["jobs"]]
        return out

    async def describe(self, job_id: str) -> dict[str, Any] | None:
        """A live job's summary with its flow definition (``flow_def``, env values left out) and
        inputs, from its runtime; ``None`` when no live runtime holds it."""
        local = self._local(job_id)
        if local is not None:
            await trio.lowlevel.checkpoint()
            return job_description(local)
        for lease in await self._live_leases():
            with contextlib.suppress(JobNotFound, JobStateError):
                answer: dict[str, Any] = await self._call(lease, "job", {"job_id": job_id})
                return answer
        return None

    async def watch(self) -> AsyncIterator[set[str] | None]:
        """Each time jobs change state in a live runtime on the store: their ids (``None``: many,
        or the set of runtimes watched changed).  Parks while nothing changes.  Runtimes that
        start later are watched from the next change of the ones already watched on."""
        send, receive = trio.open_memory_channel[set[str] | None](64)
        async with trio.open_nursery() as nursery:
            if self._runtime is not None:
                nursery.start_soon(_forward_local, self._runtime, send.clone())
            for lease in await self._live_leases():
                nursery.start_soon(_forward_remote, lease, send.clone())
            send.close()
            async with receive:
                async for changed in receive:
                    yield changed
            nursery.cancel_scope.cancel()

    async def _live_leases(self) -> list[Lease]:
        own = None if self._runtime is None else self._runtime.id
        return [lease for lease in await self.store.list_leases()
                if lease.control is not None and lease.runtime_id != own and lease_alive(lease)]

    async def _stored_result(self, job_id: str) -> JobResult:
        """The owner went away mid-request: the job's end as its store record tells it."""
        rec = await self.store.get_job(job_id)
        if rec is None:
            raise JobNotFound(job_id)
        if rec.state in LIVE_STATES:
            raise JobStateError(f"job {job_id}: its runtime went away before it ended "
                                f"(it reads {rec.state if rec else 'nothing'})")
        return _result_of(rec)

    async def _wait_adopted(self) -> None:
        for handle in self._adopted:
            await handle.wait()


def _check_live(rec: JobRecord, done: str) -> None:
    if rec.state not in LIVE_STATES:
        raise JobStateError(f"job {rec.job_id} has ended ({rec.state}): it cannot be {done}")
    if rec.record != "durable":
        raise JobStateError(f"job {rec.job_id}'s runtime is gone and it was not recorded durably")


def _result_of(rec: JobRecord) -> JobResult:
    return JobResult(job_id=rec.job_id, flow=rec.flow_name, state=JobState(rec.state), reason=rec.reason,
                     outputs=rec.outputs, error=rec.error, inputs=rec.inputs,
                     started_at=rec.created_at, finished_at=rec.finished_at)


@contextlib.asynccontextmanager
async def _connect(path: str, on_notification: Any = None) -> AsyncIterator[JsonRpcConnection]:
    try:
        stream = await trio.open_unix_socket(path)
    except OSError as exc:
        raise JobStateError(f"the job's runtime does not answer on {path}: {exc.strerror or exc}") from None
    with raise_lone():
        async with stream, trio.open_nursery() as nursery:
            conn = JsonRpcConnection(stream, stream, on_notification=on_notification,
                                     name=f"runtime at {path}")
            await nursery.start(conn.run)
            try:
                yield conn
            finally:
                nursery.cancel_scope.cancel()


async def _request(conn: JsonRpcConnection, method: str, params: dict[str, Any], job_id: Any) -> Any:
    try:
        return await conn.request(method, params, timeout=math.inf)
    except RemoteError as exc:
        if exc.code == JOB_NOT_FOUND:
            raise JobNotFound(str(job_id)) from None
        if exc.code == JOB_STATE_ERROR:
            raise JobStateError(exc.message) from None
        raise
    except ProtocolError as exc:
        raise _OwnerGone(f"job {job_id}: its runtime went away ({exc})") from None


class _OwnerGone(JobStateError):
    """The job's runtime closed the connection before answering (it may have just ended)."""


async def _stream_events(lease: Lease, job_id: str, from_seq: int) -> AsyncIterator[Event]:
    assert lease.control is not None
    send, receive = trio.open_memory_channel[Event](math.inf)

    def on_event(method: str, params: Any) -> None:
        if method == "event" and isinstance(params, dict) and isinstance(params.get("event"), dict):
            send.send_nowait(event_from_dict(params["event"]))

    with raise_lone():
        async with _connect(lease.control, on_event) as conn, trio.open_nursery() as nursery:

            async def ask() -> None:
                try:
                    await _request(conn, "events", {"job_id": job_id, "from_seq": from_seq}, job_id)
                finally:
                    send.close()

            nursery.start_soon(ask)
            async with receive:
                async for event in receive:
                    yield event


async def _forward_local(rt: Runtime, send: trio.MemorySendChannel[set[str] | None]) -> None:
    watcher = rt.job_watch.open()
    try:
        async with send:
            async for changed in watcher:
                await send.send(changed)
    finally:
        rt.job_watch.close(watcher)


async def _forward_remote(lease: Lease, send: trio.MemorySendChannel[set[str] | None]) -> None:
    assert lease.control is not None
    async with send:
        changes = Watcher()  # what the runtime said, coalesced until it is forwarded: nothing dropped

        def on_change(method: str, params: Any) -> None:
            if method == "changed" and isinstance(params, dict):
                jobs = params.get("jobs")
                changes.add_many(None if jobs is None else [str(j) for j in jobs])

        try:
            async with _connect(lease.control, on_change) as conn, trio.open_nursery() as nursery:

                async def ask() -> None:
                    with contextlib.suppress(_OwnerGone):
                        await _request(conn, "watch", {}, None)
                    changes.close()

                nursery.start_soon(ask)
                async for changed in changes:
                    if changed is None or changed:
                        await send.send(changed)
        except JobStateError:
            pass  # the runtime went away before it answered
        await send.send(None)  # a runtime watched on has gone: the set of jobs changed


@contextlib.asynccontextmanager
async def open_client(*, store: str | os.PathLike[str] | Store, run: bool = False) -> AsyncIterator[ControlClient]:
    """Open a control client on ``store`` (a store path, or an open-able :class:`Store`).

    ``run=True``: a job whose runtime died is taken over by a runtime of this client
    (:attr:`ControlClient.runtime`) and run to its end here; leaving the block waits for those
    jobs.  Leaving it with an exception (or cancelled) drains that runtime at once: the jobs it
    took over end INTERRUPTED here and stay resumable in the store (see :meth:`Runtime.drain`).
    """
    path = None if isinstance(store, Store) else Path(store)
    if path is not None and not path.exists():
        raise FileNotFoundError(f"no store at {path}")
    if run:
        async with open_runtime(store=store) as rt:
            client = ControlClient(rt.store, path, rt)
            try:
                yield client
                await client._wait_adopted()
            except BaseException:
                # an error or a cancel leaves the block: the taken-over jobs are let go, not
                # cancelled -- each stays live and ownerless in the store, resumable again
                with trio.CancelScope(shield=True):
                    await rt.drain(0)
                raise
        return
    store_obj = SqliteStore(path) if path is not None else store
    assert isinstance(store_obj, Store)
    async with store_obj:
        yield ControlClient(store_obj, path, None)

