"""MemoryStore keeps at most max_finished_jobs finished jobs, evicting the oldest finished first
with their events and checkpoints; live jobs are never evicted."""

from __future__ import annotations

from store_support import event, job

from runtime.store import (
    Checkpoint,
    MemoryStore,
)


async def test_memory_store_evicts_finished_jobs_oldest_first():
    async with MemoryStore(max_finished_jobs=5) as store:
        for i in range(3):
            await store.put_job(job(f"live{i}", created_at=float(i)))
        for i in range(1000):
            jid = f"done{i}"
            await store.put_job(job(jid, created_at=10.0 + i))
            await store.append_events([event(jid, 0), event(jid, 1)])
            await store.put_checkpoint(Checkpoint(jid, "a", {"i": i}, iteration=1))
            await store.update_job(jid, state="completed", finished_at=20.0 + i)
            assert store.jobs_held <= 3 + 5
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
        assert len(store._events) == 5 and len(store._checkpoints) == 5  # flat, not 1000
        # a job that finishes later counts from when it finished, not when it was created
        await store.update_job("live0", state="failed", finished_at=5000.0)
        assert store.jobs_held == 7 and await store.get_job("done995") is None
        assert await store.get_job("live0") is not None
