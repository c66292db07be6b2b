"""The errors of a JSON-RPC connection: a broken peer, and one refused request."""

from __future__ import annotations

from typing import Any

__all__ = ["INTERNAL_ERROR", "INVALID_PARAMS", "METHOD_NOT_FOUND", "MethodNotFound",
           "ProtocolError", "RemoteError"]

#: JSON-RPC 2.0 error code: the method does not exist.
METHOD_NOT_FOUND = -32601
#: JSON-RPC 2.0 error code: invalid method parameters.
INVALID_PARAMS = -32602
#: JSON-RPC 2.0 error code: internal error while handling a request.
INTERNAL_ERROR = -32603


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
