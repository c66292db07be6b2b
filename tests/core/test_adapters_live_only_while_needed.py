"""A job's agent adapter lives only while a step still able to run needs it: released (process
tree gone, task ended) when no running or pending agent step uses its spec and while the job is
paused; started again on demand (a resumed or looped agent step), shared while a step waiting to
run keeps its spec up.

Adapter starts are counted from the agents' own logs (``--log``: one ``initialize`` per agent
process started) and the markers' group ids; a release is waited for on the released processes'
pidfds, never by polling.  Real subprocesses, a real clock bounded by trio.fail_after."""

from __future__ import annotations

import json

import psutil
import pytest
import trio
import trio.testing
from core_support import BOUND, FAKE, WRAPPED

from actors.process import MARKER_ENV, Marker, find_marked
from runtime import AgentSpec, ExitRule, Flow, JobPaused, JobState, Step, open_runtime
from runtime.testing import assert_no_leaks, job_tasks, wait_exited


def job_groups(job_id: str) -> dict[int, str]:
    """pid -> process group id of ``job_id``'s live processes (from their markers)."""
    out = {}
    for proc in find_marked(lambda m: m.job_id == job_id):
        try:
            marker = Marker.parse(proc.environ()[MARKER_ENV])
        except (psutil.Error, KeyError):
            continue
        if marker is not None:
            out[proc.pid] = marker.group_id
    return out


class GroupSpy:
    """An exit-rule condition that records the job's live process groups as its step ends
    (the step's adapter is still up then)."""

    def __init__(self, result: bool = False) -> None:
        self.job_id = ""
        self.result = result
        self.seen: list[dict[int, str]] = []

    def __call__(self, outputs) -> bool:
        self.seen.append(job_groups(self.job_id))
        return self.result

    @property
    def groups(self) -> list[set[str]]:
        return [set(s.values()) for s in self.seen]


async def wait_gone(pids) -> None:
    """Return once every process of ``pids`` has exited."""
    with trio.fail_after(BOUND):
        await wait_exited(pids)


def starts(log) -> int:
    """Agent processes started with ``--log log`` (each answers one ``initialize``)."""
    if not log.exists():
        return 0
    lines = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    return sum(1 for m in lines if m.get("method") == "initialize")


def adapter_tasks(job_id: str) -> list[str]:
    return [name for name in job_tasks({job_id}) if name.endswith(":adapter")]


async def no_adapter_left(rt, job_id: str, pids) -> None:
    """The released adapter's processes exit; then nothing of it is left in the job."""
    await wait_gone(pids)
    await trio.testing.wait_all_tasks_blocked(0.05)  # its task returns once the group is reaped
    assert find_marked(lambda m: m.job_id == job_id) == []
    assert rt.stats().processes == 0
    assert adapter_tasks(job_id) == []


@pytest.mark.parametrize("pause", ["escalate", "waits_for_resume"])
async def test_a_paused_job_holds_no_agent_process_and_resumes_with_a_fresh_adapter(tmp_path, pause):
    log = tmp_path / "agent.jsonl"
    spec = AgentSpec([*WRAPPED, "--grandchild", "--log", str(log)])  # keeper + 3 generations + child
    # paused by draft's escalate rule, or because final (reading $resume) waits for a resume
    ask, after = GroupSpy(result=pause == "escalate"), GroupSpy()
    flow = Flow(
        "review",
        [
            Step("draft", agent=spec, prompt="draft it", exits=[ExitRule("ask", when=ask, action="escalate")]),
            Step("final", agent=spec, prompt="final: {$resume.note}", after=["draft"],
                 exits=[ExitRule("look", when=after, action="advance")]),
        ],
    )
    async with open_runtime(term_grace=0.5) as rt:
        with trio.fail_after(BOUND):
            job = await rt.spawn(flow)
            ask.job_id = after.job_id = job.id
            events = job.events()
            async for event in events:
                if isinstance(event, JobPaused):
                    break
            await events.aclose()
            assert job.state is JobState.PAUSED
            [held] = ask.seen
            assert len(held) >= 5 and len(set(held.values())) == 1, held
            # paused, although step "final" (same spec) waits to run: the adapter is released
            await no_adapter_left(rt, job.id, held)
            assert job.state is JobState.PAUSED and starts(log) == 1

            await job.resume({"note": "ship it"})
            result = await job.wait()
        assert result.state is JobState.COMPLETED, result
        assert "final: ship it" in result.outputs["final"]["text"]
        assert starts(log) == 2  # the resumed agent step got a fresh adapter
        [fresh] = after.groups
        assert len(fresh) == 1 and fresh.isdisjoint(ask.groups[0])
        assert_no_leaks(rt)


async def test_an_adapter_no_later_step_needs_is_gone_while_a_python_step_runs(tmp_path):
    log1, log2 = tmp_path / "s1.jsonl", tmp_path / "s2.jsonl"
    s1 = AgentSpec([*WRAPPED, "--grandchild", "--log", str(log1)])
    s2 = AgentSpec([*FAKE, "--log", str(log2)])
    spy_a, spy_b = GroupSpy(), GroupSpy()
    during: dict[str, object] = {}

    async def between(ctx, inputs):
        [held] = spy_a.seen
        await no_adapter_left(rt, ctx.job_id, held)  # S1's tree exits while this step runs
        during["s2_started"] = starts(log2)
        return {"ok": True}

    flow = Flow(
        "handoff",
        [
            Step("a", agent=s1, prompt="one", exits=[ExitRule("look", when=spy_a, action="advance")]),
            Step("mid", run=between, after=["a"]),
            Step("b", agent=s2, prompt="two", after=["mid"],
                 exits=[ExitRule("look", when=spy_b, action="advance")]),
        ],
    )
    async with open_runtime(term_grace=0.5) as rt:
        with trio.fail_after(BOUND):
            job = await rt.spawn(flow)
            spy_a.job_id = spy_b.job_id = job.id
            result = await job.wait()
        assert result.state is JobState.COMPLETED, result
        assert during == {"s2_started": 0}  # S2 starts on demand, with step b
        assert (starts(log1), starts(log2)) == (1, 1)
        assert spy_b.groups[0].isdisjoint(spy_a.groups[0])
        assert_no_leaks(rt)


@pytest.mark.parametrize("between", [False, True], ids=["adjacent", "python_step_between"])
async def test_agent_steps_with_one_spec_in_sequence_share_one_adapter(tmp_path, between):
    log = tmp_path / "agent.jsonl"
    spec = AgentSpec([*FAKE, "--log", str(log)])
    spy = GroupSpy()

    async def mid(ctx, inputs):
        # step b, pending, keeps the adapter up while this step runs
        assert set(job_groups(ctx.job_id).values()) == spy.groups[0]
        return {}

    look = [ExitRule("look", when=spy, action="advance")]
    steps = [Step("a", agent=spec, prompt="one", exits=look)]
    if between:
        steps.append(Step("mid", run=mid, after=["a"]))
    steps.append(Step("b", agent=spec, prompt="two", after=[steps[-1].name], exits=look))
    async with open_runtime() as rt:
        with trio.fail_after(BOUND):
            job = await rt.spawn(Flow("share", steps))
            spy.job_id = job.id
            result = await job.wait()
        assert result.state is JobState.COMPLETED, result
        assert starts(log) == 1  # one process tree started for both steps
        assert len(spy.seen) == 2 and spy.seen[0] == spy.seen[1]  # same pids, same group
        assert_no_leaks(rt)


async def test_an_agent_step_a_loop_runs_again_gets_an_adapter_again(tmp_path):
    log = tmp_path / "agent.jsonl"
    spec = AgentSpec([*FAKE, "--log", str(log)])
    spy = GroupSpy()
    released: list[int] = []

    async def review(ctx, inputs):
        # no running or pending agent step needs the spec now: draft's adapter is released,
        # and the loop below starts it again on demand
        await no_adapter_left(rt, ctx.job_id, spy.seen[-1])
        released.append(ctx.iteration)
        return {"again": ctx.iteration == 0}

    flow = Flow(
        "redraft",
        [
            Step("draft", agent=spec, prompt="draft {$job.topic}",
                 exits=[ExitRule("look", when=spy, action="advance")]),
            Step("review", run=review, after=["draft"],
                 exits=[ExitRule("again", when="outputs.again", action="loop", target="draft",
                                 max_iterations=1)]),
        ],
    )
    async with open_runtime(term_grace=0.5) as rt:
        with trio.fail_after(BOUND):
            job = await rt.spawn(flow, {"topic": "adapters"})
            spy.job_id = job.id
            result = await job.wait()
        assert result.state is JobState.COMPLETED, result
        assert released == [0, 1]
        assert starts(log) == 2  # the looped draft got an adapter again
        first, second = spy.groups
        assert len(first) == len(second) == 1 and first.isdisjoint(second)
        assert "draft adapters" in result.outputs["draft"]["text"]
        assert_no_leaks(rt)
