"""JSON-RPC 2.0 messages on the wire: one line each, read whole or refused whole.

:func:`parse_line` turns one line from the peer into a :class:`Request`, a :class:`Notification`
or a :class:`Response`, or raises a :class:`~actors.acp.ProtocolError` naming the line and what
is wrong with it; :func:`encode` writes one message as one line.
"""

from __future__ import annotations

import json
from typing import Any, TypeAlias

import attrs

from .errors import INVALID_PARAMS, ProtocolError, RemoteError

__all__ = ["Message", "Notification", "Params", "Request", "Response", "encode", "object_params",
           "parse_line", "preview"]

Params: TypeAlias = dict[str, Any] | list[Any] | None
"""The ``params`` of a request or notification: an object, an array, or absent."""

RequestId: TypeAlias = int | str

_PREVIEW_CHARS = 40


@attrs.frozen
class Request:
    """A call the peer expects an answer to."""

    id: RequestId
    method: str
    params: Params


@attrs.frozen
class Notification:
    """A call the peer expects no answer to."""

    method: str
    params: Params


@attrs.frozen
class Response:
    """The peer's answer to one of our requests: a result, or an error."""

    id: RequestId
    result: Any
    error: RemoteError | None


Message: TypeAlias = Request | Notification | Response


def preview(line: bytes | str) -> str:
    """The start of ``line``, quoted, for an error message."""
    text = line.decode("utf-8", "replace") if isinstance(line, bytes) else line
    if len(text) > _PREVIEW_CHARS:
        text = text[:_PREVIEW_CHARS] + "..."
    return repr(text)


def encode(message: dict[str, Any]) -> bytes:
    """One message as one line of compact JSON (``ValueError`` / ``TypeError`` if it is not JSON)."""
    return (
        json.dumps(message, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode(
            "utf-8"
        )
        + b"\n"
    )


def _is_id(value: object) -> bool:
    return (isinstance(value, int) and not isinstance(value, bool)) or isinstance(value, str)


class _Line:
    """One line being read, for the errors that name it."""

    def __init__(self, line: bytes, number: int, peer: str) -> None:
        self.line, self.number, self.peer = line, number, peer

    def bad(self, what: str) -> ProtocolError:
        return ProtocolError(
            f"{self.peer} sent an invalid JSON-RPC message (line {self.number}: "
            f"{preview(self.line)}): {what}"
        )


def parse_line(line: bytes, line_number: int, peer: str) -> Message:
    """Read one line from ``peer``; raise :class:`ProtocolError` unless it is one valid message."""
    try:
        message = json.loads(line)
    except ValueError as exc:
        raise ProtocolError(
            f"{peer} sent a line that is not JSON (line {line_number}: {preview(line)}): {exc}"
        ) from None
    at = _Line(line, line_number, peer)
    if isinstance(message, list):
        raise at.bad("batch messages are not supported")
    if not isinstance(message, dict):
        raise at.bad(f"expected a JSON object, got {type(message).__name__}")
    if message.get("jsonrpc") != "2.0":
        raise at.bad(f'"jsonrpc" must be "2.0", got {message.get("jsonrpc")!r}')
    if "method" in message:
        return _call(message, at)
    if "id" not in message:
        raise at.bad('neither "method" nor "id": not a request, notification or response')
    return _response(message, at)


def _call(message: dict[str, Any], at: _Line) -> Request | Notification:
    method = message["method"]
    if not isinstance(method, str):
        raise at.bad(f'"method" must be a string, got {type(method).__name__}')
    params = message.get("params")
    if params is not None and not isinstance(params, dict | list):
        raise at.bad(f'"params" must be an object or an array, got {type(params).__name__}')
    if "id" not in message:
        return Notification(method, params)
    request_id = message["id"]
    if not _is_id(request_id):
        raise at.bad(f'request "id" must be a string or an integer, got {request_id!r}')
    return Request(request_id, method, params)


def _response(message: dict[str, Any], at: _Line) -> Response:
    response_id = message["id"]
    has_result = "result" in message
    has_error = "error" in message
    if has_result == has_error:
        raise at.bad('a response must have exactly one of "result" and "error"')
    error = _error(message["error"], at) if has_error else None
    if response_id is None:
        if error is not None:
            raise ProtocolError(
                f"{at.peer} reported an error not tied to a request (line {at.number}): {error}"
            )
        raise at.bad('a response "id" must not be null')
    if not _is_id(response_id):
        raise at.bad(f'response "id" must be a string or an integer, got {response_id!r}')
    return Response(response_id, message.get("result"), error)


def _error(raw: object, at: _Line) -> RemoteError:
    if not isinstance(raw, dict):
        raise at.bad(f'"error" must be an object, got {type(raw).__name__}')
    code, text = raw.get("code"), raw.get("message")
    if not isinstance(code, int) or isinstance(code, bool):
        raise at.bad(f'"error.code" must be an integer, got {code!r}')
    if not isinstance(text, str):
        raise at.bad(f'"error.message" must be a string, got {text!r}')
    return RemoteError(code, text, raw.get("data"))


def object_params(method: str, params: Params) -> dict[str, Any]:
    """``params`` of a ``method`` that takes an object; refused with -32602 otherwise."""
    if not isinstance(params, dict):
        raise RemoteError(INVALID_PARAMS, f"{method} params must be an object, got {params!r}")
    return params
