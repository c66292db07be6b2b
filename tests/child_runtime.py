"""A runtime in a child process, for the tests that SIGKILL one.

The child runs a script that prints one JSON line once it holds what the test needs (a job in an
agent's turn, a terminal, an MCP server, ...).  :func:`child_runtime` yields that line parsed;
:func:`sigkill` then kills the child with no teardown at all, as an OOM killer would.  The child
is killed (by its pid) on the way out if it is still there.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import trio

ROOT = Path(__file__).resolve().parents[1]


@asynccontextmanager
async def child_runtime(argv: Sequence[str], *, env: Mapping[str, str] | None = None,
                        bound: float = 60) -> AsyncIterator[tuple[trio.Process, dict[str, Any]]]:
    """Start ``argv`` (the repository and tests/ on ``PYTHONPATH``) and wait for its first stdout line."""
    environ = {**os.environ, **(env or {})}
    environ["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(ROOT / "tests"), environ.get("PYTHONPATH", "")])
    proc = await trio.lowlevel.open_process(list(argv), stdout=subprocess.PIPE, env=environ, cwd=ROOT)
    assert proc.stdout is not None
    try:
        line = b""
        with trio.fail_after(bound):
            while not line.endswith(b"\n"):
                chunk = await proc.stdout.receive_some()
                assert chunk, "the child runtime ended before it said it was ready"
                line += chunk
        yield proc, json.loads(line)
    finally:
        with trio.CancelScope(shield=True):
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
            await proc.stdout.aclose()


async def sigkill(proc: trio.Process) -> None:
    """SIGKILL the child runtime and reap it."""
    proc.send_signal(signal.SIGKILL)
    await proc.wait()
