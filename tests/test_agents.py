"""Command and agent steps: their process trees belong to the job and die with it, on every path.

Real subprocesses (the bundled fake ACP agent, an agent written with the official SDK), the OS
process table through psutil, a real clock bounded by trio.fail_after.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import psutil
import pytest
import trio

from actors.process import find_marked
from runtime import (
    AgentSpec,
    ExitRule,
    Flow,
    JobState,
    OnError,
    Step,
    StepFailed,
    StepState,
    open_runtime,
)
from runtime.testing import assert_no_leaks, marked_processes

PY = sys.executable
FAKE = [PY, "-m", "actors.fake_agent", "--delay", "0.001"]
WRAPPED = [*FAKE, "--wrap", "2"]  # like npm exec -> node adapter -> agent CLI
SDK_AGENT = [PY, str(Path(__file__).with_name("sdk_agent.py"))]
BOUND = 30  # seconds: nothing here may hang


def pids_of(rt) -> set[int]:
    return {p.pid for p in marked_processes(rt)}


def assert_all_gone(pids: set[int]) -> None:
    alive = []
    for pid in pids:
        try:
            proc = psutil.Process(pid)
            alive.append((pid, proc.status(), proc.cmdline()[-3:]))
        except psutil.NoSuchProcess:
            pass
    assert alive == [], f"processes survived their job: {alive}"


class TreeSpy:
    """A callable exit-rule condition that snapshots the job's process tree when it runs."""

    def __init__(self, rt, result: bool) -> None:
        self.rt = rt
        self.result = result
        self.pids: set[int] = set()

    def __call__(self, outputs) -> bool:
        self.pids = pids_of(self.rt)
        return self.result


# -- the original leak, replayed -----------------------------------------------------------------


async def never_runs(ctx, inputs):
    raise AssertionError("a step after an abandoned one must not run")


async def test_abandoned_job_leaves_no_adapter_tree():
    async with open_runtime(term_grace=0.5) as rt:
        spy = TreeSpy(rt, True)
        flow = Flow(
            "triage",
            [
                Step(
                    "triage",
                    agent=AgentSpec([*WRAPPED, "--grandchild"]),
                    prompt="triage ticket {$job.ticket}",
                    exits=[ExitRule("not_worth_it", when=spy, action="abandon")],
                ),
                Step("fix", run=never_runs, after=["triage"]),
            ],
        )
        with trio.fail_after(BOUND):
            job = await rt.spawn(flow, {"ticket": 7})
            result = await job.wait()
        assert result.state is JobState.ABANDONED and result.reason == "not_worth_it"
        assert len(spy.pids) >= 5  # keeper, 3 generations, the agent's grandchild
        assert_all_gone(spy.pids)
        assert rt.stats().processes == 0
        assert_no_leaks(rt)


async def _slow_job(rt, flow_kw=None, step_kw=None, argv=None):
    spec = AgentSpec(argv or [*WRAPPED, "--slow", "--grandchild"])
    return await rt.spawn(
        Flow(
            "slow", [Step("agent", agent=spec, prompt="work", **(step_kw or {}))], **(flow_kw or {})
        )
    )


async def _wait_for_tree(rt, n: int) -> set[int]:
    while len(pids := pids_of(rt)) < n or rt.stats().processes < n:
        await trio.sleep(0.05)
    return pids


@pytest.mark.parametrize(
    "path", ["cancel", "abandon", "timeout", "step_timeout", "failure", "shutdown"]
)
async def test_tree_dies_on_every_terminal_path(path):
    flow_kw, step_kw, argv = {}, {}, None
    if path == "timeout":
        flow_kw = {"timeout": 1.5}
    elif path == "step_timeout":
        step_kw = {"timeout": 1.5}
    elif path == "failure":
        argv = [*WRAPPED, "--grandchild"]
    with trio.fail_after(BOUND):
        async with open_runtime(term_grace=0.5) as rt:
            if path == "failure":
                job = await rt.spawn(
                    Flow("f", [Step("agent", agent=AgentSpec(argv), prompt="[[crash]] go")])
                )
                # snapshot while the agent is alive: it crashes after two chunks
                pids = set()
                while job.result is None:
                    pids |= pids_of(rt)
                    await trio.sleep(0.01)
            else:
                job = await _slow_job(rt, flow_kw, step_kw, argv)
                pids = await _wait_for_tree(rt, 5)
                if path == "cancel":
                    await job.cancel()
                elif path == "abandon":
                    await job.abandon()
            if path != "shutdown":
                result = await job.wait()
                assert_no_leaks(rt)
        result = job.result
    expected = {
        "cancel": JobState.CANCELLED,
        "abandon": JobState.ABANDONED,
        "timeout": JobState.FAILED,
        "step_timeout": JobState.FAILED,
        "failure": JobState.FAILED,
        "shutdown": JobState.CANCELLED,
    }
    assert result.state is expected[path]
    if path == "failure":
        assert "exited" in result.error or "closed" in result.error
    assert pids
    assert_all_gone(pids)
    assert find_marked(lambda m: m.job_id == job.id) == []


async def test_sibling_mid_prompt_hears_cancel_then_dies(tmp_path):
    log = tmp_path / "agent.log"
    streaming = trio.Event()

    async def decide(ctx, inputs):
        await streaming.wait()  # the sibling is mid-prompt
        return {"verdict": "abandon"}

    flow = Flow(
        "branches",
        [
            Step(
                "a",
                run=decide,
                exits=[ExitRule("bail", when="outputs.verdict == 'abandon'", action="abandon")],
            ),
            Step("b", agent=AgentSpec([*WRAPPED, "--slow", "--log", str(log)]), prompt="long work"),
        ],
    )
    async with open_runtime(term_grace=0.5) as rt:
        with trio.fail_after(BOUND):
            job = await rt.spawn(flow)
            pids = await _wait_for_tree(rt, 4)
            while not log.exists() or "session/prompt" not in log.read_text():
                await trio.sleep(0.05)
            streaming.set()
            result = await job.wait()
        assert result.state is JobState.ABANDONED and result.steps["b"] is StepState.CANCELLED
        methods = [json.loads(line).get("method") for line in log.read_text().splitlines()]
        assert "session/prompt" in methods and "session/cancel" in methods
        assert methods.index("session/cancel") > methods.index("session/prompt")
        assert_all_gone(pids)
        assert_no_leaks(rt)


# -- processes that resist ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "flags", [["--ignore-sigterm"], ["--grandchild-ignore-term"], ["--setsid-child"]]
)
async def test_resisting_processes_die(flags):
    async with open_runtime(term_grace=0.3) as rt:
        with trio.fail_after(BOUND):
            job = await _slow_job(rt, argv=[*WRAPPED, "--slow", *flags])
            pids = await _wait_for_tree(rt, 4 if flags == ["--ignore-sigterm"] else 5)
            sessions = {os.getsid(p) for p in pids}
            while flags == ["--setsid-child"] and len(sessions) < 2:  # until the escaper has left
                await trio.sleep(0.05)
                pids = pids_of(rt)
                sessions = {os.getsid(p) for p in pids}
            t0 = trio.current_time()
            await job.cancel()
            elapsed = trio.current_time() - t0
        assert_all_gone(pids)
        assert_no_leaks(rt)
        if flags == ["--setsid-child"]:
            assert len(sessions) == 2  # one process really had left the group's session
        assert elapsed < BOUND


# -- the runtime itself is SIGKILLed --------------------------------------------------------------------

RUNTIME_CHILD = textwrap.dedent("""
    import json, sys, structlog, trio
    from runtime import AgentSpec, Flow, Step, open_runtime

    structlog.configure(logger_factory=structlog.PrintLoggerFactory(sys.stderr))
    from runtime.testing import marked_processes

    async def main():
        async with open_runtime() as rt:
            spec = AgentSpec([sys.executable, "-m", "actors.fake_agent", "--wrap", "2", "--slow",
                              "--setsid-child", "--grandchild-ignore-term"])
            await rt.spawn(Flow("doomed", [Step("a", agent=spec, prompt="run")]))
            while len(marked_processes(rt)) < 6:
                await trio.sleep(0.05)
            print(json.dumps({"runtime": rt.id, "pids": [p.pid for p in marked_processes(rt)]}), flush=True)
            await trio.sleep_forever()

    trio.run(main)
""")


async def test_runtime_sigkilled_mid_prompt_leaves_nothing():
    proc = await trio.lowlevel.open_process([PY, "-c", RUNTIME_CHILD], stdout=subprocess.PIPE)
    try:
        with trio.fail_after(BOUND):
            line = b""
            while not line.endswith(b"\n"):
                line += await proc.stdout.receive_some(4096)
        info = json.loads(line)
        assert len(info["pids"]) >= 6
        proc.send_signal(signal.SIGKILL)
        await proc.wait()
        with trio.fail_after(5):
            while find_marked(lambda m: m.runtime_id == info["runtime"]):
                await trio.sleep(0.1)
        assert_all_gone(set(info["pids"]))
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        await proc.stdout.aclose()


# -- bad input from the agent -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "directive, cause",
    [
        ("[[crash]]", "closed"),
        ("[[garbage]]", "not JSON"),
        ("[[oversized]]", "longer than"),
        ("[[eof]]", "closed"),
    ],
)
async def test_bad_agent_output_fails_the_step_clearly(directive, cause):
    flow = Flow(
        "bad",
        [
            Step(
                "a",
                agent=AgentSpec(FAKE),
                prompt=f"{directive} hello",
                on_error=OnError("retry", max_attempts=2, backoff=0.01),
            )
        ],
    )
    async with open_runtime(term_grace=0.3) as rt:
        with trio.fail_after(BOUND):
            job = await rt.spawn(flow)
            events = job.events()
            result = await job.wait()
        assert result.state is JobState.FAILED and result.reason == "step_failed:a"
        assert "ProtocolError" in result.error and cause in result.error, result.error
        failed = [e async for e in events if isinstance(e, StepFailed)]
        assert [(e.attempt, e.action) for e in failed] == [
            (1, "retry"),
            (2, "fail"),
        ]  # routed by on_error
        assert_no_leaks(rt)


# -- workspace confinement -------------------------------------------------------------------------------


async def test_agent_file_access_is_confined_to_the_job_workspace(tmp_path):
    flow = Flow(
        "fs",
        [
            Step("escape", agent=AgentSpec(FAKE), prompt="[[fs-escape]]"),
            Step("write", agent=AgentSpec(FAKE), prompt="[[fs-write:notes/out.txt]]"),
            Step("outside", agent=AgentSpec(FAKE), prompt="[[fs-write:/tmp/corral-escape.txt]]"),
        ],
    )
    async with open_runtime(workspace=tmp_path) as rt:
        with trio.fail_after(BOUND):
            result = await (await rt.spawn(flow, job_id="fsjob")).wait()
        assert result.state is JobState.COMPLETED
        assert "outside the workspace" in result.outputs["escape"]["text"]
        assert "fs write ok" in result.outputs["write"]["text"]
        assert (tmp_path / "fsjob" / "notes" / "out.txt").exists()
        assert "outside the workspace" in result.outputs["outside"]["text"]
        assert not Path("/tmp/corral-escape.txt").exists()
        assert_no_leaks(rt)


# -- command steps and ctx.open_process -----------------------------------------------------------------


async def test_command_step_outputs_and_failure():
    ok = Step(
        "ok",
        command=[
            PY,
            "-c",
            "import json,sys; d=json.load(sys.stdin); print(json.dumps({'got': d['x']}))",
        ],
        inputs={"x": "$job.x"},
    )
    text = Step("text", command=[PY, "-c", "print('plain words')"], after=["ok"])
    bad = Step(
        "bad",
        command=[PY, "-c", "import sys; sys.stderr.write('it broke\\n'); sys.exit(4)"],
        after=["text"],
    )
    async with open_runtime() as rt:
        with trio.fail_after(BOUND):
            result = await (await rt.spawn(Flow("cmd", [ok, text, bad]), {"x": 42})).wait()
        assert result.outputs["ok"] == {"got": 42}
        assert result.outputs["text"] == {"stdout": "plain words\n"}
        assert (
            result.state is JobState.FAILED
            and "status 4" in result.error
            and "it broke" in result.error
        )
        assert_no_leaks(rt)


async def test_python_step_open_process_is_contained():
    seen = {}
    started = trio.Event()

    async def step(ctx, inputs):
        async with ctx.open_process([PY, "-c", "import signal; signal.pause()"]) as group:
            seen["pid"] = group.pid
            started.set()
            await trio.sleep_forever()

    async with open_runtime(term_grace=0.3) as rt:
        with trio.fail_after(BOUND):
            job = await rt.spawn(Flow("p", [Step("a", run=step)]))
            await started.wait()
            seen["count"] = rt.stats().processes
            await job.cancel()
        assert seen["count"] >= 1
        assert_all_gone({seen["pid"]})
        assert_no_leaks(rt)


# -- adapters are scoped to the job ------------------------------------------------------------------------


async def test_equal_specs_share_one_adapter_within_a_job_never_across_jobs():
    spec = AgentSpec(FAKE)
    flow = Flow(
        "share",
        [Step("a", agent=spec, prompt="one"), Step("b", agent=spec, prompt="two", after=["a"])],
    )
    async with open_runtime() as rt:
        spies = []

        async def spawn_and_watch():
            job = await rt.spawn(flow)
            groups = set()
            while job.result is None:
                groups |= {m.group_id for m in _markers(job.id)}
                await trio.sleep(0.01)
            spies.append(groups)

        with trio.fail_after(BOUND):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(spawn_and_watch)
                nursery.start_soon(spawn_and_watch)
        assert [len(g) for g in spies] == [1, 1]  # one adapter per job, shared by its two steps
        assert spies[0].isdisjoint(spies[1])
        assert_no_leaks(rt)


def _markers(job_id):
    from actors.process import MARKER_ENV, Marker

    out = []
    for proc in find_marked(lambda m: m.job_id == job_id):
        try:
            out.append(Marker.parse(proc.environ()[MARKER_ENV]))
        except (psutil.Error, KeyError):
            pass
    return [m for m in out if m]


# -- churn ------------------------------------------------------------------------------------------------------


async def test_churn_300_jobs_returns_to_baseline():
    me = psutil.Process()
    flow = Flow(
        "churn",
        [
            Step(
                "a",
                agent=AgentSpec(FAKE),
                prompt="{$job.mode} hello",
                exits=[ExitRule("drop", when="'abandon' in outputs.text", action="abandon")],
            )
        ],
    )
    slow = Flow("churn-slow", [Step("a", agent=AgentSpec([*FAKE, "--slow"]), prompt="go")])
    async with open_runtime(max_running_jobs=8, term_grace=0.3) as rt:
        # warm up once so lazily opened fds (thread pools, /proc handles) are in the baseline
        await (await rt.spawn(flow, {"mode": "done"})).wait()
        fds, children = me.num_fds(), len(me.children(recursive=True))
        states = []
        with trio.fail_after(240):
            async with trio.open_nursery() as nursery:
                for i in range(300):
                    kind = i % 3
                    if kind == 2:
                        job = await rt.spawn(slow)

                        async def cancel_later(job, events):
                            async for event in events:  # cancel once the agent is streaming
                                if type(event).__name__ == "StepStream":
                                    break
                            states.append((await job.cancel()).state)

                        nursery.start_soon(cancel_later, job, job.events())
                    else:
                        job = await rt.spawn(flow, {"mode": "abandon" if kind else "done"})

                        async def wait(job=job):
                            states.append((await job.wait()).state)

                        nursery.start_soon(wait)
        assert states.count(JobState.COMPLETED) == 100
        assert states.count(JobState.ABANDONED) == 100
        assert states.count(JobState.CANCELLED) == 100
        assert_no_leaks(rt)
        assert len(me.children(recursive=True)) == children
        assert me.num_fds() <= fds
        assert marked_processes(rt) == []


# -- interop with an agent written with the official SDK ------------------------------------------


async def test_official_sdk_agent_prompt_stream_and_cancel():
    async with open_runtime(term_grace=0.5) as rt:
        with trio.fail_after(BOUND):
            job = await rt.spawn(
                Flow("sdk", [Step("a", agent=AgentSpec(SDK_AGENT), prompt="hello from corral")])
            )
            events = job.events()
            result = await job.wait()
        assert result.state is JobState.COMPLETED
        assert result.outputs["a"] == {"text": "hello from corral", "stop_reason": "end_turn"}
        deltas = [
            e.update
            for e in [e async for e in events]
            if type(e).__name__ == "StepStream" and type(e.update).__name__ == "Delta"
        ]
        assert "".join(d.delta.text for d in deltas) == "hello from corral"

        with trio.fail_after(BOUND):
            job = await rt.spawn(
                Flow("sdk-slow", [Step("a", agent=AgentSpec(SDK_AGENT), prompt="[[slow]]")])
            )
            while rt.stats().processes < 2:
                await trio.sleep(0.05)
            await trio.sleep(0.3)
            result = await job.cancel()
        assert result.state is JobState.CANCELLED
        assert_no_leaks(rt)
