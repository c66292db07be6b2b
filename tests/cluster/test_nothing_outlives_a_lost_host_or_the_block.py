"""Containment on a cluster: a host SIGKILLed mid-job takes its jobs' processes with it (a
``setsid`` escaper included) and its jobs end ``host_lost``; leaving the block ends every job,
host actor and process (real Ray, real subprocesses, real clock)."""

from __future__ import annotations

import os
import signal

import pytest
import trio

from runtime import JobState
from runtime.cluster import RayCluster, open_cluster_runtime
from runtime.cluster.testing import assert_cluster_no_leaks

from .support import BOUND, complete_flow, marked, slow_flow, started, wait_gone

ray = pytest.importorskip("ray")  # the ``ray`` extra; CI installs it

pytestmark = pytest.mark.usefixtures("ray_head")


async def wait_marked(runtime_ids: set[str], count: int) -> set[int]:
    """Wait (polling the OS process table) until ``count`` processes carry one of these markers."""
    while len(pids := marked(runtime_ids)) < count:  # noqa: ASYNC110
        await trio.sleep(0.05)
    return pids


async def test_host_killed_mid_job():
    async with open_cluster_runtime(RayCluster(hosts=2, jobs_per_host=4), term_grace=0.5) as rt:
        with trio.fail_after(BOUND):
            doomed = await rt.spawn(slow_flow("--wrap", "1", "--setsid-child"))
            other = await rt.spawn(slow_flow())
            assert doomed.host_pid != other.host_pid
            rid = doomed.host_runtime_id
            pids = await wait_marked({rid}, 4)  # keeper, wrapper, agent, setsid child
            os.kill(doomed.host_pid, signal.SIGKILL)
            res = await doomed.wait()
            assert (res.state, res.reason) == (JobState.FAILED, "host_lost")
        await wait_gone(pids, 5)
        assert marked({rid}) == set()
        with trio.fail_after(BOUND):
            fresh = await rt.spawn(complete_flow(), {"n": 1})
            assert fresh.host_pid == other.host_pid
            assert (await fresh.wait()).state is JobState.COMPLETED
            # the last host fills up (4 slots) and one more job queues; then that host dies too:
            # its jobs fail host_lost, the queued one fails no_hosts (it would wait forever), and
            # spawn() says why it cannot run anything
            more = [await rt.spawn(slow_flow()) for _ in range(4)]
            assert [h.state for h in more] == [JobState.RUNNING] * 3 + [JobState.PENDING]
            await started(more[0])
            last_rid = other.host_runtime_id
            os.kill(other.host_pid, signal.SIGKILL)
            ends = [await h.wait() for h in [other, *more]]
            assert [(r.state, r.reason) for r in ends] == [(JobState.FAILED, "host_lost")] * 4 + [
                (JobState.FAILED, "no_hosts")]
            with pytest.raises(RuntimeError, match="every host"):
                await rt.spawn(complete_flow(), {"n": 2})
        with trio.fail_after(10):  # polling the OS process table until the last host's processes died
            while marked({last_rid}):  # noqa: ASYNC110
                await trio.sleep(0.05)
        await assert_cluster_no_leaks(rt)


async def test_shutdown_with_live_jobs_leaves_nothing():
    with trio.fail_after(BOUND):
        async with open_cluster_runtime(RayCluster(hosts=2, jobs_per_host=2), term_grace=0.5) as rt:
            handles = [await rt.spawn(slow_flow("--grandchild")) for _ in range(5)]  # one pending
            ids = {h.runtime_id for h in rt.hosts}
            for h in handles[:4]:
                await started(h)
            pids = await wait_marked(ids, 8)  # 4 agents and their grandchildren
            actors = [h.actor for h in rt.hosts]
            host_pids = {h.pid for h in rt.hosts}
    assert {h.result.reason for h in handles} == {"shutdown"}
    assert {h.result.state for h in handles} == {JobState.CANCELLED}
    await wait_gone(pids | host_pids, 10)
    for actor in actors:
        with pytest.raises(ray.exceptions.RayActorError):
            await trio.to_thread.run_sync(lambda a=actor: ray.get(a.info.remote(), timeout=10))
    assert marked(ids) == set()
