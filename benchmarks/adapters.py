"""The real ACP adapters pinned in tests/agents: start time, tree size and teardown per adapter.

    python benchmarks/adapters.py [--json] [--quick] [--repeats N]

Per adapter (offline, no credentials, each started as corral starts it: ``AgentAdapter`` with a
marker, a keeper and the ACP handshake; real processes, real clock):

- spawn-to-ready: from ``nursery.start(adapter.run)`` until ``initialize`` (and ``authenticate``,
  for codex-acp with a dummy key) is answered.  Floor: the bundled fake agent behind two wrapper
  generations (``--wrap 2``, the shape of ``npm exec`` -> node -> CLI), measured the same way.
- tree: processes carrying the job's marker (keeper included) and their summed RSS, with a
  session open and a prompt sent (it fails offline for claude; codex's is in flight; the SDK agent
  waits in ``[[hang]]``).  Counts, no floor.
- teardown: from cancelling the adapter's task until no process of the tree is alive.  Floor: the
  fake agent's tree, torn down the same way.

Needs ``npm ci --prefix tests/agents``; without it the script reports itself skipped.
"""

from __future__ import annotations

import contextlib
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil
import trio

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _common import emit, options, quiet_logs, row, skip, summary
from processes import _alive, _until_gone

from actors.acp import AgentAdapter
from actors.process import Marker, find_marked

ROOT = Path(__file__).resolve().parent.parent
AGENTS = ROOT / "tests" / "agents"
BIN = AGENTS / "node_modules" / ".bin"
NODE = shutil.which("node") or "node"
FAKE = [sys.executable, "-m", "actors.fake_agent", "--wrap", "2", "--delay", "0.001"]
SETTLE = 2.0  # seconds with the prompt sent before the tree is counted
BOUND = 120.0


def _adapters(home: Path) -> dict[str, tuple[list[str], dict[str, str], str | None, str]]:
    """name -> (command, env, auth, prompt)."""
    offline = {"HOME": str(home), "CODEX_HOME": str(home / ".codex"), "IS_SANDBOX": "1",
               "ANTHROPIC_API_KEY": "", "CLAUDE_CODE_OAUTH_TOKEN": ""}
    return {
        "claude-agent-acp (npm exec)": (["npm", "exec", "--offline", "--prefix", str(AGENTS), "--",
                                         "claude-agent-acp"], offline, None, "hello"),
        "codex-acp": ([NODE, str(BIN / "codex-acp")], {**offline, "CODEX_API_KEY": "dummy"},
                      "codex-api-key", "hello"),
        "sdk agent (@agentclientprotocol/sdk)": ([NODE, str(AGENTS / "sdk_agent.mjs")], offline, None,
                                                 "[[hang]]"),
    }


async def _one(command: list[str], env: dict[str, str], auth: str | None, prompt: str,
               workdir: Path) -> tuple[float, int, float, float]:
    """(ready s, processes, RSS MiB, teardown s) of one adapter start."""
    marker = Marker(f"bench-{uuid.uuid4().hex}", "bench-job")
    adapter = AgentAdapter(command, marker=marker, workspace=workdir, env=env, auth=auth,
                           term_grace=2.0, start_timeout=60.0)
    mine: Callable[[Any], bool] = lambda m: m.runtime_id == marker.runtime_id  # noqa: E731
    with trio.fail_after(BOUND):
        async with trio.open_nursery() as nursery:
            t0 = time.perf_counter()
            await nursery.start(adapter.run)
            ready = time.perf_counter() - t0

            async def ask() -> None:
                with contextlib.suppress(Exception):
                    await adapter.prompt(prompt, _ignore)

            nursery.start_soon(ask)
            await trio.sleep(SETTLE)  # the session is open and the prompt sent (or failed)
            procs = find_marked(mine)
            rss = 0
            for p in procs:
                with contextlib.suppress(psutil.Error):
                    rss += p.memory_info().rss
            t1 = time.perf_counter()
            nursery.cancel_scope.cancel()
        await _until_gone(procs)
        teardown = time.perf_counter() - t1
    if _alive(procs) or find_marked(mine):
        raise RuntimeError(f"{command[:3]}: processes outlived the adapter")
    return ready, len(procs), rss / 2**20, teardown


async def _ignore(update: Any) -> None:
    await trio.lowlevel.checkpoint()


async def measure(repeats: int) -> list[dict[str, Any]]:
    if not (BIN / "claude-agent-acp").exists():
        skip("the pinned adapters are not installed: run `npm ci --prefix tests/agents` first")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        home, work = Path(tmp) / "home", Path(tmp) / "ws"
        (home / ".codex").mkdir(parents=True)
        work.mkdir()
        fake = [await _one(FAKE, {}, None, "go [[slow]]", work) for _ in range(repeats)]
        fake_ready, fake_down = summary(f[0] * 1e3 for f in fake), summary(f[3] * 1e3 for f in fake)
        for name, (command, env, auth, prompt) in _adapters(home).items():
            runs = [await _one(command, env, auth, prompt, work) for _ in range(repeats)]
            rows += [
                row(f"adapter: {name} spawn-to-ready", summary(r[0] * 1e3 for r in runs), "ms",
                    fake_ready, "fake agent --wrap 2", repeats=repeats),
                row(f"adapter: {name} tree, processes", summary(r[1] for r in runs), "count", repeats=repeats),
                row(f"adapter: {name} tree, RSS", summary(r[2] for r in runs), "MiB", repeats=repeats),
                row(f"adapter: {name} teardown until no process is alive", summary(r[3] * 1e3 for r in runs),
                    "ms", fake_down, "fake agent --wrap 2 tree", repeats=repeats),
            ]
    return rows


def main() -> None:
    args = options(__doc__)
    quiet_logs()
    emit(trio.run(measure, 1 if args.quick else args.repeats), args.json)


if __name__ == "__main__":
    main()
