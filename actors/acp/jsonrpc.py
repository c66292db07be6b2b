"""JSON-RPC 2.0 over newline-delimited byte streams (an agent's stdio).

One :class:`JsonRpcConnection` owns a pair of trio byte streams. Its :meth:`run`
task reads one JSON message per line, answers incoming requests concurrently in
its own nursery, and funnels every outgoing line through a single writer task, so
lines are never interleaved and a cancelled sender never leaves half a line on
the wire.

A broken peer is refused whole: a line that is not JSON, a line over the size
limit, a message with a bad JSON-RPC shape, a response to an unknown id, or EOF
ends the connection with a :class:`ProtocolError` naming the line and what was
wrong. Every pending request fails with it, later calls raise it, and ``run()``
returns instead of raising or hanging.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Awaitable, Callable
from typing import Any, TypeAlias

import attrs
import trio

from ..log import get_logger
from .errors import INTERNAL_ERROR as INTERNAL_ERROR
from .errors import INVALID_PARAMS as INVALID_PARAMS
from .errors import METHOD_NOT_FOUND as METHOD_NOT_FOUND
from .errors import MethodNotFound as MethodNotFound
from .errors import ProtocolError as ProtocolError
from .errors import RemoteError as RemoteError
from .messages import Notification, Params, Request, Response, encode, parse_line, preview

__all__ = [
    "INTERNAL_ERROR",
    "INVALID_PARAMS",
    "METHOD_NOT_FOUND",
    "Handler",
    "JsonRpcConnection",
    "MethodNotFound",
    "NotificationHandler",
    "ProtocolError",
    "RemoteError",
]

_READ_CHUNK = 64 * 1024
# Ids of requests given up on (cancelled or timed out) whose late answers are
# ignored rather than treated as "unknown response id"; oldest forgotten first.
_MAX_ABANDONED_IDS = 1024

Handler: TypeAlias = Callable[[str, Params], Awaitable[Any]]
"""Answers one incoming request: ``await handler(method, params)`` returns the result."""
NotificationHandler: TypeAlias = Callable[[str, Params], Awaitable[None] | None]
"""Called with each incoming notification, ``(method, params)``; sync or async."""


@attrs.define
class _Pending:
    """One outgoing request waiting for its answer."""

    method: str
    done: trio.Event = attrs.field(factory=trio.Event)
    result: Any = None
    error: BaseException | None = None


class JsonRpcConnection:
    """A JSON-RPC 2.0 peer over newline-delimited JSON on a pair of trio byte streams.

    Args:
        send_stream: where outgoing lines are written (the peer's stdin).
        receive_stream: where incoming lines are read (the peer's stdout).
        handler: ``await handler(method, params)`` answers an incoming request;
            its return value is the result. Raise :class:`RemoteError` to answer
            with an error, :class:`MethodNotFound` for an unknown method; any
            other exception becomes -32603. ``None`` answers every request -32601.
        on_notification: called as ``on_notification(method, params)`` for each
            incoming notification, in arrival order, from the reader task (it may
            be sync or async; while it runs, nothing else is read). Exceptions
            are logged and the connection carries on.
        max_line_bytes: longest line accepted from the peer.
        request_timeout: default seconds to wait for an answer (``None``: forever).
        name: what to call the peer in error messages and logs.

    :meth:`run` must be running (``await nursery.start(conn.run)``) for
    :meth:`request` and :meth:`notify` to make progress.
    """

    def __init__(
        self,
        send_stream: trio.abc.SendStream,
        receive_stream: trio.abc.ReceiveStream,
        *,
        handler: Handler | None = None,
        on_notification: NotificationHandler | None = None,
        max_line_bytes: int = 1 << 20,
        request_timeout: float | None = None,
        name: str = "peer",
    ) -> None:
        if max_line_bytes < 1:
            raise ValueError(f"max_line_bytes must be positive, got {max_line_bytes}")
        self._send_stream = send_stream
        self._receive_stream = receive_stream
        self._handler = handler
        self._on_notification = on_notification
        self._max_line_bytes = max_line_bytes
        self._request_timeout = request_timeout
        self._name = name
        self._log = get_logger(__name__).bind(peer=name)
        self._next_id = 1
        self._pending: dict[int, _Pending] = {}
        self._abandoned: dict[int, None] = {}
        self._outbox_send, self._outbox_receive = trio.open_memory_channel[bytes](0)
        self._started = False
        #: Why the connection ended, once it has (``None`` while it is usable).
        self.closed_error: ProtocolError | None = None

    # ------------------------------------------------------------------ public

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Serve the connection until EOF, a protocol violation or cancellation.

        Reports started once the reader and writer are running. On EOF or a
        violation it records :attr:`closed_error`, fails every pending request,
        cancels in-flight handlers and returns; it never raises a protocol
        error. May be called once.
        """
        if self._started:
            raise RuntimeError("JsonRpcConnection.run() may only be called once")
        self._started = True
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._write_loop, nursery.cancel_scope)
                task_status.started()
                try:
                    await self._read_loop(nursery)
                except ProtocolError as exc:
                    self._close(exc)
                nursery.cancel_scope.cancel()
        finally:
            self._close(ProtocolError(f"connection to {self._name} was closed"))
            self._outbox_send.close()
            self._outbox_receive.close()

    async def request(
        self,
        method: str,
        params: Params = None,
        *,
        timeout: float | None = None,  # noqa: ASYNC109 - abandons the id, not just a deadline
    ) -> Any:
        """Send a request and return the peer's result.

        ``timeout`` overrides the connection's ``request_timeout`` (``math.inf``
        waits forever). Raises :class:`RemoteError` (or :class:`MethodNotFound`)
        for an error answer, :class:`ProtocolError` if the connection is or
        becomes broken, and :class:`trio.TooSlowError` on timeout. A request that
        is cancelled or times out is abandoned: its late answer is ignored.
        """
        if not isinstance(method, str):
            raise TypeError(f"method must be a str, got {type(method).__name__}")
        if timeout is None:
            timeout = self._request_timeout if self._request_timeout is not None else math.inf
        self._raise_if_closed()
        request_id = self._next_id
        self._next_id += 1
        message: dict[str, Any] = {"jsonrpc": "2.0", "id": request_id, "method": method}
        if params is not None:
            message["params"] = params
        data = encode(message)
        pending = _Pending(method)
        self._pending[request_id] = pending
        sent = False
        try:
            with trio.move_on_after(timeout):
                await self._write(data)
                sent = True
                await pending.done.wait()
        finally:
            if not pending.done.is_set():
                self._pending.pop(request_id, None)
                if sent:
                    self._abandon(request_id)
        if not pending.done.is_set():
            raise trio.TooSlowError(
                f"{self._name} did not answer {method!r} (request id {request_id}) "
                f"within {timeout:g}s"
            )
        if isinstance(pending.error, ProtocolError):
            raise ProtocolError(str(pending.error)) from pending.error
        if pending.error is not None:
            raise pending.error
        return pending.result

    async def notify(self, method: str, params: Params = None) -> None:
        """Send a notification (no answer expected).

        Returns once the writer has taken the line. Raises :class:`ProtocolError`
        if the connection is broken.
        """
        if not isinstance(method, str):
            raise TypeError(f"method must be a str, got {type(method).__name__}")
        self._raise_if_closed()
        message: dict[str, Any] = {"jsonrpc": "2.0", "method": method}
        if params is not None:
            message["params"] = params
        await self._write(encode(message))

    async def flush(self) -> None:
        """Return once every line handed to the writer before this call has been written."""
        await self._write(b"")  # the writer takes it only after finishing the previous line

    # ----------------------------------------------------------------- writing

    def _raise_if_closed(self) -> None:
        if self.closed_error is not None:
            raise ProtocolError(str(self.closed_error)) from self.closed_error

    async def _write(self, data: bytes) -> None:
        try:
            await self._outbox_send.send(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            self._raise_if_closed()
            raise ProtocolError(f"connection to {self._name} was closed") from None

    async def _write_loop(self, scope: trio.CancelScope) -> None:
        try:
            async for data in self._outbox_receive:
                if data:
                    await self._send_stream.send_all(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
            self._close(ProtocolError(f"writing to {self._name} failed: {exc!r}"))
            scope.cancel()
        finally:
            # A sender blocked on the hand-off gets BrokenResourceError, never a hang.
            self._outbox_receive.close()

    # ----------------------------------------------------------------- reading

    async def _read_loop(self, nursery: trio.Nursery) -> None:
        buffer = bytearray()
        scan_from = 0
        line_number = 0
        while True:
            newline = buffer.find(b"\n", scan_from)
            if newline < 0:
                if len(buffer) > self._max_line_bytes + 1:  # + 1: room for a CR before the LF
                    raise self._too_long(line_number + 1)
                scan_from = len(buffer)
                try:
                    chunk = await self._receive_stream.receive_some(_READ_CHUNK)
                except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
                    raise ProtocolError(f"reading from {self._name} failed: {exc!r}") from exc
                if not chunk:
                    raise self._eof_error(line_number, bytes(buffer))
                buffer += chunk
                continue
            line = bytes(buffer[:newline]).removesuffix(b"\r")
            del buffer[: newline + 1]
            scan_from = 0
            line_number += 1
            if len(line) > self._max_line_bytes:
                raise self._too_long(line_number)
            if line.strip():
                await self._dispatch(line, line_number, nursery)

    def _too_long(self, line_number: int) -> ProtocolError:
        return ProtocolError(
            f"{self._name} sent a line longer than the {self._max_line_bytes}-byte limit "
            f"(line {line_number})"
        )

    def _eof_error(self, line_number: int, partial: bytes) -> ProtocolError:
        if self._pending:
            methods = ", ".join(sorted({repr(p.method) for p in self._pending.values()}))
            waiting = (
                f" while {len(self._pending)} request(s) were waiting for an answer ({methods})"
            )
        else:
            waiting = ""
        if partial.strip():
            return ProtocolError(
                f"{self._name} closed its output (EOF) in the middle of line {line_number + 1} "
                f"({preview(partial)}){waiting}"
            )
        return ProtocolError(f"{self._name} closed its output (EOF){waiting}")

    async def _dispatch(self, line: bytes, line_number: int, nursery: trio.Nursery) -> None:
        message = parse_line(line, line_number, self._name)
        if isinstance(message, Request):
            nursery.start_soon(self._serve_request, message.id, message.method, message.params)
        elif isinstance(message, Notification):
            await self._deliver_notification(message.method, message.params)
        else:
            self._resolve(message, line, line_number)

    def _resolve(self, response: Response, line: bytes, line_number: int) -> None:
        """Hand ``response`` to the request waiting for it."""
        response_id = response.id
        pending = self._pending.pop(response_id, None) if isinstance(response_id, int) else None
        if pending is None:
            if response_id in self._abandoned:
                del self._abandoned[response_id]
                self._log.debug("late answer to an abandoned request ignored", id=response_id)
                return
            raise ProtocolError(
                f"{self._name} sent a response to unknown request id {response_id!r} "
                f"(line {line_number}: {preview(line)})"
            )
        error = response.error
        if error is not None:
            if error.code == METHOD_NOT_FOUND:
                error = MethodNotFound(pending.method, error.message, error.data)
            pending.error = error
        else:
            pending.result = response.result
        pending.done.set()

    async def _deliver_notification(self, method: str, params: Params) -> None:
        if self._on_notification is None:
            self._log.debug("notification ignored", method=method)
            return
        try:
            outcome = self._on_notification(method, params)
            if inspect.isawaitable(outcome):
                await outcome
        except Exception:
            self._log.exception("notification callback failed", method=method)

    async def _serve_request(self, request_id: int | str, method: str, params: Params) -> None:
        reply: dict[str, Any] = {"jsonrpc": "2.0", "id": request_id}
        try:
            if self._handler is None:
                raise MethodNotFound(method)
            reply["result"] = await self._handler(method, params)
        except RemoteError as exc:
            reply["error"] = exc.to_error_object()
        except Exception as exc:
            self._log.exception("request handler failed", method=method)
            reply["error"] = {
                "code": INTERNAL_ERROR,
                "message": f"internal error while handling {method!r}: {exc!r}",
            }
        try:
            data = encode(reply)
        except (TypeError, ValueError) as exc:
            self._log.error("request handler returned a non-JSON result", method=method)
            data = encode(
                {
                    "jsonrpc": "2.0",
                    "id": request_id,
                    "error": {
                        "code": INTERNAL_ERROR,
                        "message": f"result of {method!r} is not JSON-serialisable: {exc}",
                    },
                }
            )
        try:
            await self._write(data)
        except ProtocolError:
            self._log.debug("answer dropped: connection closed", method=method)

    # ---------------------------------------------------------------- closing

    def _abandon(self, request_id: int) -> None:
        self._abandoned[request_id] = None
        while len(self._abandoned) > _MAX_ABANDONED_IDS:
            del self._abandoned[next(iter(self._abandoned))]

    def _close(self, error: ProtocolError) -> None:
        if self.closed_error is not None:
            return
        self.closed_error = error
        self._log.info("connection closed", reason=str(error))
        pending, self._pending = self._pending, {}
        self._abandoned.clear()
        for waiter in pending.values():
            waiter.error = error
            waiter.done.set()
