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
import os
import signal
import subprocess
import sys

if not __package__:  # run by file path (the demo, every --wrap generation): see PEP 366
    sys.path.insert(1, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    __package__ = "actors"

from ._fake_acp import BOOLEAN_BEHAVIOURS, PROTOCOL_VERSION, FakeAgent, warn

__all__ = ["PROTOCOL_VERSION", "FakeAgent", "main"]

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
    warn(f"spawned {kind} pid {child.pid}")


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
    for name in BOOLEAN_BEHAVIOURS:
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
