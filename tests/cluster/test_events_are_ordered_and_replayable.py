"""A cluster job's events: the embedded ``events(*, replay, maxlen)``, in order and without
duplicates, re-attached by seq on any handle, bounded, and saying what they dropped."""

from __future__ import annotations

import inspect

import pytest
import trio

from runtime import JobFinished, JobHandle, JobStarted, Lagged
from runtime.cluster import ClusterJobHandle, RayCluster, open_cluster_runtime
from runtime.cluster.testing import assert_cluster_no_leaks

from .support import BOUND, slow_flow

pytestmark = pytest.mark.usefixtures("ray_head")


def test_events_takes_what_the_embedded_handle_takes():
    cluster = inspect.signature(ClusterJobHandle.events, eval_str=True)
    embedded = inspect.signature(JobHandle.events, eval_str=True)
    assert cluster == embedded, (cluster, embedded)


async def test_events_in_order_and_reattach_from_seq():
    async with open_cluster_runtime(RayCluster(hosts=2, jobs_per_host=4), term_grace=0.5) as rt:
        with trio.fail_after(BOUND):
            handle = await rt.spawn(slow_flow())
            live = []
            async for event in handle.events(replay=True):
                live.append(event)
                if len(live) == 6:
                    break
            k = 3
            again = rt.get(handle.id)  # re-attach by id while the job runs
            tail = []
            async for event in again.events_since(k):
                tail.append(event)
                if len(tail) == 3:
                    break
            assert [e.seq for e in tail] == [k, k + 1, k + 2]
            assert tail == live[k:6]
            await handle.cancel()
            full = [e async for e in handle.events(replay=True)]
        assert [e.seq for e in full] == list(range(len(full)))
        assert isinstance(full[0], JobStarted) and isinstance(full[-1], JobFinished)
        assert full[:6] == live
        k = len(full) // 2
        assert [e async for e in handle.events_since(k)] == full[k:]
        await assert_cluster_no_leaks(rt)


async def test_events_from_now_on_or_replayed_from_seq_zero():
    async with open_cluster_runtime(RayCluster(hosts=1, jobs_per_host=2), term_grace=0.5) as rt:
        with trio.fail_after(BOUND):
            handle = await rt.spawn(slow_flow())  # streams ticks until cancelled
            seen = []
            async for event in handle.events(replay=True):
                seen.append(event)
                if len(seen) == 5:
                    break
            now = handle.events()  # subscribed here, not when first iterated
            slow = handle.events(maxlen=3)  # a reader that falls behind
            replayed = handle.events(replay=True)
            assert [await anext(replayed) for _ in range(5)] == seen  # replay: from seq 0
            async for event in replayed:  # let 10 more events happen before `now` is read
                if event.seq >= seen[-1].seq + 10:
                    later = event.seq
                    break
            first = await anext(now)
            assert seen[-1].seq < first.seq < later  # after what was seen, before what came later
            async for event in replayed:  # `slow` started where `now` did; 10 more past it
                if event.seq >= first.seq + 10:
                    break
            lagged = await anext(slow)  # 11 or more wait for it: all but the newest 3 are skipped
            assert isinstance(lagged, Lagged) and lagged.n >= 11 - 3, lagged
            await handle.cancel()
            rest = [e async for e in now]  # nothing published after the call is missed
            assert [e.seq for e in [first, *rest]] == list(range(first.seq, first.seq + 1 + len(rest)))
            assert isinstance(rest[-1], JobFinished)
            behind = [e async for e in slow]
            assert [e.seq for e in behind if not isinstance(e, Lagged)][-1] == rest[-1].seq
            # once the job has ended, from now on is nothing; replay is the whole log
            assert [e async for e in handle.events()] == []
            full = [e async for e in handle.events(replay=True)]
            assert [e.seq for e in full] == list(range(len(full))) and full[-1] == rest[-1]
            # a reader that has read nothing holds the newest maxlen, after one Lagged
            assert [e async for e in handle.events(replay=True, maxlen=4)] == [Lagged(len(full) - 4), *full[-4:]]
        await assert_cluster_no_leaks(rt)


async def test_event_logs_are_bounded_and_say_what_they_dropped():
    async with open_cluster_runtime(RayCluster(hosts=1, jobs_per_host=2, max_log_events=16),
                                    term_grace=0.5) as rt:
        with trio.fail_after(BOUND):
            handle = await rt.spawn(slow_flow())  # streams ticks until cancelled
            async for event in handle.events(replay=True):
                if getattr(event, "seq", 0) >= 40:
                    break
            replay = []
            async for item in handle.events(replay=True):  # the log holds only the latest ~16
                replay.append(item)
                if len(replay) == 3:
                    break
            assert isinstance(replay[0], Lagged) and 40 - 18 <= replay[0].n, replay
            assert [e.seq for e in replay[1:]] == [replay[0].n, replay[0].n + 1]
            await handle.cancel()
            after = [e async for e in handle.events_since(0)]  # bounded after the end too
        assert isinstance(after[0], Lagged)
        kept = after[1:]
        assert 16 <= len(kept) <= 18 and kept[0].seq == after[0].n
        assert [e.seq for e in kept] == list(range(kept[0].seq, kept[0].seq + len(kept)))
        assert isinstance(kept[-1], JobFinished)
        await assert_cluster_no_leaks(rt)
