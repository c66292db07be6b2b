"""Agent and command steps work inside their job: bad agent output fails the step clearly (routed by
on_error), file access is confined to the job's workspace, a command's stdout becomes outputs,
equal agent specs share one adapter within a job and never across jobs, and an agent written with
the official ACP SDK interoperates.  Real subprocesses, a real clock bounded by trio.fail_after."""

from __future__ import annotations

from pathlib import Path

import psutil
import pytest
import trio
from core_support import BOUND, FAKE, PY, SDK_AGENT, until_streaming

from runtime import AgentSpec, ExitRule, Flow, JobState, OnError, Step, StepFailed, open_runtime
from runtime.testing import assert_no_leaks, marked_processes


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


async def test_equal_specs_share_one_adapter_within_a_job_never_across_jobs():
    spec = AgentSpec(FAKE)
    groups: dict[str, set[str]] = {}  # job id -> the process groups seen carrying its marker

    def watch(outputs) -> bool:
        # an exit rule's condition runs as its step ends, in the job, before an adapter no later
        # step needs is released: a second adapter (or a restarted one) would be seen at step b
        for marker in _markers(rt):
            groups.setdefault(marker.job_id, set()).add(marker.group_id)
        return False

    look = [ExitRule("look", when=watch, action="abandon")]
    flow = Flow(
        "share",
        [Step("a", agent=spec, prompt="one", exits=look),
         Step("b", agent=spec, prompt="two", after=["a"], exits=look)],
    )
    async with open_runtime() as rt:
        spies = []

        async def spawn_and_watch():
            job = await rt.spawn(flow)
            await job.wait()
            spies.append(groups[job.id])

        with trio.fail_after(BOUND):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(spawn_and_watch)
                nursery.start_soon(spawn_and_watch)
        assert [len(g) for g in spies] == [1, 1]  # one adapter per job, shared by its two steps
        assert spies[0].isdisjoint(spies[1])
        assert_no_leaks(rt)


def _markers(rt):
    """The markers of ``rt``'s live processes."""
    from actors.process import MARKER_ENV, Marker

    out = []
    for proc in marked_processes(rt):
        try:
            out.append(Marker.parse(proc.environ()[MARKER_ENV]))
        except (psutil.Error, KeyError):
            pass
    return [m for m in out if m]


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
            await until_streaming(job)  # mid-prompt: the agent streams until cancelled
            assert rt.stats().processes >= 2  # the keeper and the agent
            result = await job.cancel()
        assert result.state is JobState.CANCELLED
        assert_no_leaks(rt)
