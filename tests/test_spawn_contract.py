"""What spawn() promises before anything runs: inputs that fit the flow, job ids never reused,
unknown jobs named as such, steps that read $resume waiting for one, and a flow deadline kept."""

from __future__ import annotations

import time

import attrs
import pytest
import trio

from runtime import (
    ExitRule,
    Flow,
    FlowInput,
    InputError,
    JobExistsError,
    JobNotFound,
    JobPaused,
    JobState,
    JobStateError,
    Step,
    StepStarted,
    open_runtime,
)
from runtime.store import SqliteStore
from runtime.testing import assert_no_leaks


async def echo(ctx, inputs):
    await trio.lowlevel.checkpoint()
    return dict(inputs)


def declared() -> Flow:
    return Flow("declared", [Step("a", run=echo, inputs={"t": "$job.ticket", "title": "$job.title"})],
                inputs={"ticket": int, "title": FlowInput(str, default="untitled"), "ratio": float})


async def test_declared_inputs_are_checked_and_defaulted_before_anything_runs(tmp_path):
    async with open_runtime(store=tmp_path / "s.db") as rt:
        with pytest.raises(InputError) as info:
            await rt.spawn(declared(), {"ticket": "7", "titel": "x"}, record="durable")
        assert info.value.problems == {
            "titel": "unknown input (did you mean 'title'?)",
            "ticket": "must be int, got str '7'",
            "ratio": "missing (a float)",
        }
        assert "ticket: must be int" in str(info.value)
        with pytest.raises(InputError) as info:
            await rt.spawn(declared(), {"ticket": True, "ratio": 1})
        assert list(info.value.problems) == ["ticket"]  # a bool is not an int; an int is a float
        assert await rt.store.list_jobs() == [] and rt.jobs() == []
        job = await rt.spawn(declared(), {"ticket": 7, "ratio": 1})
        result = await job.wait()
        assert result.outputs["a"] == {"t": 7, "title": "untitled"}
        assert result.inputs == {"ticket": 7, "ratio": 1, "title": "untitled"}
        assert_no_leaks(rt)


async def test_inputs_must_be_a_mapping():
    async with open_runtime() as rt:
        with pytest.raises(TypeError, match="inputs must be a mapping"):
            await rt.spawn(declared(), [("ticket", 1)])


async def test_literal_inputs_reach_the_step_as_written():
    flow = Flow("f", [Step("a", run=echo, inputs={"mode": "fast", "price": "$$5", "n": 3}),
                      Step("b", run=echo, inputs={"mode": "$a.mode"})])
    async with open_runtime() as rt:
        result = await (await rt.spawn(flow)).wait()
    assert result.outputs == {"a": {"mode": "fast", "price": "$5", "n": 3}, "b": {"mode": "fast"}}


async def test_a_stored_job_id_is_refused_and_nothing_stored_changes(tmp_path):
    db = tmp_path / "s.db"
    flow = Flow("f", [Step("a", run=echo, inputs={"n": "$job.n"})])
    async with open_runtime(store=db) as rt:
        first = await (await rt.spawn(flow, {"n": 1}, job_id="order-1", record="durable")).wait()
        async with SqliteStore(db) as store:
            before = (await store.get_job("order-1"), await store.read_events("order-1"))
        with pytest.raises(JobExistsError, match="order-1"):
            await rt.spawn(flow, {"n": 2}, job_id="order-1", record="durable")
    async with open_runtime(store=db) as rt:  # a later process: the id is in the store
        with pytest.raises(JobExistsError, match="in the store"):
            await rt.spawn(flow, {"n": 3}, job_id="order-1")
        assert rt.jobs() == []
        assert (await rt.result("order-1")).outputs == first.outputs
    async with SqliteStore(db) as store:
        assert (await store.get_job("order-1"), await store.read_events("order-1")) == before


async def test_a_live_or_kept_job_id_is_refused_in_memory():
    gate = trio.Event()

    async def hold(ctx, inputs):
        await gate.wait()

    async with open_runtime() as rt:
        live = await rt.spawn(Flow("f", [Step("a", run=hold)]), job_id="x")
        with pytest.raises(JobExistsError, match="live"):
            await rt.spawn(Flow("f", [Step("a", run=echo)]), job_id="x")
        gate.set()
        await live.wait()
        with pytest.raises(JobExistsError, match="finished"):
            await rt.spawn(Flow("f", [Step("a", run=echo)]), job_id="x")


async def test_unknown_jobs_raise_job_not_found_and_unrecorded_events_say_so(tmp_path):
    async with open_runtime(store=tmp_path / "s.db") as rt:
        with pytest.raises(JobNotFound) as info:
            await rt.result("nope")
        assert isinstance(info.value, KeyError) and str(info.value) == "no job 'nope'"
        with pytest.raises(JobNotFound):
            [e async for e in rt.events("nope")]
        done = await rt.spawn(Flow("f", [Step("a", run=echo)]), record="memory")
        await done.wait()
        with pytest.raises(JobStateError, match="not recorded"):
            [e async for e in rt.events(done.id)]


async def test_a_step_reading_resume_waits_for_a_resume(autojump_clock):
    seen: list = []

    async def use(ctx, inputs):
        seen.append(inputs["ok"])
        return {}

    async def slow(ctx, inputs):
        await trio.sleep(5)
        return {"ask": True}

    # `apply` reads $resume but depends on nothing: it must not run before the job is resumed
    flow = Flow("f", [
        Step("review", run=slow, exits=[ExitRule("ask", when="outputs.ask", action="escalate")]),
        Step("apply", run=use, inputs={"ok": "$resume.ok"}),
    ])
    async with open_runtime() as rt:
        job = await rt.spawn(flow)
        events = [e async for e in _until_paused(job)]
        assert not any(isinstance(e, StepStarted) and e.step == "apply" for e in events)
        assert seen == []
        await job.resume({"ok": True})
        assert (await job.wait()).state is JobState.COMPLETED
        assert seen == [True]


async def test_a_job_whose_only_ready_step_reads_resume_pauses(autojump_clock):
    # the escalating rule does not fire: nothing else can run, so the job waits for a human
    flow = Flow("f", [
        Step("review", run=echo, exits=[ExitRule("ask", when="False", action="escalate")]),
        Step("apply", run=echo, inputs={"ok": "$resume.ok"}, after=["review"]),
    ])
    async with open_runtime() as rt:
        job = await rt.spawn(flow)
        paused = [e async for e in _until_paused(job)][-1]
        assert (paused.step, paused.rule) == ("apply", "$resume") and job.state is JobState.PAUSED
        await job.resume({"ok": 1})
        assert (await job.wait()).outputs["apply"] == {"ok": 1}


async def _until_paused(job):
    async for event in job.events():
        yield event
        if isinstance(event, JobPaused):
            return


async def test_a_resumed_job_keeps_its_deadline_instead_of_a_fresh_timeout(tmp_path):
    import resume_steps  # importable steps: a resumed flow is rebuilt from its stored definition

    db, crashed = tmp_path / "s.db", tmp_path / "crashed.db"
    flow = Flow("slow", [Step("a", run=resume_steps.forever)], timeout=3600)
    async with open_runtime(store=db) as rt:
        job = await rt.spawn(flow, record="durable")
        async for event in job.events():
            if isinstance(event, StepStarted):
                break
        await job.cancel()
    async with SqliteStore(db) as store:
        rec = await store.get_job(job.id)
        rows = await store.read_events(job.id)
    assert rows[0].type == "job_started" and rows[0].payload["deadline"] > time.time() + 3000
    # the runtime died while the job ran, and its hour is over by the time a new runtime resumes
    k = next(i for i, row in enumerate(rows) if row.type == "step_started") + 1
    started = attrs.evolve(rows[0], payload={**rows[0].payload, "deadline": time.time() - 1})
    async with SqliteStore(crashed) as store:
        await store.put_job(attrs.evolve(rec, state="running", reason=None, finished_at=None,
                                         runtime_id="dead-runtime"))
        await store.append_events([started, *rows[1:k]])
    async with open_runtime(store=crashed, resume=True) as rt:
        with trio.fail_after(60):  # a fresh timeout would run the step for an hour
            handle = rt.get(job.id)  # None if it already ended while the runtime opened
            if handle is not None:
                await handle.wait()
        result = await rt.result(job.id)
        assert_no_leaks(rt)
    assert result.state is JobState.FAILED and result.reason == "timeout"
