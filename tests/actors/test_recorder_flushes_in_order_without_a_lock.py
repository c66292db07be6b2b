"""A recorder's flush: concurrent flushes write every item once, in order, and each returns only
once the sink has what was queued before it; with nothing queued a flush is not a schedule point."""

from __future__ import annotations

import trio
import trio.testing

from actors.recorder import Recorder


async def test_concurrent_flushes_write_each_item_once_in_order_and_wait_for_the_sink(autojump_clock):
    written: list[int] = []
    gate = trio.Event()

    async def sink(batch: list[int]) -> None:
        await gate.wait()  # the first batch is slow: the second flush must wait for it
        written.extend(batch)

    recorder = Recorder(max_events=None, sink=sink)
    returned: list[str] = []

    async def flush(name: str) -> None:
        await recorder.flush()
        returned.append(name)

    async with trio.open_nursery() as nursery:
        recorder.write(1)
        recorder.write(2)
        nursery.start_soon(flush, "first")
        await trio.testing.wait_all_tasks_blocked()
        recorder.write(3)
        nursery.start_soon(flush, "second")
        await trio.testing.wait_all_tasks_blocked()
        assert returned == [] and written == []  # neither returned before the sink had its items
        gate.set()
    assert written == [1, 2, 3]
    assert returned == ["first", "second"]
    assert recorder.written == 3


async def test_a_flush_with_nothing_queued_schedules_nothing():
    async def sink(batch: list[int]) -> None:
        await trio.lowlevel.checkpoint()

    recorder = Recorder(max_events=None, sink=sink)
    steps = 0

    class Count(trio.abc.Instrument):
        def before_task_step(self, task: trio.lowlevel.Task) -> None:
            nonlocal steps
            steps += 1

    counter = Count()
    trio.lowlevel.add_instrument(counter)
    try:
        await recorder.flush()
    finally:
        trio.lowlevel.remove_instrument(counter)
    assert steps == 0


async def test_stop_ends_the_flusher_without_a_cancellation_and_its_exit_writes_the_rest(autojump_clock):
    written: list[int] = []

    async def sink(batch: list[int]) -> None:
        await trio.lowlevel.checkpoint()
        written.extend(batch)

    for flush_on_exit in (True, False):
        written.clear()
        recorder = Recorder(max_events=None, sink=sink, flush_window=10.0, flush_on_exit=flush_on_exit)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(recorder.run)
            await trio.testing.wait_all_tasks_blocked()
            recorder.write(1)  # waits in the window
            await trio.testing.wait_all_tasks_blocked()
            assert written == []
            recorder.stop()  # the nursery closes because run returned: nobody cancels it
        assert trio.current_time() < 10.0  # the window was not waited out
        assert written == ([1] if flush_on_exit else [])
        await recorder.flush()  # what it left, its owner writes
        assert written == [1]


async def test_a_sink_that_hangs_fails_the_recorder_after_the_grace_even_when_cancelled(autojump_clock):
    async def sink(batch: list[int]) -> None:
        await trio.sleep_forever()

    errors: list[BaseException] = []
    recorder = Recorder(max_events=None, sink=sink, flush_grace=5.0, on_error=errors.append)
    recorder.write(1)
    with trio.CancelScope() as outer:
        outer.cancel()  # the shield holds against the caller's cancellation, not against the grace
        await recorder.flush()
    assert trio.current_time() == 5.0
    assert "longer than 5.0s" in str(recorder.failed)
    assert errors == [recorder.failed]


def test_a_ring_keeps_the_newest_within_its_bounds_and_counts_what_it_dropped():
    recorder = Recorder(max_events=3, max_bytes=100)
    keep = recorder.keeper()
    for i in range(5):
        keep(f"e{i}", 10)
    assert recorder.backlog() == ["e2", "e3", "e4"]
    assert (recorder.recorded, recorder.dropped, recorder.bytes) == (5, 2, 30)
    keep("big", 90)  # over max_bytes: the oldest go until it fits (the newest always stays)
    assert recorder.backlog() == ["e4", "big"]
    assert (recorder.recorded, recorder.dropped, recorder.bytes) == (6, 4, 100)
    keep("huge", 500)
    assert recorder.backlog() == ["huge"] and recorder.recorded == 7 and recorder.bytes == 500
    counter = Recorder(max_events=None)
    counter.keeper()("x", 1)
    counter.record("y")
    assert counter.recorded == 2 and counter.backlog() == [] and counter.bytes == 0
