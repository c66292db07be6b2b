"""record="durable": every event reaches the store in seq order, complete and monotonic whatever
ends the job; replay reads the store (from a fresh runtime too, or live then following); memory
stays flat however many jobs were recorded; two runtimes on one file keep their own jobs."""

from __future__ import annotations

import gc
import tracemalloc

import trio
import trio.testing
from hypothesis import given, settings
from hypothesis import strategies as st
from store_support import first_events, noop, small_flow, until_paused

from runtime import ExitRule, Flow, JobFinished, JobState, Step, open_runtime
from runtime.store import MemoryStore
from runtime.testing import assert_no_leaks

BOUND = 60


async def test_durable_records_everything_and_memory_stays_flat(tmp_path):
    async with open_runtime(store=tmp_path / "c.db", max_results=50) as rt:
        tracemalloc.start()
        try:
            ids = []
            for i in range(600):
                job = await rt.spawn(small_flow(i), record="durable")
                await job.wait()
                ids.append(job.id)
                if i == 99:
                    gc.collect()
                    at_100 = tracemalloc.get_traced_memory()[0]
            gc.collect()
            at_600 = tracemalloc.get_traced_memory()[0]
        finally:
            tracemalloc.stop()
        assert at_600 - at_100 < 1_000_000
        for job_id in (ids[0], ids[-1]):
            events = [e async for e in rt.events(job_id)]
            assert [e.seq for e in events] == list(range(8))
            assert isinstance(events[-1], JobFinished) and events[-1].state == "completed"
        assert_no_leaks(rt)


async def test_replay_from_a_fresh_runtime_reads_the_store(tmp_path):
    db = tmp_path / "c.db"
    async with open_runtime(store=db) as rt:
        job = await rt.spawn(small_flow(), record="durable")
        live = [e async for e in job.events()]
    async with open_runtime(store=db) as fresh:
        assert fresh.jobs() == []
        replayed = [e async for e in fresh.events(job.id)]
        assert [e.seq for e in replayed] == [e.seq for e in live] == list(range(len(live)))
        assert [e.type for e in replayed] == [e.type for e in live]
        result = await fresh.result(job.id)
        assert result.state is JobState.COMPLETED and result.outputs["b"] == {"n": 1}


async def test_live_durable_replay_then_follow(tmp_path):
    gate = trio.Event()

    async def wait_gate(ctx, inputs):
        await gate.wait()
        return {}

    async with open_runtime(store=tmp_path / "c.db") as rt:
        job = await rt.spawn(Flow("f", [Step("a", run=noop), Step("b", run=wait_gate, after=["a"])]),
                             record="durable")
        await first_events(job, 5)  # published before the replay subscribes: read from the store
        assert job.state is JobState.RUNNING
        events = job.events(replay=True)
        gate.set()
        seqs = [e.seq async for e in events]
        assert seqs == list(range(len(seqs))) and seqs[-1] >= 7


async def test_two_live_runtimes_on_one_file_keep_their_own_jobs(tmp_path):
    db = tmp_path / "c.db"
    flow = Flow("hold", [Step("a", run=noop, exits=[ExitRule("hold", action="escalate")])])
    async with open_runtime(store=db) as rt1:
        job = await rt1.spawn(flow, record="durable")
        await until_paused(job)
        async with open_runtime(store=db, resume=True) as rt2:
            assert rt2.jobs() == []  # rt1 is alive: its job is not taken over
            other = await rt2.spawn(small_flow(), record="durable")
            assert (await other.wait()).state is JobState.COMPLETED
            assert rt1.get(other.id) is None
        assert job.state is JobState.PAUSED
        await job.cancel()


async def _durable_scenario(outside: str, at: float, pause: bool) -> None:
    async def slow(ctx, inputs):
        await trio.sleep(2)
        return {"x": 1}

    exits = [ExitRule("hold", action="escalate")] if pause else []
    flow = Flow("p", [Step("a", run=slow, exits=exits), Step("b", run=slow, after=["a"]), Step("c", run=noop)])
    store = MemoryStore()
    async with open_runtime(store=store) as rt:
        job = await rt.spawn(flow, record="durable")
        await trio.sleep(at)
        if outside == "cancel":
            await job.cancel()
        elif outside == "abandon":
            await job.abandon()
        elif job.state is JobState.PAUSED and outside == "resume":
            await job.resume({})
        if outside != "shutdown":
            with trio.move_on_after(100):  # a job left paused ends with the runtime's shutdown
                await job.wait()
    async with store:  # the runtime closed it; what it holds is still there
        rows = await store.read_events(job.id)
        assert [r.seq for r in rows] == list(range(len(rows)))
        assert rows[-1].type == "job_finished" and [r.type for r in rows].count("job_finished") == 1
        assert (await store.get_job(job.id)).state == job.result.state.value


@settings(max_examples=60, deadline=None)
@given(outside=st.sampled_from(["none", "cancel", "abandon", "shutdown", "resume"]),
       at=st.sampled_from([0, 0.5, 1.5, 3.0, 5.0]), pause=st.booleans())
def test_durable_event_log_is_complete_and_monotonic(outside, at, pause):
    trio.run(_durable_scenario, outside, at, pause, clock=trio.testing.MockClock(autojump_threshold=0))
