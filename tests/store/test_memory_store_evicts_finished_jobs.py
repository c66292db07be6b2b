"""MemoryStore keeps at most max_finished_jobs finished jobs, evicting the oldest finished first
with their events and checkpoints; live jobs are never evicted."""

from __future__ import annotations

import gc
import tracemalloc

from store_support import event, job

from runtime.store import Checkpoint, MemoryStore


async def test_memory_store_evicts_finished_jobs_oldest_first():
    async with MemoryStore(max_finished_jobs=5) as store:
        for i in range(3):
            await store.put_job(job(f"live{i}", created_at=float(i)))
        tracemalloc.start()
        try:
            for i in range(1000):
                jid = f"done{i}"
                await store.put_job(job(jid, created_at=10.0 + i))
                await store.append_events([event(jid, 0), event(jid, 1)])
                await store.put_checkpoint(Checkpoint(jid, "a", {"i": i}, iteration=1))
                await store.update_job(jid, state="completed", finished_at=20.0 + i)
                assert store.jobs_held <= 3 + 5
                if i == 199:
                    gc.collect()
                    at_200 = tracemalloc.get_traced_memory()[0]
            gc.collect()
            at_1000 = tracemalloc.get_traced_memory()[0]
        finally:
            tracemalloc.stop()
        assert store.jobs_held == 8
        kept = [r.job_id for r in await store.list_jobs(states=["completed"])]
        assert kept == [f"done{i}" for i in range(999, 994, -1)]
        assert [r.job_id for r in await store.list_jobs(states=["running"])] == [
            "live2",
            "live1",
            "live0",
        ]
        assert await store.get_job("done0") is None
        assert await store.read_events("done0") == []
        assert await store.get_checkpoints("done994") == {}
        assert len(await store.read_events("done999")) == 2
        # flat, not 1000: nothing of an evicted job is kept, not even an empty entry per job
        # (800 of those would be over 100 kB)
        assert at_1000 - at_200 < 32_000, f"grew {at_1000 - at_200} bytes from job 200 to 1000"
        for i in range(995):
            assert await store.read_events(f"done{i}") == [] and await store.get_checkpoints(f"done{i}") == {}
        # a job that finishes later counts from when it finished, not when it was created
        await store.update_job("live0", state="failed", finished_at=5000.0)
        assert store.jobs_held == 7 and await store.get_job("done995") is None
        assert await store.get_job("live0") is not None
