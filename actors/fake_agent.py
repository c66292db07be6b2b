"""A scripted ACP agent over stdio, for demos and tests (stdlib only).

Run it as ``python -m actors.fake_agent [options]`` (or by file path). It speaks
ACP protocolVersion 1 as newline-delimited JSON-RPC 2.0 on stdin/stdout:
``initialize``, ``session/new`` (any number of sessions), ``session/prompt`` and
the ``session/cancel`` notification; any other request gets -32601. It exits
when stdin reaches EOF. Diagnostics go to stderr, never to stdout.

By default a prompt is echoed back as ``agent_message_chunk`` updates of
``--chunk-size`` characters, ``--delay`` seconds apart, and the turn ends with
stopReason ``end_turn`` (``cancelled`` if a ``session/cancel`` arrives first).

Behaviours are chosen by a flag for every prompt, or by a directive written in
one prompt's text (directives are removed from the echoed text):

=====================  ========================  ================================================
flag                   directive                 behaviour
=====================  ========================  ================================================
``--tools``            ``[[tools]]``             first one agent_thought_chunk, then a tool_call
                                                 and its tool_call_update (completed)
``--slow``             ``[[slow]]``              stream ``tick N`` chunks forever until
                                                 session/cancel, then stopReason ``cancelled``
``--crash``            ``[[crash]]``             exit with status 3 after two chunks
``--garbage``          ``[[garbage]]``           write a line that is not JSON after one chunk
``--oversized``        ``[[oversized]]``         write one valid JSON line larger than
                                                 ``--oversized-bytes`` (default 2 MiB)
``--eof``              ``[[eof]]``               close stdout and exit (status 0) after one chunk
``--fs-escape``        ``[[fs-escape]]``         fs/read_text_file ``../../etc/passwd``; report
``--fs-write PATH``    ``[[fs-write:PATH]]``     fs/write_text_file PATH; report
(none)                 ``[[fs-read:PATH]]``      fs/read_text_file PATH (``PATH:LINE:LIMIT`` for
                                                 a line range); report the content
``--permission``       ``[[permission]]``        session/request_permission with the four option
                                                 kinds; report the outcome
(none)                 ``[[unknown-method]]``    send a request the client does not implement;
                                                 report the error
=====================  ========================  ================================================

A report is one agent_message_chunk: ``fs read ok: <content>``, ``fs write ok: PATH``,
``fs error <code>: <message>``, ``permission: selected <optionId>``,
``permission: cancelled`` or ``error <code>: <message>``.

Process-shape flags (applied once at start, before serving):

- ``--ignore-sigterm``: set SIGTERM to SIG_IGN (in every ``--wrap`` generation).
- ``--grandchild``: spawn a sleeping child process.
- ``--grandchild-ignore-term``: spawn a sleeping child that ignores SIGTERM.
- ``--setsid-child``: spawn a child that calls ``os.setsid()`` (leaves the
  process group) and sleeps.
- ``--wrap N``: act like ``npm exec`` -> node -> CLI: re-run this program with
  ``--wrap N-1`` as a child with inherited stdio, wait for it and exit with its
  status; generation 0 is the agent. ``--wrap 2`` is a 3-process chain. Like
  the real thing, a wrapper killed by a signal leaves its child running.

Spawned children inherit the environment (so a marker variable propagates) and
stdio, sleep ``--child-sleep`` seconds (default 300), and are running (their
signal disposition and session set) before the agent answers anything.

``--log PATH`` appends every received message to PATH as one JSON line, so a
test can see what reached the agent (for instance ``session/cancel``).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import threading
from typing import Any

PROTOCOL_VERSION = 1
_DIRECTIVE = re.compile(r"\[\[([a-z-]+)(?::([^\]]*))?\]\]")
_BOOLEAN_BEHAVIOURS = (
    "tools",
    "slow",
    "crash",
    "garbage",
    "oversized",
    "eof",
    "fs-escape",
    "permission",
)
_CHILD_SCRIPTS = {
    "grandchild": "",
    "grandchild-ignore-term": "signal.signal(signal.SIGTERM, signal.SIG_IGN)",
    "setsid-child": "os.setsid()",
}


def _child_code(setup: str) -> str:
    return (
        "import os, signal, sys, time\n"
        f"{setup}\n"
        "ready = int(sys.argv[1])\n"
        "os.write(ready, b'x')\n"
        "os.close(ready)\n"
        "time.sleep(float(sys.argv[2]))\n"
    )


def _warn(text: str) -> None:
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
                waiter = self._waiting.pop(message.get("id"), None)  # type: ignore[arg-type]
            if waiter is not None:
                waiter[1].append(message)
                waiter[0].set()
            return
        request_id = message.get("id")
        if method == "session/cancel":
            turn = self._sessions.get(params.get("sessionId"))
            if turn is not None:
                turn.cancelled.set()
            return
        if request_id is None:
            return
        if method == "initialize":
            self._reply(
                request_id,
                {
                    "protocolVersion": PROTOCOL_VERSION,
                    "agentCapabilities": {
                        "loadSession": False,
                        "promptCapabilities": {
                            "image": False,
                            "audio": False,
                            "embeddedContext": False,
                        },
                    },
                    "authMethods": [],
                    "agentInfo": {"name": "corral-fake-agent", "version": "0.1.0"},
                },
            )
        elif method == "session/new":
            session_id = f"fake-session-{len(self._sessions) + 1}"
            self._sessions[session_id] = None
            self._reply(request_id, {"sessionId": session_id})
        elif method == "session/prompt":
            session_id = params.get("sessionId")
            if session_id not in self._sessions:
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
            for name in _BOOLEAN_BEHAVIOURS
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
        options = self.options
        chosen = self._behaviours(text)
        echo = _DIRECTIVE.sub("", text)

        def finish(stop_reason: str) -> None:
            self._reply(request_id, {"stopReason": stop_reason})

        if "tools" in chosen:
            self.update(
                session_id,
                {
                    "sessionUpdate": "agent_thought_chunk",
                    "content": {"type": "text", "text": "thinking about it"},
                },
            )
            self.update(
                session_id,
                {
                    "sessionUpdate": "tool_call",
                    "toolCallId": "call-1",
                    "title": "Looking around",
                    "kind": "read",
                    "status": "pending",
                },
            )
            self.update(
                session_id,
                {
                    "sessionUpdate": "tool_call_update",
                    "toolCallId": "call-1",
                    "status": "completed",
                    "content": [{"type": "content", "content": {"type": "text", "text": "looked"}}],
                },
            )
        if "fs-escape" in chosen:
            response = self.request(
                "fs/read_text_file", {"sessionId": session_id, "path": "../../etc/passwd"}
            )
            result = response.get("result") or {}
            self._report(session_id, response, f"fs read ok: {result.get('content', '')}")
        if chosen.get("fs-read"):
            path, *numbers = (chosen["fs-read"] or "").split(":")
            params: dict[str, Any] = {"sessionId": session_id, "path": path}
            if numbers:
                params["line"] = int(numbers[0])
            if len(numbers) > 1:
                params["limit"] = int(numbers[1])
            response = self.request("fs/read_text_file", params)
            result = response.get("result") or {}
            self._report(session_id, response, f"fs read ok: {result.get('content', '')}")
        if chosen.get("fs-write"):
            path = chosen["fs-write"] or ""
            response = self.request(
                "fs/write_text_file",
                {"sessionId": session_id, "path": path, "content": options.write_content},
            )
            self._report(session_id, response, f"fs write ok: {path}")
        if "permission" in chosen:
            response = self.request(
                "session/request_permission",
                {
                    "sessionId": session_id,
                    "toolCall": {
                        "toolCallId": "call-perm",
                        "title": "Edit a file",
                        "kind": "edit",
                        "status": "pending",
                    },
                    "options": [
                        {"optionId": "allow-once", "name": "Allow", "kind": "allow_once"},
                        {"optionId": "allow-always", "name": "Always", "kind": "allow_always"},
                        {"optionId": "reject-once", "name": "Reject", "kind": "reject_once"},
                        {"optionId": "reject-always", "name": "Never", "kind": "reject_always"},
                    ],
                },
            )
            outcome = (response.get("result") or {}).get("outcome") or {}
            if outcome.get("outcome") == "selected":
                self._report(
                    session_id, response, f"permission: selected {outcome.get('optionId')}"
                )
            else:
                self._report(session_id, response, "permission: cancelled")
        if "unknown-method" in chosen:
            response = self.request("corral/no_such_method", {"sessionId": session_id})
            self._report(session_id, response, f"unexpected success: {response.get('result')!r}")

        if "crash" in chosen:
            self.say(session_id, "about to ")
            self.say(session_id, "crash")
            os._exit(3)
        if "garbage" in chosen:
            self.say(session_id, "here comes garbage")
            self.write_raw(b"this line is not JSON at all\n")
        if "oversized" in chosen:
            self.say(session_id, "x" * options.oversized_bytes)
        if "eof" in chosen:
            self.say(session_id, "closing stdout")
            with self._write_lock:
                self._out.flush()
                os.close(sys.stdout.fileno())
            os._exit(0)
        if "slow" in chosen:
            tick = 0
            while not turn.cancelled.wait(options.delay):
                self.say(session_id, f"tick {tick} ")
                tick += 1
            finish("cancelled")
            return

        size = max(1, options.chunk_size)
        for start in range(0, len(echo), size):
            if turn.cancelled.is_set():
                finish("cancelled")
                return
            self.say(session_id, echo[start : start + size])
            if options.delay and start + size < len(echo):
                turn.cancelled.wait(options.delay)
        finish("cancelled" if turn.cancelled.is_set() else "end_turn")


def _spawn_child(kind: str, sleep_seconds: float) -> None:
    ready_read, ready_write = os.pipe()
    child = subprocess.Popen(
        [
            sys.executable,
            "-c",
            _child_code(_CHILD_SCRIPTS[kind]),
            str(ready_write),
            str(sleep_seconds),
        ],
        pass_fds=(ready_write,),
    )
    os.close(ready_write)
    os.read(ready_read, 1)  # the child is set up (signal, session) before we go on
    os.close(ready_read)
    _warn(f"spawned {kind} pid {child.pid}")


def _without_wrap(argv: list[str]) -> list[str]:
    kept: list[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "--wrap":
            skip = True
        elif not arg.startswith("--wrap="):
            kept.append(arg)
    return kept


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m actors.fake_agent", description="A scripted ACP agent over stdio."
    )
    parser.add_argument("--chunk-size", type=int, default=8, help="characters per echoed chunk")
    parser.add_argument("--delay", type=float, default=0.005, help="seconds between chunks")
    for name in _BOOLEAN_BEHAVIOURS:
        parser.add_argument(f"--{name}", action="store_true", help=f"{name} on every prompt")
    parser.add_argument(
        "--fs-write", metavar="PATH", help="fs/write_text_file PATH on every prompt"
    )
    parser.add_argument("--write-content", default="written by the fake agent\n")
    parser.add_argument("--oversized-bytes", type=int, default=2 * 1024 * 1024)
    parser.add_argument("--ignore-sigterm", action="store_true")
    for kind in _CHILD_SCRIPTS:
        parser.add_argument(f"--{kind}", action="store_true", help=f"spawn a {kind} at start")
    parser.add_argument("--child-sleep", type=float, default=300.0)
    parser.add_argument("--wrap", type=int, default=0, metavar="N")
    parser.add_argument("--log", metavar="PATH", help="append every received message here")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the fake agent (or one wrapper generation); return the exit status."""
    argv = sys.argv[1:] if argv is None else argv
    options = _parser().parse_args(argv)
    if options.ignore_sigterm:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if options.wrap > 0:
        command = [
            sys.executable,
            os.path.abspath(__file__),
            *_without_wrap(argv),
            "--wrap",
            str(options.wrap - 1),
        ]
        status = subprocess.call(command)
        return status if status >= 0 else 128 - status
    for kind in _CHILD_SCRIPTS:
        if getattr(options, kind.replace("-", "_")):
            _spawn_child(kind, options.child_sleep)
    return FakeAgent(options).serve()


if __name__ == "__main__":
    sys.exit(main())
