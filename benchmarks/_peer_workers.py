"""The workers of ``peers.py``: one system, one mode, one flow shape, in a fresh process.

Stdlib only at import time: each worker runs in its own system's interpreter (corral's, or a venv
under ``.bench-peers/``) and imports its system inside the worker function.  Every worker runs
``warmup`` runs, then ``WINDOWS`` windows of ``runs // WINDOWS`` runs, one run at a time (each
window started by the orchestrator through a ``Gate``, so the systems' windows interleave), and
returns ``{"worker", "steps", "runs", "versions", "us", "rss_per_1000", "windows_at", "check"}``: µs
per run and RSS growth per 1_000 runs for each window, when each window began and ended
(``time.perf_counter()``, CLOCK_MONOTONIC on Linux: comparable between processes), and a check
made after the windows that the last run
really did the work (all steps completed; for the durable modes, what its store holds of it).  A
worker whose check fails raises, so a broken measurement never becomes a row.

The durable workers write to a fresh SQLite file in the current directory (the orchestrator runs
each worker in a new empty directory).
"""

from __future__ import annotations

import gc
import os
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
WINDOWS = 5


def rss_bytes() -> int:
    """Current RSS of this process (Linux ``/proc/self/statm``; stdlib only)."""
    with open("/proc/self/statm", encoding="ascii") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def versions(*dists: str) -> dict[str, str]:
    """The installed version of each distribution (``"unknown"`` when not installed)."""
    from importlib import metadata

    out = {}
    for dist in dists:
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = "unknown"
    return out


class Gate:
    """The orchestrator's hold on a worker: one byte in to start a window, one byte out when done.

    ``spec`` is ``"READ_FD,WRITE_FD"`` (pipes the orchestrator passed), or ``None`` for no gate (a
    worker run by hand: every window starts at once).  The worker signals once after its warm-up
    and after each window, and waits before each window and once more before its final check, so
    nothing it does outside a window overlaps another system's window.
    """

    def __init__(self, spec: str | None = None) -> None:
        self.fds = tuple(int(fd) for fd in spec.split(",")) if spec else None

    def wait(self) -> None:
        if self.fds is not None and os.read(self.fds[0], 1) != b"g":
            raise RuntimeError("the orchestrator went away")

    def signal(self) -> None:
        if self.fds is not None:
            os.write(self.fds[1], b".")


def measure(run_once: Callable[[], object], runs: int, warmup: int,
            gate: Gate) -> dict[str, list[float]]:
    """µs per run and RSS growth per 1_000 runs over WINDOWS windows of ``runs // WINDOWS`` runs."""
    for _ in range(warmup):
        run_once()
    per_window = max(1, runs // WINDOWS)
    us, growth = [], []
    gc.collect()
    last = rss_bytes()
    at = []
    gate.signal()
    for _ in range(WINDOWS):
        gate.wait()
        t0 = time.perf_counter()
        for _ in range(per_window):
            run_once()
        t1 = time.perf_counter()
        us.append((t1 - t0) / per_window * 1e6)
        gc.collect()
        now = rss_bytes()
        growth.append((now - last) / per_window * 1000)
        last = now
        at.append((t0, time.perf_counter()))
        gate.signal()
    gate.wait()
    return {"us": us, "rss_per_1000": growth, "windows_at": at}


async def measure_async(run_once: Callable[[], Awaitable[object]], runs: int, warmup: int,
                        gate: Gate) -> dict[str, list[float]]:
    """``measure`` for an async ``run_once`` (same windows, same RSS reads; trio waits on the gate)."""
    import trio

    for _ in range(warmup):
        await run_once()
    per_window = max(1, runs // WINDOWS)
    us, growth = [], []
    gc.collect()
    last = rss_bytes()
    at = []
    gate.signal()
    for _ in range(WINDOWS):
        await trio.to_thread.run_sync(gate.wait)
        t0 = time.perf_counter()
        for _ in range(per_window):
            await run_once()
        t1 = time.perf_counter()
        us.append((t1 - t0) / per_window * 1e6)
        gc.collect()
        now = rss_bytes()
        growth.append((now - last) / per_window * 1000)
        last = now
        at.append((t0, time.perf_counter()))
        gate.signal()
    await trio.to_thread.run_sync(gate.wait)
    return {"us": us, "rss_per_1000": growth, "windows_at": at}


def _require(ok: bool, what: str) -> None:
    if not ok:
        raise RuntimeError(f"check failed: {what}")


# -- corral -------------------------------------------------------------------------------------------


def corral(steps: int, runs: int, warmup: int, gate: Gate, *, durable: bool, build_per_run: bool) -> dict[str, Any]:
    """One runtime; per run a job of a ``Flow`` of ``steps`` chained no-op python steps is spawned
    and awaited.  The ``Flow`` is built once (as a LangGraph graph is compiled once, a crewAI flow
    class or a DBOS workflow defined once), or per run with ``build_per_run`` (as a StateGraph
    built and compiled per run).

    In memory: ``open_runtime()`` (bounded in-memory store), ``record="off"``.  Durable:
    ``open_runtime(store="corral.sqlite")`` (the embedded SQLite store, fresh file) and
    ``record="durable"`` (event log and per-step checkpoints in the store).
    """
    sys.path.insert(0, str(ROOT))
    import logging

    import structlog
    import trio

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING),
                        logger_factory=structlog.PrintLoggerFactory(sys.stderr))
    from runtime import Flow, JobState, Step, open_runtime

    async def noop(ctx: object, inputs: object) -> None:
        return None

    def build() -> Flow:
        return Flow(f"noop{steps}", [Step(f"s{i}", run=noop, after=[f"s{i - 1}"] if i else [])
                                     for i in range(steps)])

    record = "durable" if durable else "off"
    out: dict[str, Any] = {}
    flow = None if build_per_run else build()

    async def main() -> None:
        async with open_runtime(store="corral.sqlite" if durable else None) as rt:
            async def one() -> Any:
                return await (await rt.spawn(build() if flow is None else flow, record=record)).wait()

            out.update(await measure_async(one, runs, warmup, gate))
            last = await one()
            _require(last.state is JobState.COMPLETED and len(last.outputs) == steps,
                     f"corral job {last.job_id}: {last.state}, {len(last.outputs)} outputs")
            out["check"] = {"state": last.state.value, "outputs": len(last.outputs)}

    trio.run(main)
    if durable:
        size = Path("corral.sqlite").stat().st_size
        _require(size > 0, "corral.sqlite is empty")
        out["check"]["store_bytes"] = size
    return {"versions": versions("corral", "trio"), **out}


# -- crewAI -------------------------------------------------------------------------------------------


def crewai(steps: int, runs: int, warmup: int, gate: Gate, *, quiet: bool) -> dict[str, Any]:
    """Per run an instance of a ``crewai.flow.flow.Flow`` subclass with ``steps`` no-op methods chained
    by ``@start``/``@listen`` is built and ``kickoff()``-ed; ``quiet``: ``suppress_flow_events=True``."""
    from crewai.flow.flow import Flow, listen, start

    def step_fn(i: int) -> Callable[[object], None]:
        def step(self: object) -> None:
            return None

        step.__name__ = f"s{i}"
        return step

    ns: dict[str, Any] = {"s0": start()(step_fn(0))}
    for i in range(1, steps):
        ns[f"s{i}"] = listen(f"s{i - 1}")(step_fn(i))
    cls: Any = type(f"Noop{steps}", (Flow,), ns)
    kwargs = {"suppress_flow_events": True} if quiet else {}

    def one() -> Any:
        flow = cls(**kwargs)
        flow.kickoff()
        return flow

    out = measure(one, runs, warmup, gate)
    done = one().method_outputs
    _require(len(done) == steps, f"crewAI flow ran {len(done)} of {steps} methods")
    return {"versions": versions("crewai"), **out, "check": {"method_outputs": len(done)}}


# -- LangGraph ----------------------------------------------------------------------------------------


def langgraph(steps: int, runs: int, warmup: int, gate: Gate, *, mode: str) -> dict[str, Any]:
    """A ``StateGraph`` of ``steps`` chained no-op nodes (START → s0 → … → END), ``invoke``-d per run.

    ``mode``: ``"memory"`` (compiled once, no checkpointer), ``"build"`` (built and compiled per run,
    as corral builds its ``Flow`` per run; no checkpointer) or ``"sqlite"`` (compiled once with a
    ``SqliteSaver`` on a fresh file, ``SqliteSaver.from_conn_string``; a new ``thread_id`` per run;
    LangGraph's default ``durability``).
    """
    from typing import TypedDict

    from langgraph.graph import END, START, StateGraph

    class State(TypedDict, total=False):
        x: int

    def node(state: State) -> None:
        return None

    def build() -> Any:
        graph = StateGraph(State)
        for i in range(steps):
            graph.add_node(f"s{i}", node)
            graph.add_edge(f"s{i - 1}" if i else START, f"s{i}")
        graph.add_edge(f"s{steps - 1}", END)
        return graph

    dists = versions("langgraph")
    if mode == "build":
        out = measure(lambda: build().compile().invoke({}), runs, warmup, gate)
        return {"versions": dists, **out, "check": _langgraph_check(build().compile(), None, steps)}
    if mode == "memory":
        app = build().compile()
        out = measure(lambda: app.invoke({}), runs, warmup, gate)
        return {"versions": dists, **out, "check": _langgraph_check(app, None, steps)}
    if mode != "sqlite":
        raise ValueError(f"langgraph mode must be memory, build or sqlite, got {mode!r}")
    from langgraph.checkpoint.sqlite import SqliteSaver

    with SqliteSaver.from_conn_string("langgraph.sqlite") as saver:
        app = build().compile(checkpointer=saver)

        def one() -> Any:
            return app.invoke({}, {"configurable": {"thread_id": uuid.uuid4().hex}})

        out = measure(one, runs, warmup, gate)
        check = _langgraph_check(app, saver, steps)
    return {"versions": {**dists, **versions("langgraph-checkpoint-sqlite")}, **out, "check": check}


def _langgraph_check(app: Any, saver: Any, steps: int) -> dict[str, Any]:
    """Run once more and check every node ran (and, with a saver, what it stored of the run)."""
    seen = [name for chunk in app.stream({}, {"configurable": {"thread_id": "check"}},
                                         stream_mode="updates") for name in chunk]
    _require(seen == [f"s{i}" for i in range(steps)], f"LangGraph ran {seen}")
    check: dict[str, Any] = {"nodes_run": len(seen)}
    if saver is not None:
        stored = list(saver.list({"configurable": {"thread_id": "check"}}))
        _require(len(stored) >= steps, f"SqliteSaver holds {len(stored)} checkpoints of a run")
        check["checkpoints_per_run"] = len(stored)
    return check


# -- DBOS ---------------------------------------------------------------------------------------------


def dbos(steps: int, runs: int, warmup: int, gate: Gate) -> dict[str, Any]:
    """A ``@DBOS.workflow`` calling ``steps`` ``@DBOS.step`` no-ops in turn, one workflow per run.

    DBOS is configured once with ``system_database_url="sqlite:///dbos.sqlite"`` (a fresh file),
    ``run_admin_server=False``, ``log_level="WARNING"``, and launched once.
    """
    from dbos import DBOS, DBOSConfig, SetWorkflowID

    def step_fn(i: int) -> Callable[[], None]:
        def step() -> None:
            return None

        step.__name__ = step.__qualname__ = f"s{i}"
        return step

    chain = [DBOS.step()(step_fn(i)) for i in range(steps)]

    def workflow() -> None:
        for step in chain:
            step()

    workflow.__name__ = workflow.__qualname__ = f"noop{steps}"
    run = DBOS.workflow()(workflow)
    config: DBOSConfig = {"name": "corral-bench-peers", "system_database_url": "sqlite:///dbos.sqlite",
                          "run_admin_server": False, "log_level": "WARNING"}
    DBOS(config=config)
    DBOS.launch()
    try:
        out = measure(run, runs, warmup, gate)
        with SetWorkflowID("check"):
            run()
        status = DBOS.retrieve_workflow("check").get_status().status
        recorded = len(DBOS.list_workflow_steps("check"))
        _require(status == "SUCCESS" and recorded == steps,
                 f"DBOS workflow: {status}, {recorded} of {steps} steps recorded")
    finally:
        DBOS.destroy()
    return {"versions": versions("dbos", "sqlalchemy"), **out,
            "check": {"status": status, "steps_recorded": recorded}}


WORKERS: dict[str, Callable[[int, int, int, Gate], dict[str, Any]]] = {
    "corral": lambda n, runs, warmup, gate: corral(n, runs, warmup, gate, durable=False, build_per_run=False),
    "corral-build": lambda n, runs, warmup, gate: corral(n, runs, warmup, gate, durable=False, build_per_run=True),
    "corral-durable": lambda n, runs, warmup, gate: corral(n, runs, warmup, gate, durable=True, build_per_run=False),
    "crewai": lambda n, runs, warmup, gate: crewai(n, runs, warmup, gate, quiet=False),
    "crewai-quiet": lambda n, runs, warmup, gate: crewai(n, runs, warmup, gate, quiet=True),
    "langgraph": lambda n, runs, warmup, gate: langgraph(n, runs, warmup, gate, mode="memory"),
    "langgraph-build": lambda n, runs, warmup, gate: langgraph(n, runs, warmup, gate, mode="build"),
    "langgraph-sqlite": lambda n, runs, warmup, gate: langgraph(n, runs, warmup, gate, mode="sqlite"),
    "dbos": dbos,
}


def run_worker(name: str, steps: int, runs: int, warmup: int, gate: Gate | None = None) -> dict[str, Any]:
    """Run worker ``name`` on a ``steps``-step no-op flow; its result with ``name`` and ``steps``."""
    if name not in WORKERS:
        raise ValueError(f"unknown worker {name!r}: one of {', '.join(WORKERS)}")
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    return {"worker": name, "steps": steps, "runs": runs,
            **WORKERS[name](steps, runs, warmup, gate or Gate())}
