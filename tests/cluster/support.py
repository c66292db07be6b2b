"""What the cluster tests share: flows of the fake agent, and where a job's processes are."""

from __future__ import annotations

import sys

import psutil
import trio

from actors.process import find_marked
from runtime import AgentSpec, ExitRule, Flow, Step, StepStarted
from runtime.cluster.steps import echo, noop

PY = sys.executable
FAKE = [PY, "-m", "actors.fake_agent", "--delay", "0.001"]
RAY_CLI = [PY, "-m", "ray.scripts.scripts"]
BOUND = 90


def complete_flow() -> Flow:
    return Flow("complete", [Step("agent", agent=AgentSpec(FAKE), prompt="hello {$job.n}"),
                             Step("tail", run=echo, inputs={"n": "$job.n"}, after=["agent"])])


def abandon_flow() -> Flow:
    return Flow("abandon", [Step("agent", agent=AgentSpec(FAKE), prompt="triage"),
                            Step("gate", run=noop, after=["agent"],
                                 exits=[ExitRule("drop", when="outputs.ok", action="abandon")]),
                            Step("never", run=noop, after=["gate"])])


def slow_flow(*extra: str) -> Flow:
    """One agent step that streams ticks until it is cancelled."""
    return Flow("slow", [Step("agent", agent=AgentSpec([*FAKE, "--slow", "--delay", "0.05", *extra]), prompt="work")])


async def started(handle) -> None:
    """Return once the job's step has started (its events from seq 0: it may have already)."""
    async for event in handle.events(replay=True):
        if isinstance(event, StepStarted):
            return


def marked(runtime_ids: set[str]) -> set[int]:
    """Pids of live processes carrying the marker of any of ``runtime_ids``."""
    return {p.pid for p in find_marked(lambda m: m.runtime_id in runtime_ids)}


def alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


async def wait_gone(pids: set[int], within: float) -> None:
    """Wait (polling the OS process table) until none of ``pids`` is alive."""
    with trio.fail_after(within):
        while any(alive(p) for p in pids):  # noqa: ASYNC110
            await trio.sleep(0.05)
