"""The scripted ACP agent behind :mod:`actors.fake_agent`: the wire, the sessions, the turns.

Stdlib only, like its entry point: an agent process must not load trio or structlog. Each prompt
turn runs on a thread of its own; what it does is chosen by the entry point's flags or by
``[[directive]]`` words in the prompt (the table in :mod:`actors.fake_agent`).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import threading
from typing import Any

__all__ = ["BOOLEAN_BEHAVIOURS", "FakeAgent", "warn"]

PROTOCOL_VERSION = 1
_DIRECTIVE = re.compile(r"\[\[([a-z-]+)(?::([^\]]*))?\]\]")
BOOLEAN_BEHAVIOURS = (
    "tools",
    "slow",
    "crash",
    "garbage",
    "oversized",
    "eof",
    "fs-escape",
    "permission",
)
# What the agent answers to initialize, sends for --tools, and offers with --permission.
_INITIALIZE_RESULT = {
    "protocolVersion": PROTOCOL_VERSION,
    "agentCapabilities": {
        "loadSession": False,
        "promptCapabilities": {"image": False, "audio": False, "embeddedContext": False},
    },
    "authMethods": [],
    "agentInfo": {"name": "corral-fake-agent", "version": "0.1.0"},
}
_TOOL_UPDATES = (
    {
        "sessionUpdate": "agent_thought_chunk",
        "content": {"type": "text", "text": "thinking about it"},
    },
    {
        "sessionUpdate": "tool_call",
        "toolCallId": "call-1",
        "title": "Looking around",
        "kind": "read",
        "status": "pending",
    },
    {
        "sessionUpdate": "tool_call_update",
        "toolCallId": "call-1",
        "status": "completed",
        "content": [{"type": "content", "content": {"type": "text", "text": "looked"}}],
    },
)
_PERMISSION_TOOL_CALL = {
    "toolCallId": "call-perm", "title": "Edit a file", "kind": "edit", "status": "pending",
}
_PERMISSION_OPTIONS = (
    {"optionId": "allow-once", "name": "Allow", "kind": "allow_once"},
    {"optionId": "allow-always", "name": "Always", "kind": "allow_always"},
    {"optionId": "reject-once", "name": "Reject", "kind": "reject_once"},
    {"optionId": "reject-always", "name": "Never", "kind": "reject_always"},
)



def warn(text: str) -> None:
    sys.stderr.write(f"fake_agent[{os.getpid()}]: {text}\n")
    sys.stderr.flush()


class _Turn:
    """One prompt turn: its cancel flag."""

    def __init__(self) -> None:
        self.cancelled = threading.Event()


class FakeAgent:
    """The agent: a reader loop on the main thread, one thread per prompt turn."""

    def __init__(self, options: argparse.Namespace) -> None:
        self.options = options
        self._out = sys.stdout.buffer
        self._write_lock = threading.Lock()
        self._state_lock = threading.Lock()
        self._next_request_id = 1
        self._waiting: dict[int, tuple[threading.Event, list[dict[str, Any]]]] = {}
        self._sessions: dict[str, _Turn | None] = {}
        self._log = open(options.log, "a", encoding="utf-8") if options.log else None

    # ----------------------------------------------------------- wire

    def write_raw(self, data: bytes) -> None:
        """Write bytes to stdout as they are, under the write lock."""
        with self._write_lock:
            try:
                self._out.write(data)
                self._out.flush()
            except (BrokenPipeError, ValueError, OSError):
                os._exit(0)  # the client is gone

    def send(self, message: dict[str, Any]) -> None:
        """Write one JSON-RPC message as one line."""
        self.write_raw(json.dumps(message, separators=(",", ":")).encode() + b"\n")

    def request(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        """Send a request to the client and wait for its response message."""
        done = threading.Event()
        box: list[dict[str, Any]] = []
        with self._state_lock:
            request_id = self._next_request_id
            self._next_request_id += 1
            self._waiting[request_id] = (done, box)
        self.send({"jsonrpc": "2.0", "id": request_id, "method": method, "params": params})
        if not done.wait(60):
            return {"error": {"code": -1, "message": f"no answer to {method} within 60s"}}
        return box[0]

    def update(self, session_id: str, update: dict[str, Any]) -> None:
        """Send one session/update notification."""
        self.send(
            {
                "jsonrpc": "2.0",
                "method": "session/update",
                "params": {"sessionId": session_id, "update": update},
            }
        )

    def say(self, session_id: str, text: str) -> None:
        """Send one agent_message_chunk of text."""
        self.update(
            session_id,
            {"sessionUpdate": "agent_message_chunk", "content": {"type": "text", "text": text}},
        )

    # ----------------------------------------------------------- serving

    def serve(self) -> int:
        """Read messages from stdin until EOF."""
        for raw in sys.stdin.buffer:
            if not raw.strip():
                continue
            try:
                message = json.loads(raw)
            except ValueError as exc:
                self.send(
                    {
                        "jsonrpc": "2.0",
                        "id": None,
                        "error": {"code": -32700, "message": f"Parse error: {exc}"},
                    }
                )
                continue
            if self._log is not None:
                self._log.write(json.dumps(message) + "\n")
                self._log.flush()
            if not isinstance(message, dict):
                continue
            self._handle(message)
        return 0

    def _handle(self, message: dict[str, Any]) -> None:
        method = message.get("method")
        params = message.get("params")
        if not isinstance(params, dict):
            params = {}
        if method is None:
            with self._state_lock:
                response_id = message.get("id")
                waiter = (
                    self._waiting.pop(response_id, None) if isinstance(response_id, int) else None
                )
            if waiter is not None:
                waiter[1].append(message)
                waiter[0].set()
            return
        request_id = message.get("id")
        session_id = params.get("sessionId")
        if method == "session/cancel":
            turn = self._sessions.get(session_id) if isinstance(session_id, str) else None
            if turn is not None:
                turn.cancelled.set()
            return
        if request_id is None:
            return
        if method == "initialize":
            self._reply(request_id, _INITIALIZE_RESULT)
        elif method == "session/new":
            new_id = f"fake-session-{len(self._sessions) + 1}"
            self._sessions[new_id] = None
            self._reply(request_id, {"sessionId": new_id})
        elif method == "session/prompt":
            if not isinstance(session_id, str) or session_id not in self._sessions:
                self._error(request_id, -32602, f"unknown session {session_id!r}")
                return
            turn = _Turn()
            self._sessions[session_id] = turn
            text = "".join(
                block.get("text", "")
                for block in params.get("prompt") or []
                if isinstance(block, dict) and block.get("type") == "text"
            )
            threading.Thread(
                target=self._run_turn, args=(request_id, session_id, text, turn), daemon=True
            ).start()
        else:
            self._error(request_id, -32601, f"Method not found: {method}")

    def _reply(self, request_id: Any, result: Any) -> None:
        self.send({"jsonrpc": "2.0", "id": request_id, "result": result})

    def _error(self, request_id: Any, code: int, text: str) -> None:
        self.send({"jsonrpc": "2.0", "id": request_id, "error": {"code": code, "message": text}})

    # ----------------------------------------------------------- a turn

    def _behaviours(self, text: str) -> dict[str, str | None]:
        chosen: dict[str, str | None] = {
            name: None
            for name in BOOLEAN_BEHAVIOURS
            if getattr(self.options, name.replace("-", "_"))
        }
        if self.options.fs_write:
            chosen["fs-write"] = self.options.fs_write
        for match in _DIRECTIVE.finditer(text):
            chosen[match.group(1)] = match.group(2)
        return chosen

    def _report(self, session_id: str, response: dict[str, Any], ok: str) -> None:
        if "error" in response:
            error = response["error"] or {}
            prefix = "fs error" if ok.startswith("fs") else "error"
            self.say(session_id, f"{prefix} {error.get('code')}: {error.get('message')}")
        else:
            self.say(session_id, ok)

    def _run_turn(self, request_id: Any, session_id: str, text: str, turn: _Turn) -> None:
        chosen = self._behaviours(text)
        self._side_requests(session_id, chosen)
        self._break(session_id, chosen)
        if "slow" in chosen:
            stop_reason = self._tick(session_id, turn)
        else:
            stop_reason = self._echo(session_id, _DIRECTIVE.sub("", text), turn)
        self._reply(request_id, {"stopReason": stop_reason})

    def _side_requests(self, session_id: str, chosen: dict[str, str | None]) -> None:
        """Tool updates, then each request to the client that ``chosen`` asks for, reported."""
        if "tools" in chosen:
            for update in _TOOL_UPDATES:
                self.update(session_id, update)
        if "fs-escape" in chosen:
            self._read(session_id, {"path": "../../etc/passwd"})
        if chosen.get("fs-read"):
            path, *numbers = (chosen["fs-read"] or "").split(":")
            params: dict[str, Any] = {"path": path}
            if numbers:
                params["line"] = int(numbers[0])
            if len(numbers) > 1:
                params["limit"] = int(numbers[1])
            self._read(session_id, params)
        if chosen.get("fs-write"):
            path = chosen["fs-write"] or ""
            response = self.request(
                "fs/write_text_file",
                {"sessionId": session_id, "path": path, "content": self.options.write_content},
            )
            self._report(session_id, response, f"fs write ok: {path}")
        if "permission" in chosen:
            self._ask_permission(session_id)
        if "unknown-method" in chosen:
            response = self.request("corral/no_such_method", {"sessionId": session_id})
            self._report(session_id, response, f"unexpected success: {response.get('result')!r}")

    def _read(self, session_id: str, params: dict[str, Any]) -> None:
        response = self.request("fs/read_text_file", {"sessionId": session_id, **params})
        result = response.get("result") or {}
        self._report(session_id, response, f"fs read ok: {result.get('content', '')}")

    def _ask_permission(self, session_id: str) -> None:
        response = self.request(
            "session/request_permission",
            {
                "sessionId": session_id,
                "toolCall": _PERMISSION_TOOL_CALL,
                "options": list(_PERMISSION_OPTIONS),
            },
        )
        outcome = (response.get("result") or {}).get("outcome") or {}
        if outcome.get("outcome") == "selected":
            self._report(session_id, response, f"permission: selected {outcome.get('optionId')}")
        else:
            self._report(session_id, response, "permission: cancelled")

    def _break(self, session_id: str, chosen: dict[str, str | None]) -> None:
        """Crash, write garbage or an oversized line, or close stdout, as ``chosen`` asks."""
        if "crash" in chosen:
            self.say(session_id, "about to ")
            self.say(session_id, "crash")
            os._exit(3)
        if "garbage" in chosen:
            self.say(session_id, "here comes garbage")
            self.write_raw(b"this line is not JSON at all\n")
        if "oversized" in chosen:
            self.say(session_id, "x" * self.options.oversized_bytes)
        if "eof" in chosen:
            self.say(session_id, "closing stdout")
            with self._write_lock:
                self._out.flush()
                os.close(sys.stdout.fileno())
            os._exit(0)

    def _tick(self, session_id: str, turn: _Turn) -> str:
        """Stream ``tick N`` chunks until the turn is cancelled."""
        tick = 0
        while not turn.cancelled.wait(self.options.delay):
            self.say(session_id, f"tick {tick} ")
            tick += 1
        return "cancelled"

    def _echo(self, session_id: str, echo: str, turn: _Turn) -> str:
        """Send ``echo`` back in chunks; the stop reason."""
        size = max(1, self.options.chunk_size)
        for start in range(0, len(echo), size):
            if turn.cancelled.is_set():
                return "cancelled"
            self.say(session_id, echo[start : start + size])
            if self.options.delay and start + size < len(echo):
                turn.cancelled.wait(self.options.delay)
        return "cancelled" if turn.cancelled.is_set() else "end_turn"
