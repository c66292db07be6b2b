"""Recording is off unless a job asks for it: build, spawn, wait, discard stays flat with nothing
recorded (the original leak, replayed); record="memory" keeps a bounded ring that is gone with
the job."""

from __future__ import annotations

import gc
import tracemalloc

import trio
import trio.testing

from runtime import Flow, Step, open_runtime
from runtime.core.eventsize import event_size
from runtime.store import MemoryStore
from runtime.testing import assert_no_leaks


async def noop(ctx, inputs):
    return {"n": 1}


def small_flow(i: int = 0) -> Flow:
    # "build flow": a fresh flow object every iteration, as the leaking framework's users did
    return Flow(f"loop{i % 3}", [Step("a", run=noop), Step("b", run=noop, after=["a"])])


async def test_build_spawn_wait_discard_with_recording_off_stays_flat(autojump_clock):
    async with open_runtime(store=MemoryStore(max_finished_jobs=100), max_results=100) as rt:
        # nothing allocated per event: a running job that records nothing has no recorder and no
        # ring, so a replay has nothing from before it subscribed
        gate = trio.Event()

        async def held(ctx, inputs):
            await gate.wait()
            return {}

        job = await rt.spawn(Flow("held", [Step("a", run=noop), Step("b", run=held, after=["a"])]))
        await trio.testing.wait_all_tasks_blocked()  # a has run, b waits: five events published
        stats = rt.stats()
        assert stats.live_jobs == 1 and stats.recorders == 0 and stats.recorded_bytes == 0
        replay = job.events(replay=True)
        gate.set()
        seqs = [e.seq async for e in replay]
        assert seqs[0] == 5  # not 0: nothing from before it was kept
        await job.wait()

        tracemalloc.start()
        try:
            for i in range(10_000):
                job = await rt.spawn(small_flow(i))  # record="off" is the default
                stats = rt.stats()
                assert stats.recorders == 0 and stats.recorded_bytes == 0
                await job.wait()
                if i == 999:
                    gc.collect()
                    at_1k = tracemalloc.get_traced_memory()[0]
            gc.collect()
            at_10k = tracemalloc.get_traced_memory()[0]
        finally:
            tracemalloc.stop()
        assert at_10k - at_1k < 1_000_000, f"grew {at_10k - at_1k} bytes from job 1000 to 10000"
        assert_no_leaks(rt)


async def test_memory_ring_is_bounded_and_released(autojump_clock):
    async def chatty(ctx, inputs):
        async with ctx.stream(mode="per_token") as s:
            for i in range(200):
                await s.delta(f"token {i} ")
        await trio.sleep(10)
        return {}

    async with open_runtime(record_max_events=50, record_max_bytes=20_000) as rt:
        job = await rt.spawn(Flow("chatty", [Step("a", run=chatty)]), record="memory")
        await trio.sleep(5)
        stats = rt.stats()
        assert stats.recorders == 1 and 0 < stats.recorded_bytes <= 20_000
        late = [e async for e in _take(job.events(replay=True), 50)]
        assert len(late) == 50 and late[0].seq > 0  # the oldest were dropped: bounded
        assert [e.seq for e in late] == list(range(late[0].seq, late[0].seq + 50))
        # a token the stream sized itself counts what event_size says of the event it becomes
        assert stats.recorded_bytes == sum(event_size(e) for e in late)
        await job.wait()
        stats = rt.stats()
        assert stats.recorders == 0 and stats.recorded_bytes == 0
        assert [e async for e in job.events(replay=True)] == []  # the ring went with the job
        assert_no_leaks(rt)


async def _take(iterator, n):
    i = 0
    async for item in iterator:
        yield item
        i += 1
        if i == n:
            return
