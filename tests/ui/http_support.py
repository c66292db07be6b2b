"""A few raw HTTP/1.1 requests over trio sockets, for the UI tests that run in-process (no
browser): enough to read a page, post an action, and follow an event stream."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlsplit

import trio


class Http:
    """Requests to the UI at ``url`` (as ``serve_ui`` returned it: with its token)."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self.token = parts.query.split("token=", 1)[1] if "token=" in parts.query else ""

    async def _send(self, method: str, path: str, headers: dict[str, str], body: bytes = b"") -> trio.SocketStream:
        stream = await trio.open_tcp_stream(self.host, self.port)
        lines = [f"{method} {path} HTTP/1.1", f"Host: {self.host}:{self.port}", "Connection: close",
                 f"Content-Length: {len(body)}", *(f"{k}: {v}" for k, v in headers.items())]
        await stream.send_all(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
        return stream

    async def request(self, method: str, path: str, *, token: bool | str = True, header_token: bool = False,
                      json_body: Any = None, raw_body: bytes | None = None,
                      headers: dict[str, str] | None = None) -> tuple[int, bytes]:
        """One request; ``(status, body)``.  ``token``: send the page token as ``?token=`` (or the
        given string); ``header_token``: send it in the X-Corral-Token header instead."""
        headers = dict(headers or {})
        if header_token:
            headers["X-Corral-Token"] = self.token
        elif token:
            sep = "&" if "?" in path else "?"
            path = f"{path}{sep}token={self.token if token is True else token}"
        body = raw_body if raw_body is not None else (b"" if json_body is None else json.dumps(json_body).encode())
        if body:
            headers["Content-Type"] = "application/json"
        stream = await self._send(method, path, headers, body)
        data = b""
        async with stream:
            while True:
                head, sep, rest = data.partition(b"\r\n\r\n")
                if sep and _complete(head, rest):
                    break
                chunk = await stream.receive_some()
                if not chunk:
                    break
                data += chunk
        status = int(head.split(b" ", 2)[1])
        if b"transfer-encoding: chunked" in head.lower():
            rest = _unchunk(rest)
        return status, rest

    async def open_stream(self, path: str) -> EventStream:
        sep = "&" if "?" in path else "?"
        stream = await self._send("GET", f"{path}{sep}token={self.token}", {"Accept": "text/event-stream"})
        return EventStream(stream)


def _complete(head: bytes, rest: bytes) -> bool:
    """Whether the body after ``head`` is all there (by its length, or its last chunk)."""
    for line in head.lower().split(b"\r\n"):
        if line.startswith(b"content-length:"):
            return len(rest) >= int(line.split(b":", 1)[1])
    return b"transfer-encoding: chunked" in head.lower() and rest.endswith(b"0\r\n\r\n")


def _unchunk(data: bytes) -> bytes:
    out = b""
    while data:
        size, _, data = data.partition(b"\r\n")
        n = int(size, 16)
        if n == 0:
            break
        out, data = out + data[:n], data[n + 2:]
    return out


class EventStream:
    """A server-sent event stream, message by message: ``(event name, data)``."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self._buffer = b""
        self.status: int | None = None

    async def next(self) -> tuple[str, Any]:
        while True:
            if self.status is None and b"\r\n\r\n" in self._buffer:
                head, _, self._buffer = self._buffer.partition(b"\r\n\r\n")
                self.status = int(head.split(b" ", 2)[1])
            if self.status is not None:
                message = self._message()
                if message is not None:
                    return message
            chunk = await self.stream.receive_some()
            if not chunk:
                raise EOFError("the event stream ended")
            self._buffer += chunk

    def _message(self) -> tuple[str, Any] | None:
        # chunked framing around SSE text: drop the chunk-size lines, keep the text
        text = self._buffer.decode("utf-8", "replace")
        lines = [line for line in text.split("\r\n") if not _is_hex(line)]
        joined = "".join(lines)
        if "\n\n" not in joined:
            return None
        block, _, rest = joined.partition("\n\n")
        self._buffer = rest.encode()
        event, data = "message", None
        for line in block.split("\n"):
            if line.startswith("event: "):
                event = line[7:]
            elif line.startswith("data: "):
                data = json.loads(line[6:])
        if data is None and event == "message":
            return self._message()  # a comment (": watching")
        return event, data

    async def aclose(self) -> None:
        await self.stream.aclose()


def _is_hex(line: str) -> bool:
    return bool(line) and all(c in "0123456789abcdefABCDEF" for c in line)
