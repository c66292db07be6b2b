"""Process groups and agent adapters: spawn-to-ready, teardown, leftovers, against bare trio floors.

    python benchmarks/processes.py [--json] [--quick] [--repeats N] [--term-grace S] [--jobs N]

Figures (median of the repeats, with min and max; real subprocesses, real clock):

- adapter spawn-to-ready: ``AgentAdapter`` with the fake agent (``python -m actors.fake_agent``),
  from ``nursery.start(adapter.run)`` until ``initialize`` is answered (the keeper, the agent, the
  ACP handshake).  Floor: a bare ``trio.run_process`` of the same command with stdin closed, so the
  agent starts, reads EOF and exits (spawn + interpreter start + exit + reap, no handshake).
- teardown of a cooperative 3-level tree (``--wrap 2``: like ``npm exec`` -> node -> agent CLI),
  mid-prompt: from ``job.abandon()`` until no process of the tree is alive.  Floor: the same tree
  started bare (``start_new_session``, no keeper, no marker), mid-prompt, torn down by closing its
  stdin and waiting for every process of it to exit.
- teardown of a tree that ignores SIGTERM *and* stdin EOF (a grandchild started with
  ``--grandchild-ignore-term``): expected ``term_grace`` plus a small constant; the floor is the
  configured ``term_grace``.  ``--ignore-sigterm`` alone is also measured: the fake agent still
  exits at stdin EOF, so that tree tears down like the cooperative one (the SIGTERM path is not
  reached).
- scheduler wakeups per second of 5 initialized, idle adapters (their readers park on the pipes):
  expected 0.
- processes alive after N agent jobs (default 300, in 5 rounds; a mix of completed, abandoned,
  cancelled and failed jobs, 10 at a time): live processes carrying the runtime's marker plus zombie
  children of this process, counted after each round.  Expected 0.

"Alive" means not yet exited: a process that left a zombie reparented to PID 1 is dead (on some
sandboxes PID 1 reaps orphans a second or more later; that is not time corral spends).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import psutil
import trio
import trio.testing

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _common import emit, idle_wakeups_per_s, options, quiet_logs, row, summary

from actors.acp import AgentAdapter
from actors.process import Marker
from runtime import AgentSpec, ExitRule, Flow, JobState, Step, StepStream, open_runtime
from runtime.testing import marked_processes

PY = sys.executable
FAKE_MODULE = [PY, "-m", "actors.fake_agent", "--delay", "0.001"]
# --quick runs the same program by file path: it skips importing the ``actors`` package (and trio),
# ~0.25 s less per agent start; the full run uses ``-m`` as users and the tests do
FAKE_PATH = [PY, str(Path(__file__).resolve().parent.parent / "actors" / "fake_agent.py"),
             "--delay", "0.001"]
BOUND = 60.0  # seconds: nothing here may hang


# -- helpers ---------------------------------------------------------------------------------------


def _alive(procs: list[psutil.Process]) -> list[psutil.Process]:
    """Those of ``procs`` that have not exited (zombies count as exited)."""
    out = []
    for p in procs:
        try:
            if p.status() != psutil.STATUS_ZOMBIE:
                out.append(p)
        except psutil.NoSuchProcess:
            pass
    return out


async def _exited(pid: int) -> None:
    """Park until ``pid`` has exited (a pidfd turns readable), without polling."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return
    try:
        await trio.lowlevel.wait_readable(fd)
    finally:
        os.close(fd)


async def _until_gone(procs: list[psutil.Process]) -> None:
    """Return once none of ``procs`` is alive."""
    async with trio.open_nursery() as nursery:
        for p in _alive(procs):
            nursery.start_soon(_exited, p.pid)


def _zombie_children() -> int:
    n = 0
    for child in psutil.Process().children(recursive=True):
        try:
            n += child.status() == psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            pass
    return n


# -- spawn to ready ----------------------------------------------------------------------------------


async def adapter_ready_s(fake: list[str], workdir: Path) -> float:
    marker = Marker(f"bench-{uuid.uuid4().hex}", "bench-job")
    adapter = AgentAdapter(fake, marker=marker, workspace=workdir)
    async with trio.open_nursery() as nursery:
        t0 = time.perf_counter()
        await nursery.start(adapter.run)
        elapsed = time.perf_counter() - t0
        nursery.cancel_scope.cancel()  # teardown is not part of this figure
    return elapsed


async def bare_run_process_s(fake: list[str], workdir: Path) -> float:
    t0 = time.perf_counter()
    await trio.run_process(fake, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, cwd=workdir)
    return time.perf_counter() - t0


async def idle_adapter_wakeups(fake: list[str], n: int, workdir: Path, repeats: int,
                               window: float) -> list[float]:
    """Wakeups/s of every task while ``n`` initialized adapters sit idle (expected 0)."""
    async with trio.open_nursery() as nursery:
        for i in range(n):
            adapter = AgentAdapter(fake, marker=Marker(f"bench-{uuid.uuid4().hex}", f"idle-{i}"),
                                   workspace=workdir)
            await nursery.start(adapter.run)
        await trio.testing.wait_all_tasks_blocked(0.05)  # (the agents' own output has arrived)
        rates = await idle_wakeups_per_s(repeats, window)
        nursery.cancel_scope.cancel()
    return rates


# -- teardown -------------------------------------------------------------------------------------------


def _slow_flow(command: list[str]) -> Flow:
    return Flow("tree", [Step("agent", agent=AgentSpec(command), prompt="go [[slow]]")])


async def corral_teardown_s(rt: Any, command: list[str], expect: int) -> float:
    """Abandon a job mid-prompt; seconds until no process of its tree is alive."""
    job = await rt.spawn(_slow_flow(command))
    async for event in job.events():
        if isinstance(event, StepStream):  # the tree is up and the prompt is streaming
            break
    procs = marked_processes(rt)
    if len(procs) != expect:
        raise RuntimeError(f"expected {expect} processes in the tree, found {len(procs)}")
    t0 = time.perf_counter()
    result = await job.abandon("bench")
    await _until_gone(procs)
    elapsed = time.perf_counter() - t0
    assert result.state is JobState.ABANDONED
    return elapsed


def _line(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode() + b"\n"


async def bare_teardown_s(command: list[str], workdir: Path) -> float:
    """The same tree without corral, mid-prompt: close stdin, wait for every process to exit."""
    proc = await trio.lowlevel.open_process(command, stdin=subprocess.PIPE,
                                            stdout=subprocess.PIPE, start_new_session=True,
                                            cwd=workdir)
    assert proc.stdin is not None and proc.stdout is not None
    buf = b""

    async def read_until(pred) -> None:
        nonlocal buf
        while True:
            while b"\n" in buf:
                raw, buf = buf.split(b"\n", 1)
                if pred(json.loads(raw)):
                    return
            data = await proc.stdout.receive_some()
            if not data:
                raise RuntimeError("bare agent closed stdout")
            buf += data

    try:
        await proc.stdin.send_all(_line({"jsonrpc": "2.0", "id": 1, "method": "initialize",
                                         "params": {"protocolVersion": 1, "clientCapabilities": {}}}))
        await read_until(lambda m: m.get("id") == 1)
        await proc.stdin.send_all(_line({"jsonrpc": "2.0", "id": 2, "method": "session/new",
                                         "params": {"cwd": str(workdir), "mcpServers": []}}))
        session: list[str] = []
        await read_until(lambda m: m.get("id") == 2 and not session.append(m["result"]["sessionId"]))
        await proc.stdin.send_all(_line({"jsonrpc": "2.0", "id": 3, "method": "session/prompt", "params": {
            "sessionId": session[0], "prompt": [{"type": "text", "text": "go [[slow]]"}]}}))
        await read_until(lambda m: m.get("method") == "session/update")
        procs = [psutil.Process(proc.pid), *psutil.Process(proc.pid).children(recursive=True)]
        t0 = time.perf_counter()
        await proc.stdin.aclose()

        async def drain() -> None:  # keep reading so a writer never blocks on a full pipe
            while await proc.stdout.receive_some():
                pass

        async with trio.open_nursery() as nursery:
            nursery.start_soon(drain)
            await proc.wait()
            await _until_gone(procs)
            elapsed = time.perf_counter() - t0
            nursery.cancel_scope.cancel()
        return elapsed
    finally:
        with trio.CancelScope(shield=True):
            try:
                os.killpg(proc.pid, 9)
            except ProcessLookupError:
                pass
            await proc.wait()
            await proc.stdout.aclose()


# -- leftovers after many jobs ---------------------------------------------------------------------------


def _mixed_flows(fake: list[str]) -> list[tuple[str, Flow]]:
    agent = AgentSpec(fake)
    return [
        ("completed", Flow("ok", [Step("a", agent=agent, prompt="hello")])),
        ("abandoned", Flow("abandon", [Step("a", agent=agent, prompt="hello",
                                            exits=[ExitRule("stop", when="True", action="abandon")])])),
        ("cancelled", Flow("cancel", [Step("a", agent=agent, prompt="go [[slow]]")])),
        ("failed", Flow("crash", [Step("a", agent=agent, prompt="go [[crash]]")])),
    ]


async def leftovers_after(fake: list[str], n_jobs: int, rounds: int,
                          term_grace: float) -> tuple[list[float], dict[str, int]]:
    """Run ``rounds`` rounds of ``n_jobs`` agent jobs; processes left alive after each round."""
    flows = _mixed_flows(fake)
    counts: list[float] = []
    states: dict[str, int] = {}
    async with open_runtime(max_running_jobs=10, term_grace=term_grace) as rt:
        for _ in range(rounds):
            async with trio.open_nursery() as nursery:
                for i in range(n_jobs):
                    kind, flow = flows[i % len(flows)]
                    job = await rt.spawn(flow)
                    nursery.start_soon(_drive, kind, job, states)
            counts.append(len(marked_processes(rt)) + _zombie_children())
    return counts, states


async def _drive(kind: str, job: Any, states: dict[str, int]) -> None:
    if kind == "cancelled":
        async for event in job.events():
            if isinstance(event, StepStream):
                break
        result = await job.cancel("bench")
    else:
        result = await job.wait()
    states[result.state.value] = states.get(result.state.value, 0) + 1


# -- main -------------------------------------------------------------------------------------------------


async def _main(args: Any) -> list[dict[str, Any]]:
    fake = FAKE_PATH if args.quick else FAKE_MODULE
    wrapped = [*fake, "--wrap", "2"]
    reps = args.repeats
    grace = args.term_grace if args.term_grace is not None else (0.1 if args.quick else 1.0)
    n_jobs = args.jobs or (12 if args.quick else 300)
    rows: list[dict[str, Any]] = []
    with trio.fail_after(BOUND * reps + 4 * n_jobs), tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        ready, floor = [], []
        for _ in range(reps):
            floor.append(await bare_run_process_s(fake, workdir) * 1e3)
            ready.append(await adapter_ready_s(fake, workdir) * 1e3)
        rows.append(row("process: adapter spawn-to-ready (fake agent, initialize answered)",
                        summary(ready), "ms", summary(floor),
                        "bare trio.run_process of the same command, stdin closed", repeats=reps))

        idle_n = 2 if args.quick else 5
        idle = await idle_adapter_wakeups(fake, idle_n, workdir, reps, 0.05 if args.quick else 0.5)
        rows.append(row(f"process: scheduler wakeups/s of {idle_n} idle adapters (after initialize)",
                        summary(idle), "wakeups/s", repeats=reps, note="expected 0"))

        coop, coop_floor, ign, stubborn = [], [], [], []
        async with open_runtime(term_grace=grace) as rt:
            for _ in range(reps):
                coop_floor.append(await bare_teardown_s(wrapped, workdir) * 1e3)
                coop.append(await corral_teardown_s(rt, wrapped, expect=4) * 1e3)
                ign.append(await corral_teardown_s(rt, [*wrapped, "--ignore-sigterm"], expect=4) * 1e3)
                stubborn.append(await corral_teardown_s(rt, [*wrapped, "--grandchild-ignore-term"],
                                                        expect=5) * 1e3)
        bare = "bare tree: close stdin, wait for every process"
        rows.append(row("process: teardown abandon() -> all gone, 3-level tree, mid-prompt",
                        summary(coop), "ms", summary(coop_floor), bare, repeats=reps))
        rows.append(row("process: teardown, 3-level tree, --ignore-sigterm", summary(ign), "ms",
                        summary(coop_floor), bare, repeats=reps,
                        note="the agent still exits at stdin EOF: SIGTERM is never needed"))
        g = (grace * 1e3, grace * 1e3, grace * 1e3)
        rows.append(row(f"process: teardown, grandchild ignores SIGTERM+EOF, grace {grace:g} s",
                        summary(stubborn), "ms", g, "term_grace (configured)", repeats=reps))
        rows.append(row("process: teardown beyond term_grace (the constant)",
                        summary(s - grace * 1e3 for s in stubborn), "ms", repeats=reps))

        rounds = reps
        per_round = max(1, n_jobs // rounds)
        left, states = await leftovers_after(fake, per_round, rounds, grace)
        mix = ", ".join(f"{v} {k}" for k, v in sorted(states.items()))
        rows.append(row(f"process: processes alive after {per_round * rounds} agent jobs",
                        summary(left), "processes", repeats=rounds,
                        note=f"expected 0; {rounds} rounds, counted after each; {mix}"))
    return rows


def main() -> None:
    def add(p):
        p.add_argument("--term-grace", type=float, default=None,
                       help="the runtime's term_grace in seconds (default 1.0; 0.1 with --quick)")
        p.add_argument("--jobs", type=int, default=None, help="agent jobs for the leftovers figure")

    args = options(__doc__, add)
    quiet_logs()
    emit(trio.run(_main, args), args.json)


if __name__ == "__main__":
    main()
