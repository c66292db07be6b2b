"""Placement: a job goes to the least-loaded live host; beyond ``hosts x jobs_per_host`` jobs wait
PENDING on the controller, and a freed slot takes the first of them (real Ray, real agents)."""

from __future__ import annotations

import pytest
import trio

from runtime import JobState
from runtime.cluster import RayCluster, open_cluster_runtime
from runtime.cluster.testing import assert_cluster_no_leaks

from .support import BOUND, abandon_flow, complete_flow, marked, slow_flow, started

pytestmark = pytest.mark.usefixtures("ray_head")


async def test_fifty_jobs_over_two_hosts():
    # 12 slots, and the 16 slow jobs (n % 3 == 2) stream until they are cancelled, which happens only
    # after every spawn returned: at least 4 of them must be queued, however fast the others finish
    async with open_cluster_runtime(RayCluster(hosts=2, jobs_per_host=6), term_grace=0.5) as rt:
        ids = {h.runtime_id for h in rt.hosts}
        with trio.fail_after(BOUND):
            handles = []
            for n in range(50):
                flow = (complete_flow, abandon_flow, lambda: slow_flow())[n % 3]()
                handles.append((n, await rt.spawn(flow, {"n": n})))
            assert sum(n % 3 == 2 for n, _ in handles) == 16
            stats = await rt.stats_async()
            assert stats.pending_jobs >= 16 - 12 and stats.live_jobs <= 12, stats
            results = {}

            async def drive(n, handle):
                if n % 3 == 2:
                    await started(handle)
                    results[n] = await handle.cancel("stop")
                else:
                    results[n] = await handle.wait()

            async with trio.open_nursery() as nursery:
                for n, handle in handles:
                    nursery.start_soon(drive, n, handle)
        for n, res in results.items():
            if n % 3 == 0:
                assert res.state is JobState.COMPLETED, res
                assert res.outputs["tail"] == {"echo": {"n": n}}
                assert "text" in res.outputs["agent"]
            elif n % 3 == 1:
                assert (res.state, res.reason) == (JobState.ABANDONED, "drop"), res
                assert "never" not in res.outputs
            else:
                assert (res.state, res.reason) == (JobState.CANCELLED, "stop"), res
            assert await rt.result(res.job_id) == res
        assert len(results) == 50
        assert {h.host_pid for _, h in handles} == {h.pid for h in rt.hosts}  # all were placed
        assert marked(ids) == set()
        await assert_cluster_no_leaks(rt)


async def test_a_freed_slot_places_exactly_one_queued_job_in_spawn_order():
    # one slot: a short job, then three that stream until cancelled.  When the short one ends, the
    # first queued job (and only it) takes the slot; the other two stay PENDING on the controller
    async with open_cluster_runtime(RayCluster(hosts=1, jobs_per_host=1), term_grace=0.5) as rt:
        with trio.fail_after(BOUND):
            first = await rt.spawn(complete_flow(), {"n": 0})
            queued = [await rt.spawn(slow_flow()) for _ in range(3)]
            assert [h.state for h in queued] == [JobState.PENDING] * 3
            assert (await first.wait()).state is JobState.COMPLETED
            await started(queued[0])
            stats = await rt.stats_async()
            assert (stats.live_jobs, stats.pending_jobs) == (1, 2), stats
            assert [h.state for h in queued] == [JobState.RUNNING, JobState.PENDING, JobState.PENDING]
            # cancelling a queued job frees nothing on the host; cancelling the running one places the next
            assert (await queued[2].cancel("late")).state is JobState.CANCELLED
            assert (await queued[0].cancel("next")).state is JobState.CANCELLED
            await started(queued[1])
            assert (await rt.stats_async()).pending_jobs == 0
            assert (await queued[1].cancel("done")).state is JobState.CANCELLED
        await assert_cluster_no_leaks(rt)
