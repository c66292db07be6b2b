"""``corral demo``: N jobs of a triage -> fix -> review flow where every step drives an agent.

Every step is an agent step: the bundled fake ACP agent (:mod:`actors.fake_agent`) behind a
two-generation wrapper (``--wrap 2``, like ``npm exec`` -> node adapter -> agent CLI), so each job
runs a real four-process tree (keeper + three generations).  The tickets are chosen so that every
terminal path is taken:

- most jobs complete; some after the reviewer asks for changes once (a ``loop`` exit rule);
- some are abandoned by the ``wontfix`` exit rule right after triage;
- some fix prompts make the agent crash (``[[crash]]``): the step is retried on a fresh adapter,
  crashes again and the job fails;
- some fix prompts make the agent stream forever (``[[slow]]``): the demo, acting as an operator
  with a token budget, cancels those jobs mid-stream.

Jobs are recorded durably in the store.  The closing report is read from the store (jobs by final
state), the agents' own logs (adapters spawned), the OS process table (processes left), trio's
task tree and statistics (tasks, streams and recorders left) and a trio Instrument counting
scheduler wakeups while the runtime sits idle — never from counters kept by the demo itself.
"""

from __future__ import annotations

import collections
import json
import math
import sys
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TextIO

import attrs
import trio

import actors.fake_agent
from actors.process import find_marked
from actors.stream import Done, Full
from actors.tasks import walk_tasks

from ..core.events import JobFinished, StepStarted, StepStream
from ..core.handle import JobHandle
from ..core.runtime import Runtime, open_runtime
from ..core.states import JobState
from ..flow import AgentSpec, ExitRule, Flow, OnError, Step
from ..store import SqliteStore
from ..testing import WakeupCounter, job_tasks, marked_processes
from .common import DEFAULT_STORE, Interrupts, interruptible
from .demo_display import Display, delta_text

__all__ = ["DemoReport", "demo_flow", "demo_inputs", "run_demo"]

TOKEN_BUDGET = 25
"""Stream updates one step may publish before the demo's operator cancels its job."""

_TITLES = (
    "login page times out on slow networks",
    "CSV export drops the last row",
    "dark mode ignores the system setting",
    "search results are not paginated",
    "password reset mail is sent twice",
    "avatar upload fails above 2 MB",
    "timezone shown in UTC in the invoice",
    "typo in the onboarding checklist",
)
_AREAS = ("auth", "export", "ui", "search", "mail", "uploads", "billing", "docs")


def demo_inputs(i: int) -> dict[str, Any]:
    """The inputs of ticket ``i``; the ticket number decides which terminal path the job takes."""
    verdict = "wontfix" if i % 10 == 3 else "fix"
    hint = "[[crash]]" if i % 10 == 7 else "[[slow]]" if i % 20 == 5 else ""
    review = "request changes" if i % 10 == 9 else "LGTM"
    return {
        "ticket": i,
        "title": _TITLES[i % len(_TITLES)],
        "area": _AREAS[i % len(_AREAS)],
        "verdict": verdict,
        "hint": hint,
        "review": review,
    }


def demo_agent(log: str | Path | None = None) -> AgentSpec:
    """The fake agent behind two wrapper generations (run by file path: no package imports)."""
    command = [sys.executable, str(Path(actors.fake_agent.__file__)), "--wrap", "2",
               "--delay", "0.004", "--chunk-size", "8"]
    if log is not None:
        command += ["--log", str(log)]
    return AgentSpec(command)


def demo_flow(agent: AgentSpec | None = None) -> Flow:
    """triage -> fix -> review, every step an agent step sharing the job's one adapter."""
    agent = agent or demo_agent()
    return Flow("triage-fix-review", [
        Step("triage", agent=agent,
             prompt="Triage #{$job.ticket} '{$job.title}'. verdict: {$job.verdict}",
             exits=[ExitRule("wontfix", when="'verdict: wontfix' in outputs.text", action="abandon")]),
        Step("fix", agent=agent, after=["triage"],
             prompt="Fix #{$job.ticket} in {$job.area}: patch ready {$job.hint}",
             on_error=OnError("retry", max_attempts=2, backoff=0.05)),
        Step("review", agent=agent, after=["fix"],
             prompt="Review #{$job.ticket}: {$job.review}",
             exits=[ExitRule("changes_requested", when="'request changes' in outputs.text and iteration < 1",
                             action="loop", target="fix", max_iterations=1)]),
    ], timeout=120)


@attrs.frozen
class DemoReport:
    """What the demo measured after every job ended (see the module docstring for the sources)."""

    runtime_id: str
    store: str
    jobs: int
    states: Mapping[str, int]
    adapters: int
    processes_after: int
    tasks_after: int
    streams_after: int
    recorders_after: int
    unfinished_after: int
    idle_wakeups_per_s: float
    elapsed: float
    interrupted: bool = False

    @property
    def leaks(self) -> dict[str, float]:
        """Every figure that must be zero, by name."""
        return {
            "processes alive after": self.processes_after,
            "runtime tasks alive after": self.tasks_after,
            "open streams after": self.streams_after,
            "recorders after": self.recorders_after,
            "jobs not ended in the store": self.unfinished_after,
            "wakeups/s while idle": self.idle_wakeups_per_s,
        }

    @property
    def ok(self) -> bool:
        return all(v == 0 for v in self.leaks.values())

    def render(self) -> str:
        """The report as plain text lines."""
        order = ("completed", "abandoned", "failed", "cancelled", "pending", "running", "paused")
        states = " · ".join(f"{s} {self.states[s]}" for s in order if self.states.get(s))
        rate = self.jobs / self.elapsed if self.elapsed > 0 else math.inf
        rows = [
            ("jobs by final state", states or "none", "store"),
            ("adapters spawned", str(self.adapters), "the agents' own logs"),
            ("processes alive after", str(self.processes_after), "process table, by marker"),
            ("runtime tasks alive after", str(self.tasks_after), "trio task tree and statistics"),
            ("open streams after", str(self.streams_after), "trio task tree, runtime"),
            ("recorders after", str(self.recorders_after), "trio task tree, runtime"),
            ("jobs not ended in the store", str(self.unfinished_after), "store"),
            ("wakeups/s while idle", f"{self.idle_wakeups_per_s:g}", "trio Instrument, 1 s"),
            ("throughput", f"{rate:.1f} jobs/s ({self.jobs} jobs in {self.elapsed:.1f} s)", "wall clock"),
        ]
        lines = [f"corral demo report — runtime {self.runtime_id} — store {self.store}"]
        lines += [f"  {name:<28} {value:<52}  ({source})" for name, value, source in rows]
        leaks = [name for name, value in self.leaks.items() if value]
        lines.append("result: " + ("no leaks" if not leaks else "LEAKS: " + ", ".join(leaks))
                     + (" (interrupted)" if self.interrupted else ""))
        return "\n".join(lines)


# -- the demo -----------------------------------------------------------------------------------


def _tree_tasks(fragment: str) -> int:
    """Tasks anywhere in trio's task tree whose name contains ``fragment``."""
    return sum(fragment in task.name for task in walk_tasks())


def _count_initialize(log: Path) -> int:
    """Agents that received ``initialize``: one per adapter the runtime spawned."""
    if not log.exists():
        return 0
    count = 0
    for line in log.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            if json.loads(line).get("method") == "initialize":
                count += 1
        except (ValueError, AttributeError):
            continue
    return count


async def _watch(handle: JobHandle, ticket: int, display: Display, events: Any) -> None:
    """Show one job's stream; cancel it (the operator's token budget) if a step runs away."""
    updates = 0
    text = ""
    async with trio.open_nursery() as nursery:
        async for event in events:
            if isinstance(event, StepStarted):
                updates, text = 0, ""
                display.step(ticket, event.step)
            elif isinstance(event, StepStream):
                chunk = delta_text(event.update)
                if chunk:
                    updates += 1
                    text += chunk
                    display.tokens(ticket, event.step, chunk)
                    if updates == TOKEN_BUDGET:
                        nursery.start_soon(handle.cancel, f"operator: step {event.step!r} over its token budget")
                elif isinstance(event.update, Done | Full):
                    display.step_done(ticket, event.step, text)
            elif isinstance(event, JobFinished):
                display.job_done(ticket, event.state)
    await handle.wait()  # JobFinished comes first; then the store is written and the nursery closed



async def run_demo(n_jobs: int = 200, store: str | Path = DEFAULT_STORE, *, max_running_jobs: int = 12,
                   out: TextIO | None = None, tty: bool | None = None) -> DemoReport:
    """Run the demo and measure what is left; ``out`` gets the live display (default stdout).

    Ctrl-C (SIGINT) or SIGTERM cancels the jobs still running; the report is printed anyway.
    """
    out = out or sys.stdout
    store_path = Path(store)
    store_path.parent.mkdir(parents=True, exist_ok=True)
    display = Display(out, out.isatty() if tty is None else tty, n_jobs)
    baseline_tasks = trio.lowlevel.current_statistics().tasks_living
    with tempfile.TemporaryDirectory(prefix="corral-demo-") as tmp:
        agent_log = Path(tmp) / "agents.jsonl"
        flow = demo_flow(demo_agent(agent_log))
        async with interruptible() as interrupts:
            async with open_runtime(store=store_path, max_running_jobs=max_running_jobs,
                                    term_grace=1.0) as rt:
                runtime_id = rt.id
                display.rt = rt
                display.write(f"corral demo: {n_jobs} jobs of triage -> fix -> review, every step an agent "
                              f"(fake agent, --wrap 2); {max_running_jobs} at a time; runtime {rt.id}\n")
                t0 = time.perf_counter()
                await _run_jobs(rt, flow, n_jobs, display, interrupts)
                elapsed = time.perf_counter() - t0
                # every job has ended: measure with the runtime (and its store) still open
                left = await _measure(rt)
        # the runtime is closed (and the signal watcher gone)
        left["tasks"] += trio.lowlevel.current_statistics().tasks_living - baseline_tasks
        left["processes"] += len(await trio.to_thread.run_sync(
            find_marked, lambda m: m.runtime_id == runtime_id))
        adapters = _count_initialize(agent_log)
    async with SqliteStore(store_path) as st:
        records = await st.list_jobs(runtime_id=runtime_id)
    states = collections.Counter(rec.state for rec in records)
    unfinished = sum(n for s, n in states.items() if not JobState(s).terminal)
    return DemoReport(
        runtime_id=runtime_id, store=str(store_path), jobs=n_jobs, states=dict(states), adapters=adapters,
        processes_after=int(left["processes"]), tasks_after=int(left["tasks"]), streams_after=int(left["streams"]),
        recorders_after=int(left["recorders"]), unfinished_after=unfinished, idle_wakeups_per_s=left["wakeups"],
        elapsed=elapsed, interrupted=interrupts.received,
    )


async def _run_jobs(rt: Runtime, flow: Flow, n_jobs: int, display: Display, interrupts: Interrupts) -> None:
    """Spawn the jobs and show them until all have ended; a signal cancels those still running."""
    all_done = trio.Event()
    async with trio.open_nursery() as demo:

        async def stop(_signal: str) -> None:
            demo.cancel_scope.cancel()

        interrupts.on_first = stop
        demo.start_soon(display.run, all_done)
        async with trio.open_nursery() as watchers:
            for i in range(n_jobs):
                handle = await rt.spawn(flow, demo_inputs(i), record="durable")
                watchers.start_soon(_watch, handle, i, display, handle.events(maxlen=4096))
        all_done.set()
        demo.cancel_scope.cancel()  # the display already returned
    if interrupts.received:
        with trio.CancelScope(shield=True):
            async with trio.open_nursery() as n:
                for handle in rt.jobs():
                    n.start_soon(handle.cancel, "interrupted")


async def _measure(rt: Runtime) -> dict[str, float]:
    """What the ended jobs left: tasks, streams, recorders, processes, and idle wakeups per second."""
    stats = rt.stats()
    left: dict[str, float] = {
        "tasks": stats.tasks + rt.nursery_tasks + len(job_tasks()),
        "streams": stats.streams + _tree_tasks("StreamBuffer"),
        "recorders": stats.recorders + _tree_tasks("Recorder"),
        "processes": len(await trio.to_thread.run_sync(marked_processes, rt)),
    }
    me = trio.lowlevel.current_task()
    counter = WakeupCounter(lambda task: task is not me)
    trio.lowlevel.add_instrument(counter)
    try:
        await trio.sleep(1.0)
    finally:
        trio.lowlevel.remove_instrument(counter)
    left["wakeups"] = counter.count / 1.0
    return left
