"""Running ``corral`` as a real subprocess (``python -m runtime``) and reading what it prints;
shared by the tests in tests/cli/.  Every run is bounded by a subprocess timeout."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import psutil
import trio

from runtime.store import SqliteStore

REPO = Path(__file__).resolve().parents[2]
PY = sys.executable
CORRAL = [PY, "-m", "runtime"]
BOUND = 60  # seconds: no command here may take longer


def corral(*args: object, cwd: Path = REPO, timeout: float = BOUND) -> subprocess.CompletedProcess[str]:
    """Run ``corral ARGS`` (as ``python -m runtime``) to completion."""
    return subprocess.run([*CORRAL, *map(str, args)], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, check=False)


def json_lines(text: str) -> list[dict]:
    """Every line of ``text`` must be one JSON object."""
    return [json.loads(line) for line in text.splitlines()]


def write_flow(tmp_path: Path, text: str, name: str = "flow.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


class Lines:
    """Read a trio process's stdout line by line."""

    def __init__(self, stream: trio.abc.ReceiveStream) -> None:
        self.stream = stream
        self.buffer = b""

    async def next(self) -> str | None:
        while b"\n" not in self.buffer:
            data = await self.stream.receive_some()
            if not data:
                return None
            self.buffer += data
        line, self.buffer = self.buffer.split(b"\n", 1)
        return line.decode()


async def read_store(path: Path):
    async with SqliteStore(path) as store:
        return await store.list_jobs()


def dead_pid() -> tuple[int, float]:
    """The pid and start time of a process that has exited (a dead runtime's, for a lease)."""
    dead = subprocess.Popen(["sleep", "30"])
    started = psutil.Process(dead.pid).create_time()
    dead.kill()
    dead.wait()
    return dead.pid, started
