"""``open_cluster_runtime`` takes ``open_runtime``'s options and gives them to every host's runtime
(a store path each host opens, max_results kept on the controller too), and refuses the ones a
cluster cannot honour before anything starts."""

from __future__ import annotations

import pytest
import trio

from runtime import JobNotFound, JobState, event_to_dict, open_runtime
from runtime.cluster import RayCluster, open_cluster_runtime
from runtime.cluster.testing import assert_cluster_no_leaks
from runtime.store import MemoryStore, SqliteStore

from .support import BOUND, complete_flow

pytestmark = pytest.mark.usefixtures("ray_head")


async def test_durable_jobs_on_hosts_record_into_the_sqlite_path(tmp_path):
    db = tmp_path / "cluster.db"
    async with open_cluster_runtime(RayCluster(hosts=2, jobs_per_host=2), store=db, max_results=3,
                                    term_grace=0.5) as rt:
        with trio.fail_after(BOUND):
            handles = [await rt.spawn(complete_flow(), {"n": n}, record="durable") for n in range(5)]
            results = [await h.wait() for h in handles]
            assert {r.state for r in results} == {JobState.COMPLETED}, [(r.state, r.reason, r.error) for r in results]
            streamed = {h.id: [event_to_dict(e) async for e in h.events(replay=True)] for h in handles}
            # the controller keeps the latest max_results results, like the embedded runtime
            kept = [await _kept_result(rt, h.id) for h in handles]
            assert sum(r is not None for r in kept) == 3, kept
            assert all(k in (None, r) for k, r in zip(kept, results, strict=True)), (kept, results)
            stats = await rt.stats_async()
            assert stats.results == 3, stats
            await assert_cluster_no_leaks(rt)
    async with SqliteStore(db) as store:  # both hosts wrote into the one file; nothing was lost
        for h in handles:
            rec = await store.get_job(h.id)
            assert rec is not None and rec.state == "completed", rec
            rows = await store.read_events(h.id)
            assert [r.seq for r in rows] == [e["seq"] for e in streamed[h.id]], (
                [(r.seq, r.type) for r in rows], [(e["seq"], e["type"]) for e in streamed[h.id]])
            assert rows[-1].type == "job_finished"


async def test_cluster_refuses_what_it_cannot_honour():
    with pytest.raises(ValueError, match="resume: not supported on a cluster"):
        async with open_cluster_runtime(RayCluster(), resume=True):
            pass
    with pytest.raises(ValueError, match=r"max_running_jobs: on a cluster the bound is RayCluster\(jobs_per_host"):
        async with open_cluster_runtime(RayCluster(), max_running_jobs=3):
            pass
    with pytest.raises(TypeError, match=r"store: on a cluster give a path .* not a MemoryStore object"):
        async with open_cluster_runtime(RayCluster(), store=MemoryStore()):
            pass
    with pytest.raises(TypeError, match="cluster"):  # the kernel knows nothing of clusters
        async with open_runtime(cluster=RayCluster()):
            pass
    with pytest.raises(ValueError, match="hosts"):
        RayCluster(hosts=0)
    async with open_cluster_runtime(RayCluster(hosts=1, jobs_per_host=1)) as rt:
        with pytest.raises(RuntimeError, match="named cluster"):
            rt.detach()


async def _kept_result(rt, job_id):
    """The controller's kept result of a finished job; ``None`` once it was evicted (unknown)."""
    try:
        return await rt.result(job_id)
    except JobNotFound:
        return None
