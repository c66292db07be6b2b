"""The control endpoint: a runtime's jobs steered by id from other processes.

A runtime with a persistent store serves JSON-RPC 2.0 requests, one per line, on a Unix socket
(mode 0600 in a 0700 directory; its path recorded in the runtime's lease).  The listener parks on
``accept``: an idle endpoint schedules nothing.  Only processes of the runtime's own uid are
served (``SO_PEERCRED``).  Methods (params are objects):

- ``resume {job_id, payload}`` → ``{"state": "running"}``
- ``cancel {job_id, reason}`` / ``abandon {job_id, reason}`` → the result once the job is torn down
- ``wait {job_id}`` → the result once the job has ended
- ``events {job_id, from_seq}`` → ``event`` notifications ``{"id": <request id>, "event": {...}}``
  (live tokens included), then the answer ``{"next_seq": n}`` after the job's last event
- ``state {job_id}`` → ``{"state": ...}`` (whether this runtime holds the job)
- ``stats {}`` → the runtime's :class:`~runtime.core.runtime.RuntimeStats` and its pid
- ``jobs {}`` → ``{"runtime_id", "jobs": [{job_id, flow, state, record, created_at}, ...]}``: its live jobs
- ``job {job_id}`` → that summary plus ``flow_def`` (the flow as the store keeps it: agents' env
  values left out) and ``inputs``
- ``watch {}`` → ``changed`` notifications ``{"id": <request id>, "jobs": [job ids]}`` (``null``:
  many) each time jobs of the runtime change state (the first, with no ids, says it watches);
  never answered, it ends when the client closes the connection

Errors: -32700 not JSON, -32600 not a request (or a line over the size limit, which also closes
the connection), -32601 unknown method, -32602 bad params, :data:`JOB_NOT_FOUND`,
:data:`JOB_STATE_ERROR`.  A bad request never reaches a job.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import socket
import stat
import struct
import tempfile
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs
import trio

from actors.acp.errors import ProtocolError
from actors.acp.messages import Request, encode, parse_line
from actors.log import get_logger

from ..flow.codec import flow_to_dict
from .events import Lagged, event_to_dict, jsonable
from .handle import JobHandle
from .states import JobNotFound, JobResult, JobState, JobStateError

if TYPE_CHECKING:
    from .runtime import Runtime

__all__ = ["JOB_NOT_FOUND", "JOB_STATE_ERROR", "MAX_REQUEST_BYTES", "ControlServer", "job_description",
           "job_summary", "peer_uid", "result_from_wire", "result_to_wire", "serve_control", "socket_path"]

_log = get_logger("corral.control")

JOB_NOT_FOUND = -32004
JOB_STATE_ERROR = -32009
MAX_REQUEST_BYTES = 1 << 16
_PARSE_ERROR, _INVALID_REQUEST, _METHOD_NOT_FOUND, _INVALID_PARAMS = -32700, -32600, -32601, -32602
_SUN_PATH_MAX = 100  # sockaddr_un holds 108 bytes; keep a margin


def peer_uid(sock: socket.socket) -> int:
    """The uid of the process at the other end of a connected Unix socket (``SO_PEERCRED``)."""
    creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    _pid, uid, _gid = struct.unpack("3i", creds)
    return int(uid)


def _private_dir(path: Path) -> Path:
    """``path`` as a directory only this uid can enter: created 0700, or an existing one we own."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    st = path.lstat()
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid():
        raise OSError(errno.EPERM, f"{path} is not a directory owned by this user")
    if st.st_mode & 0o077:
        path.chmod(0o700)
    return path


def socket_path(store_path: Path | None, runtime_id: str) -> Path:
    """Where a runtime's socket goes: ``<store>.control/`` next to the store, else (no store
    file, or a path too long for a Unix socket) ``$XDG_RUNTIME_DIR/corral/`` or
    ``<tmp>/corral-<uid>/``.  The directory is created private (0700)."""
    name = f"{runtime_id[:16]}.sock"
    if store_path is not None:
        near = store_path.absolute().with_name(store_path.name + ".control")
        if len(os.fsencode(near / name)) <= _SUN_PATH_MAX:
            return _private_dir(near) / name
    base = os.environ.get("XDG_RUNTIME_DIR")
    root = Path(base) / "corral" if base else Path(tempfile.gettempdir()) / f"corral-{os.getuid()}"
    return _private_dir(root) / name


def job_summary(handle: JobHandle) -> dict[str, Any]:
    """What a job list shows of a live job (``jobs``, ``job``)."""
    return {"job_id": handle.id, "flow": handle.flow.name, "state": handle.state.value,
            "record": handle.record, "created_at": handle.created_at}


def job_description(handle: JobHandle) -> dict[str, Any]:
    """A job's summary, its flow as the store keeps it (agents' env values never leave the runtime)
    and its inputs (``job``)."""
    return {**job_summary(handle), "flow_def": flow_to_dict(handle.flow), "inputs": jsonable(handle.inputs)}


def result_to_wire(result: JobResult) -> dict[str, Any]:
    """A job's result as JSON-able data (its step states by value)."""
    return {"job_id": result.job_id, "flow": result.flow, "state": result.state.value,
            "reason": result.reason, "error": result.error, "outputs": jsonable(result.outputs),
            "inputs": jsonable(result.inputs), "started_at": result.started_at,
            "finished_at": result.finished_at}


def result_from_wire(data: dict[str, Any]) -> JobResult:
    """The :class:`JobResult` that :func:`result_to_wire` sent."""
    return JobResult(job_id=data["job_id"], flow=data["flow"], state=JobState(data["state"]),
                     reason=data.get("reason"), error=data.get("error"), outputs=data.get("outputs") or {},
                     inputs=data.get("inputs") or {}, started_at=data.get("started_at"),
                     finished_at=data.get("finished_at"))


class _Refused(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


@attrs.define
class _Connection:
    stream: trio.SocketStream
    lock: trio.Lock = attrs.field(factory=trio.Lock)
    # long-lived answers (event streams, watches): cancelled once the client has gone
    subscriptions: set[trio.CancelScope] = attrs.field(factory=set)
    gone: bool = False

    def client_gone(self) -> None:
        self.gone = True
        for scope in self.subscriptions:
            scope.cancel()

    @contextlib.contextmanager
    def subscription(self) -> Iterator[None]:
        """The body of a streaming answer: cancelled when the client closes its side."""
        with trio.CancelScope() as scope:
            if self.gone:
                scope.cancel()
            self.subscriptions.add(scope)
            try:
                yield
            finally:
                self.subscriptions.discard(scope)

    async def send(self, message: dict[str, Any]) -> None:
        async with self.lock:
            await self.stream.send_all(encode({"jsonrpc": "2.0", **message}))


class ControlServer:
    """Serves one runtime's control requests on ``path`` (see the module docstring)."""

    def __init__(self, runtime: Runtime, path: Path, *, max_request_bytes: int = MAX_REQUEST_BYTES) -> None:
        self.runtime = runtime
        self.path = path
        self.max_request_bytes = max_request_bytes
        self.cancel_scope = trio.CancelScope()
        self._methods: dict[str, Callable[[dict[str, Any], _Connection, Any], Awaitable[Any]]] = {
            "resume": self._resume, "cancel": self._cancel, "abandon": self._abandon,
            "wait": self._wait, "events": self._events, "stats": self._stats, "state": self._state,
            "jobs": self._jobs, "job": self._job_info, "watch": self._watch,
        }

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Listen until :attr:`cancel_scope` is cancelled; the socket file is removed on the way out."""
        with self.cancel_scope:
            sock = trio.socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                if self.path.is_socket():
                    self.path.unlink()  # our own runtime id: a leftover of this very runtime
                await sock.bind(os.fspath(self.path))
                self.path.chmod(0o600)
                sock.listen(64)
                listener = trio.SocketListener(sock)
                task_status.started()
                await trio.serve_listeners(self._serve_connection, [listener])
            finally:
                sock.close()
                self.close()

    def close(self) -> None:
        """Stop serving and remove the socket file (and its directory, once empty)."""
        self.cancel_scope.cancel()
        try:
            self.path.unlink()
        except FileNotFoundError:
            pass
        try:
            self.path.parent.rmdir()
        except OSError:
            pass  # other runtimes' sockets are still there

    async def _serve_connection(self, stream: trio.SocketStream) -> None:
        conn = _Connection(stream)
        try:
            uid = peer_uid(stream.socket)  # type: ignore[arg-type]
        except OSError as exc:
            _log.warning("control_peer_unknown", error=str(exc))
            uid = -1
        async with stream:
            if uid != os.getuid():
                _log.warning("control_peer_refused", uid=uid)
                await self._reply_error(conn, None, _INVALID_REQUEST,
                                        f"refused: peer uid {uid} is not this runtime's uid {os.getuid()}")
                return
            async with trio.open_nursery() as nursery:
                await self._read_requests(conn, nursery)
                conn.client_gone()

    async def _read_requests(self, conn: _Connection, nursery: trio.Nursery) -> None:
        buffer = bytearray()
        number = 0
        while True:
            try:
                data = await conn.stream.receive_some(self.max_request_bytes + 1)
            except trio.BrokenResourceError:
                return
            if not data:
                return
            buffer += data
            while (end := buffer.find(b"\n")) >= 0:
                line, buffer = bytes(buffer[:end]), buffer[end + 1:]
                number += 1
                if line.strip():
                    await self._dispatch(conn, line, number, nursery)
            if len(buffer) > self.max_request_bytes:
                await self._reply_error(conn, None, _INVALID_REQUEST,
                                        f"request larger than {self.max_request_bytes} bytes; closing")
                return

    async def _dispatch(self, conn: _Connection, line: bytes, number: int, nursery: trio.Nursery) -> None:
        try:
            message = parse_line(line, number, "control client")
        except ProtocolError as exc:
            try:
                json.loads(line)
            except ValueError:
                await self._reply_error(conn, None, _PARSE_ERROR, str(exc))
                return
            await self._reply_error(conn, None, _INVALID_REQUEST, str(exc))
            return
        if not isinstance(message, Request):
            await self._reply_error(conn, None, _INVALID_REQUEST,
                                    f"line {number}: expected a request with an id and a method")
            return
        nursery.start_soon(self._answer, conn, message)

    async def _answer(self, conn: _Connection, request: Request) -> None:
        method = self._methods.get(request.method)
        try:
            if method is None:
                raise _Refused(_METHOD_NOT_FOUND, f"unknown method {request.method!r}; "
                               f"methods: {', '.join(sorted(self._methods))}")
            params = request.params if request.params is not None else {}
            if not isinstance(params, dict):
                raise _Refused(_INVALID_PARAMS, f"{request.method}: params must be an object")
            result = await method(params, conn, request.id)
        except _Refused as exc:
            await self._reply_error(conn, request.id, exc.code, str(exc))
        except JobNotFound as exc:
            await self._reply_error(conn, request.id, JOB_NOT_FOUND, str(exc))
        except JobStateError as exc:
            await self._reply_error(conn, request.id, JOB_STATE_ERROR, str(exc))
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            return  # the client went away
        else:
            try:
                await conn.send({"id": request.id, "result": result})
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                return

    async def _reply_error(self, conn: _Connection, request_id: Any, code: int, message: str) -> None:
        try:
            await conn.send({"id": request_id, "error": {"code": code, "message": message}})
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass

    # -- methods -----------------------------------------------------------------------------------

    def _job(self, params: dict[str, Any], method: str) -> Any:
        job_id = params.get("job_id")
        if not isinstance(job_id, str) or not job_id:
            raise _Refused(_INVALID_PARAMS, f"{method}: params.job_id must be a non-empty string")
        handle = self.runtime.get(job_id)
        if handle is None:
            ended = self.runtime.finished(job_id)
            if ended is not None:
                raise JobStateError(f"job {job_id} has ended ({ended.state.value})")
            raise JobNotFound(job_id)
        return handle

    def _reason(self, params: dict[str, Any], method: str, default: str) -> str:
        reason = params.get("reason", default)
        if not isinstance(reason, str):
            raise _Refused(_INVALID_PARAMS, f"{method}: params.reason must be a string")
        return reason

    async def _resume(self, params: dict[str, Any], conn: _Connection, request_id: Any) -> Any:
        handle = self._job(params, "resume")
        await handle.resume(params.get("payload"))
        return {"state": handle.state.value}

    async def _cancel(self, params: dict[str, Any], conn: _Connection, request_id: Any) -> Any:
        handle = self._job(params, "cancel")
        return result_to_wire(await handle.cancel(self._reason(params, "cancel", "cancelled")))

    async def _abandon(self, params: dict[str, Any], conn: _Connection, request_id: Any) -> Any:
        handle = self._job(params, "abandon")
        return result_to_wire(await handle.abandon(self._reason(params, "abandon", "abandoned")))

    async def _wait(self, params: dict[str, Any], conn: _Connection, request_id: Any) -> Any:
        ended = self.runtime.finished(params["job_id"]) if isinstance(params.get("job_id"), str) else None
        if ended is not None:  # it has just ended here: its kept result is the answer
            return result_to_wire(ended)
        return result_to_wire(await self._job(params, "wait").wait())

    async def _events(self, params: dict[str, Any], conn: _Connection, request_id: Any) -> Any:
        handle = self._job(params, "events")
        from_seq = params.get("from_seq", 0)
        if not isinstance(from_seq, int) or isinstance(from_seq, bool) or from_seq < 0:
            raise _Refused(_INVALID_PARAMS, "events: params.from_seq must be an integer >= 0")
        next_seq = from_seq
        with conn.subscription():
            async for event in handle.events(replay=True, maxlen=10_000):
                if isinstance(event, Lagged):
                    await conn.send({"method": "event", "params": {"id": request_id, "lagged": event.n}})
                    continue
                if event.seq < from_seq:
                    continue
                next_seq = event.seq + 1
                await conn.send({"method": "event", "params": {"id": request_id, "event": event_to_dict(event)}})
        return {"next_seq": next_seq}

    async def _jobs(self, params: dict[str, Any], conn: _Connection, request_id: Any) -> Any:
        await trio.lowlevel.checkpoint()
        return {"runtime_id": self.runtime.id, "jobs": [job_summary(h) for h in self.runtime.jobs()]}

    async def _job_info(self, params: dict[str, Any], conn: _Connection, request_id: Any) -> Any:
        await trio.lowlevel.checkpoint()
        return job_description(self._job(params, "job"))

    async def _watch(self, params: dict[str, Any], conn: _Connection, request_id: Any) -> Any:
        watch = self.runtime.job_watch
        watcher = watch.open()
        try:
            with conn.subscription():
                await conn.send({"method": "changed", "params": {"id": request_id, "jobs": []}})  # watching
                async for changed in watcher:
                    jobs = None if changed is None else sorted(changed)
                    await conn.send({"method": "changed", "params": {"id": request_id, "jobs": jobs}})
        finally:
            watch.close(watcher)
        return {}

    async def _state(self, params: dict[str, Any], conn: _Connection, request_id: Any) -> Any:
        await trio.lowlevel.checkpoint()
        return {"state": self._job(params, "state").state.value}

    async def _stats(self, params: dict[str, Any], conn: _Connection, request_id: Any) -> Any:
        await trio.lowlevel.checkpoint()
        return {"pid": os.getpid(), "runtime_id": self.runtime.id, **attrs.asdict(self.runtime.stats())}


async def serve_control(runtime: Runtime, services: trio.Nursery) -> ControlServer | None:
    """Start ``runtime``'s control endpoint in its service nursery (a warning, and none, if it
    cannot be)."""
    try:
        path = socket_path(getattr(runtime.store, "path", None), runtime.id)
        server = ControlServer(runtime, path)
        await services.start(server.serve)
    except OSError as exc:
        _log.warning("control_endpoint_unavailable", error=str(exc))
        return None
    return server
