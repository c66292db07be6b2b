"""What spawn() promises before anything runs: inputs that fit the flow (declared, defaulted, a
missing $job input refused), literals passed as written, job ids never reused (live, kept or
stored), and unknown jobs named as such."""

from __future__ import annotations

import pytest
import trio
from core_support import echo, ok

from runtime import (
    Flow,
    FlowInput,
    InputError,
    JobExistsError,
    JobNotFound,
    JobStateError,
    Step,
    open_runtime,
)
from runtime.store import SqliteStore
from runtime.testing import assert_no_leaks


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


async def test_a_missing_job_input_is_refused_at_spawn(tmp_path):
    flow = Flow("f", [Step("a", run=ok, inputs={"x": "$job.nope.deep"})])
    async with open_runtime(store=tmp_path / "s.db") as rt:
        with pytest.raises(InputError) as info:
            await rt.spawn(flow, {"other": 1}, job_id="j1", record="durable")
        assert info.value.problems == {"nope.deep": "missing, read by step 'a' as $job.nope.deep"}
        assert await rt.store.list_jobs() == [] and rt.jobs() == []
        with pytest.raises(InputError):  # the path is followed: a present but wrong shape fails too
            await rt.spawn(flow, {"nope": 3})
