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
import json
import math
from collections.abc import Awaitable, Callable
from typing import Any

import attrs
import trio

from ..log import get_logger

__all__ = [
    "INTERNAL_ERROR",
    "INVALID_PARAMS",
    "METHOD_NOT_FOUND",
    "JsonRpcConnection",
    "MethodNotFound",
    "ProtocolError",
    "RemoteError",
]

#: JSON-RPC 2.0 error code: the method does not exist.
METHOD_NOT_FOUND = -32601
#: JSON-RPC 2.0 error code: invalid method parameters.
INVALID_PARAMS = -32602
#: JSON-RPC 2.0 error code: internal error while handling a request.
INTERNAL_ERROR = -32603

_PREVIEW_CHARS = 40
_READ_CHUNK = 64 * 1024
# Ids of requests given up on (cancelled or timed out) whose late answers are
# ignored rather than treated as "unknown response id"; oldest forgotten first.
_MAX_ABANDONED_IDS = 1024

Handler = Callable[[str, Any], Awaitable[Any]]
NotificationHandler = Callable[[str, Any], Awaitable[None] | None]


class ProtocolError(Exception):
    """The connection to the peer is broken and unusable.

    Raised for a malformed line, a line over the size limit, a message that is
    not valid JSON-RPC 2.0, a response to an unknown id, EOF, or a failed write.
    The message names the cause, e.g. ``agent sent a line that is not JSON
    (line 3: 'garbage'): Expecting value: line 1 column 1 (char 0)``.
    """


class RemoteError(Exception):
    """A JSON-RPC error response: the peer refused or failed one request.

    Raise it from a request handler to answer with that error; it is raised by
    :meth:`JsonRpcConnection.request` when the peer answers with an error. The
    connection itself stays usable.
    """

    def __init__(self, code: int, message: str, data: Any = None) -> None:
        super().__init__(code, message, data)
        #: The JSON-RPC error code.
        self.code: int = code
        #: The human-readable error message.
        self.message: str = message
        #: Optional structured detail (``None`` when absent).
        self.data: Any = data

    def __str__(self) -> str:
        return f"{self.message} (JSON-RPC error {self.code})"

    def to_error_object(self) -> dict[str, Any]:
        """Return the ``error`` member of a JSON-RPC response for this error."""
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.data is not None:
            error["data"] = self.data
        return error


class MethodNotFound(RemoteError):
    """JSON-RPC error -32601: the peer does not implement ``method``.

    A request handler raises it for a method it does not know; ``request()``
    raises it when the peer answers -32601.
    """

    def __init__(self, method: str, message: str | None = None, data: Any = None) -> None:
        super().__init__(
            METHOD_NOT_FOUND,
            message if message is not None else f"method not found: {method!r}",
            data if data is not None else {"method": method},
        )
        #: The method that was not found.
        self.method: str = method


@attrs.define
class _Pending:
    """One outgoing request waiting for its answer."""

    method: str
    done: trio.Event = attrs.field(factory=trio.Event)
    result: Any = None
    error: BaseException | None = None


def _preview(line: bytes | str) -> str:
    text = line.decode("utf-8", "replace") if isinstance(line, bytes) else line
    if len(text) > _PREVIEW_CHARS:
        text = text[:_PREVIEW_CHARS] + "..."
    return repr(text)


def _encode(message: dict[str, Any]) -> bytes:
    return (
        json.dumps(message, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode(
            "utf-8"
        )
        + b"\n"
    )


def _is_id(value: Any) -> bool:
    return (isinstance(value, int) and not isinstance(value, bool)) or isinstance(value, str)


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
        params: Any = None,
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
        data = _encode(message)
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

    async def notify(self, method: str, params: Any = None) -> None:
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
        await self._write(_encode(message))

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
                f"({_preview(partial)}){waiting}"
            )
        return ProtocolError(f"{self._name} closed its output (EOF){waiting}")

    async def _dispatch(self, line: bytes, line_number: int, nursery: trio.Nursery) -> None:
        try:
            message = json.loads(line)
        except ValueError as exc:
            raise ProtocolError(
                f"{self._name} sent a line that is not JSON (line {line_number}: "
                f"{_preview(line)}): {exc}"
            ) from None

        def bad(what: str) -> ProtocolError:
            return ProtocolError(
                f"{self._name} sent an invalid JSON-RPC message (line {line_number}: "
                f"{_preview(line)}): {what}"
            )

        if isinstance(message, list):
            raise bad("batch messages are not supported")
        if not isinstance(message, dict):
            raise bad(f"expected a JSON object, got {type(message).__name__}")
        if message.get("jsonrpc") != "2.0":
            raise bad(f'"jsonrpc" must be "2.0", got {message.get("jsonrpc")!r}')

        if "method" in message:
            method = message["method"]
            if not isinstance(method, str):
                raise bad(f'"method" must be a string, got {type(method).__name__}')
            params = message.get("params")
            if params is not None and not isinstance(params, dict | list):
                raise bad(f'"params" must be an object or an array, got {type(params).__name__}')
            if "id" in message:
                request_id = message["id"]
                if not _is_id(request_id):
                    raise bad(f'request "id" must be a string or an integer, got {request_id!r}')
                nursery.start_soon(self._serve_request, request_id, method, params)
            else:
                await self._deliver_notification(method, params)
            return

        if "id" not in message:
            raise bad('neither "method" nor "id": not a request, notification or response')
        response_id = message["id"]
        has_result = "result" in message
        has_error = "error" in message
        if has_result == has_error:
            raise bad('a response must have exactly one of "result" and "error"')
        error: RemoteError | None = None
        if has_error:
            raw = message["error"]
            if not isinstance(raw, dict):
                raise bad(f'"error" must be an object, got {type(raw).__name__}')
            code, text = raw.get("code"), raw.get("message")
            if not isinstance(code, int) or isinstance(code, bool):
                raise bad(f'"error.code" must be an integer, got {code!r}')
            if not isinstance(text, str):
                raise bad(f'"error.message" must be a string, got {text!r}')
            error = RemoteError(code, text, raw.get("data"))
        if response_id is None:
            if error is not None:
                raise ProtocolError(
                    f"{self._name} reported an error not tied to a request (line {line_number}): "
                    f"{error}"
                )
            raise bad('a response "id" must not be null')
        if not _is_id(response_id):
            raise bad(f'response "id" must be a string or an integer, got {response_id!r}')
        pending = self._pending.pop(response_id, None) if isinstance(response_id, int) else None
        if pending is None:
            if response_id in self._abandoned:
                del self._abandoned[response_id]
                self._log.debug("late answer to an abandoned request ignored", id=response_id)
                return
            raise ProtocolError(
                f"{self._name} sent a response to unknown request id {response_id!r} "
                f"(line {line_number}: {_preview(line)})"
            )
        if error is not None:
            if error.code == METHOD_NOT_FOUND:
                error = MethodNotFound(pending.method, error.message, error.data)
            pending.error = error
        else:
            pending.result = message["result"]
        pending.done.set()

    async def _deliver_notification(self, method: str, params: Any) -> None:
        if self._on_notification is None:
            self._log.debug("notification ignored", method=method)
            return
        try:
            outcome = self._on_notification(method, params)
            if inspect.isawaitable(outcome):
                await outcome
        except Exception:
            self._log.exception("notification callback failed", method=method)

    async def _serve_request(self, request_id: int | str, method: str, params: Any) -> None:
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
            data = _encode(reply)
        except (TypeError, ValueError) as exc:
            self._log.error("request handler returned a non-JSON result", method=method)
            data = _encode(
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
