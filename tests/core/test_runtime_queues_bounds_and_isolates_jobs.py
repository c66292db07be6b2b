"""The runtime: max_running_jobs queues jobs first in first out (shutdown ends the queued ones too),
results are bounded by max_results, two runtimes share nothing, and stats() counts job tasks."""

from __future__ import annotations

import pytest
import trio
import trio.lowlevel
import trio.testing
from core_support import forever, ok

from runtime import Flow, JobNotFound, JobState, Step, open_runtime
from runtime.testing import assert_no_leaks


async def test_max_running_jobs_fifo(autojump_clock):
    order = []

    async def record(ctx, inputs):
        order.append(inputs["i"])
        await trio.sleep(1)

    flow = Flow("f", [Step("a", run=record, inputs={"i": "$job.i"})])
    async with open_runtime(max_running_jobs=1) as rt:
        jobs = [await rt.spawn(flow, {"i": i}) for i in range(6)]
        assert [j.state for j in jobs[1:]] == [JobState.PENDING] * 5
        assert rt.stats().pending_jobs == 5
        await trio.sleep(0.5)
        assert rt.stats().live_jobs == 1
        cancelled = await jobs[4].cancel()  # a queued job ends without running
        assert cancelled.state is JobState.CANCELLED
        for j in jobs:
            await j.wait()
        assert order == [0, 1, 2, 3, 5]
        assert_no_leaks(rt)


async def test_shutdown_with_pending_jobs(autojump_clock):
    async with open_runtime(max_running_jobs=1) as rt:
        jobs = [await rt.spawn(Flow("f", [Step("a", run=forever)])) for _ in range(3)]
        await trio.sleep(1)
    assert [j.result.state for j in jobs] == [JobState.CANCELLED] * 3
    assert {j.result.reason for j in jobs} == {"shutdown"}


async def test_results_are_bounded(autojump_clock):
    flow = Flow("f", [Step("a", run=ok)])
    async with open_runtime(max_results=100) as rt:
        ids = []
        for _ in range(1000):
            job = await rt.spawn(flow)
            await job.wait()
            ids.append(job.id)
        assert rt.stats().results == 100
        with pytest.raises(JobNotFound):  # evicted: an in-memory runtime keeps max_results
            await rt.result(ids[0])
        assert (await rt.result(ids[-1])).state is JobState.COMPLETED
        assert rt.jobs() == [] and rt.get(ids[-1]) is None
        assert_no_leaks(rt)


async def test_two_runtimes_share_nothing(autojump_clock):
    flow = Flow("f", [Step("a", run=forever)])
    async with open_runtime() as rt1, open_runtime() as rt2:
        j1 = await rt1.spawn(flow)
        j2 = await rt2.spawn(flow)
        assert rt1.get(j2.id) is None and rt2.get(j1.id) is None
        assert [j.id for j in rt1.jobs()] == [j1.id]
        await j1.cancel()
        assert await rt1.result(j1.id) is not None
        with pytest.raises(JobNotFound):
            await rt2.result(j1.id)
        assert j2.state is JobState.RUNNING
        assert rt1.stats().live_jobs == 0 and rt2.stats().live_jobs == 1
        await j2.cancel()


async def test_stats_count_job_tasks(autojump_clock):
    async with open_runtime() as rt:
        job = await rt.spawn(Flow("f", [Step("a", run=forever), Step("b", run=forever)]))
        await trio.sleep(1)
        stats = rt.stats()
        assert stats.live_jobs == 1 and stats.tasks == 3  # the job actor and two steps
        await job.cancel()
        assert rt.stats().tasks == 0
