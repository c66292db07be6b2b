"""Tests for actors.stream: coalescing, parking when idle, terminal ordering, cancellation."""

from __future__ import annotations

import collections
import contextlib
import math
from collections.abc import Iterator
from typing import Any

import pytest
import trio
import trio.testing
from hypothesis import given, settings
from hypothesis import strategies as st

from actors.stream import (
    DataDelta,
    Delta,
    Done,
    Full,
    ReasoningContentDelta,
    ReasoningSummaryDelta,
    Start,
    StreamBuffer,
    StreamClosed,
    TextDelta,
    ToolRequestDelta,
    ToolResponseDelta,
    Update,
    open_stream,
)

HOUR = 3600.0


class Sink:
    """A publish callable that records each update and the (mock) time it was published."""

    def __init__(self) -> None:
        self.updates: list[Update] = []
        self.times: list[float] = []

    def __call__(self, update: Update) -> None:
        self.updates.append(update)
        self.times.append(trio.current_time())

    @property
    def deltas(self) -> list[Delta]:
        return [u for u in self.updates if isinstance(u, Delta)]

    @property
    def texts(self) -> list[str]:
        return [u.delta.text for u in self.deltas]


class WakeupCounter(trio.abc.Instrument):
    """Counts `task_scheduled` per task. Hooks only record; tests assert afterwards."""

    def __init__(self) -> None:
        self.wakeups: collections.Counter[trio.lowlevel.Task] = collections.Counter()

    def task_scheduled(self, task: trio.lowlevel.Task) -> None:
        self.wakeups[task] += 1

    def others(self, me: trio.lowlevel.Task) -> int:
        """Wakeups of every task but ``me``."""
        return sum(n for task, n in self.wakeups.items() if task is not me)


@contextlib.contextmanager
def counting_wakeups() -> Iterator[WakeupCounter]:
    counter = WakeupCounter()
    trio.lowlevel.add_instrument(counter)
    try:
        yield counter
    finally:
        trio.lowlevel.remove_instrument(counter)


def d(part: Any, index: int | None = None) -> Delta:
    return Delta(part, index=index)


def T(text: str) -> TextDelta:
    return TextDelta(text)


def terminals(updates: list[Update]) -> list[Update]:
    return [u for u in updates if isinstance(u, Full | Done)]


def assert_well_formed(updates: list[Update]) -> None:
    """Start first, exactly one terminal, and it is last."""
    assert isinstance(updates[0], Start)
    assert len(terminals(updates)) == 1
    assert isinstance(updates[-1], Full | Done)


# --------------------------------------------------------------------------------------------
# Buffering
# --------------------------------------------------------------------------------------------


async def test_first_delta_is_published_at_once(autojump_clock: trio.testing.MockClock) -> None:
    sink = Sink()
    async with trio.open_nursery() as job:
        buf = StreamBuffer(sink)
        await job.start(buf.run)
        buf.add(T("hi"))
        assert sink.updates == [d(T("hi"))]  # synchronously, before any checkpoint
        buf.add(T("there"))
        assert sink.updates == [d(T("hi"))]  # the second one is buffered
        assert buf.buffered_chars == len("there")
        await buf.aclose()
    assert sink.updates == [d(T("hi")), d(T("there")), Done()]


async def test_size_threshold_flushes_before_the_window(
    autojump_clock: trio.testing.MockClock,
) -> None:
    sink = Sink()
    async with trio.open_nursery() as job:
        buf = StreamBuffer(sink, max_buffered_chars=10, flush_interval=HOUR)
        await job.start(buf.run)
        buf.add(T("0"))
        buf.add(T("abcd"))
        buf.add(T("efgh"))
        assert sink.texts == ["0"]
        buf.add(T("ij"))  # 10 chars buffered: published now, not after an hour
        assert sink.texts == ["0", "abcdefghij"]
        assert buf.buffered_chars == 0
        assert trio.lowlevel.current_statistics().seconds_to_next_deadline == math.inf
        await buf.aclose()
    assert sink.texts == ["0", "abcdefghij"]
    assert set(sink.times) == {0.0}


async def test_deltas_within_the_window_coalesce_into_one_publish(
    autojump_clock: trio.testing.MockClock,
) -> None:
    sink = Sink()
    async with trio.open_nursery() as job:
        buf = StreamBuffer(sink, flush_interval=0.05)
        await job.start(buf.run)
        buf.add(T("first"))
        await trio.sleep(1.0)
        t0 = trio.current_time()
        for piece in ["a", "b", "c", "d"]:
            buf.add(T(piece))
            await trio.sleep(0.01)
        assert sink.texts == ["first"]
        await trio.sleep(0.1)
        assert sink.texts == ["first", "abcd"]
        # the window started at the first buffered delta, not at the last one
        assert sink.times[-1] == pytest.approx(t0 + 0.05)
        buf.add(T("e"))  # a new window
        await trio.sleep(0.1)
        assert sink.texts == ["first", "abcd", "e"]
        await buf.aclose()


async def test_merge_rules_per_channel(autojump_clock: trio.testing.MockClock) -> None:
    sink = Sink()
    parts: list[Any] = [
        T("a"),
        T("b"),
        T("c"),
        ReasoningSummaryDelta(0, "x"),
        ReasoningSummaryDelta(0, "y"),
        ReasoningSummaryDelta(1, "z"),  # other index: no merge
        ReasoningContentDelta(1, "p"),  # other class, same index: no merge
        ReasoningContentDelta(1, "q"),
        ToolRequestDelta("c1", "f", '{"a"'),
        ToolRequestDelta("c1", None, ": 1}"),
        ToolRequestDelta("c2", "g", "[]"),  # other tool_call_id: no merge
        ToolResponseDelta("c2", "g", "ok"),
        ToolResponseDelta("c2", None, "!"),
        DataDelta("[1,"),
        DataDelta("2]"),
        T("d"),
        T("e"),
    ]
    async with trio.open_nursery() as job:
        buf = StreamBuffer(sink, max_buffered_chars=1000, flush_interval=HOUR)
        await job.start(buf.run)
        for part in parts:
            buf.add(part)
        await buf.aclose()
    assert sink.updates == [
        d(T("a")),
        d(T("bc")),
        d(ReasoningSummaryDelta(0, "xy")),
        d(ReasoningSummaryDelta(1, "z")),
        d(ReasoningContentDelta(1, "pq")),
        d(ToolRequestDelta("c1", "f", '{"a": 1}')),
        d(ToolRequestDelta("c2", "g", "[]")),
        d(ToolResponseDelta("c2", "g", "ok!")),
        d(DataDelta("[1,2]")),
        d(T("de")),
        Done(),
    ]


async def test_conflicting_tool_names_do_not_merge(autojump_clock: trio.testing.MockClock) -> None:
    sink = Sink()
    async with trio.open_nursery() as job:
        buf = StreamBuffer(sink, max_buffered_chars=1000)
        await job.start(buf.run)
        buf.add(T("start"))
        buf.add(ToolRequestDelta("c1", None, "{"))
        buf.add(ToolRequestDelta("c1", "f", "}"))  # name arrives late: merges, name kept
        buf.add(ToolRequestDelta("c1", "g", "!"))  # a different name: a new delta
        await buf.aclose()
    assert sink.deltas[1:] == [
        d(ToolRequestDelta("c1", "f", "{}")),
        d(ToolRequestDelta("c1", "g", "!")),
    ]


async def test_merged_delta_keeps_its_index(autojump_clock: trio.testing.MockClock) -> None:
    sink = Sink()
    async with trio.open_nursery() as job:
        buf = StreamBuffer(sink, index=2, max_buffered_chars=1000)
        await job.start(buf.run)
        buf.add(T("0"))
        buf.add(T("a"))
        buf.add(T("b"))  # buffer index 2
        buf.add(Delta(T("c"), index=7))
        buf.add(Delta(T("d"), index=7))  # own index 7
        buf.add(Delta(T("e"), index=8))
        buf.add(ReasoningContentDelta(4, "r"))
        buf.add(ReasoningContentDelta(4, "s"))
        await trio.sleep(1.0)
        await buf.aclose()
    assert sink.updates == [
        Delta(T("0"), index=2),
        Delta(T("ab"), index=2),
        Delta(T("cd"), index=7),
        Delta(T("e"), index=8),
        Delta(ReasoningContentDelta(4, "rs"), index=2),
        Done(index=2),
    ]


# --------------------------------------------------------------------------------------------
# Idle is parked
# --------------------------------------------------------------------------------------------


async def test_idle_buffer_makes_no_wakeups_for_an_hour(
    autojump_clock: trio.testing.MockClock,
) -> None:
    me = trio.lowlevel.current_task()
    async with trio.open_nursery() as job:
        buf = StreamBuffer(Sink())
        await job.start(buf.run)
        await trio.testing.wait_all_tasks_blocked()
        assert trio.lowlevel.current_statistics().seconds_to_next_deadline == math.inf
        with counting_wakeups() as counter:
            await trio.sleep(HOUR)
        assert counter.others(me) == 0
        assert buf.running
        await buf.aclose()


async def test_buffer_that_flushed_once_and_was_never_closed_stays_parked(
    autojump_clock: trio.testing.MockClock,
) -> None:
    me = trio.lowlevel.current_task()
    sink = Sink()
    async with trio.open_nursery() as job:
        buf = StreamBuffer(sink)
        await job.start(buf.run)
        buf.add(T("a"))
        buf.add(T("b"))
        assert trio.lowlevel.current_statistics().seconds_to_next_deadline < math.inf
        await trio.sleep(1.0)
        assert sink.texts == ["a", "b"]  # flushed by the ticker's window
        assert trio.lowlevel.current_statistics().seconds_to_next_deadline == math.inf
        with counting_wakeups() as counter:
            await trio.sleep(HOUR)
        assert counter.others(me) == 0
        job.cancel_scope.cancel()  # never closed: the job ends
    assert sink.updates[-1] == Done(metadata={"cancelled": True})


async def test_ten_thousand_idle_open_streams_make_no_wakeups(
    autojump_clock: trio.testing.MockClock,
) -> None:
    me = trio.lowlevel.current_task()
    sink = Sink()
    n = 10_000
    async with trio.open_nursery() as job, contextlib.AsyncExitStack() as stack:
        streams = [
            await stack.enter_async_context(open_stream(job, sink, index=i)) for i in range(n)
        ]
        for s in streams:
            s.delta_nowait("a")  # published at once; nothing buffered
        await trio.testing.wait_all_tasks_blocked()
        assert len(sink.deltas) == n
        assert len(job.child_tasks) == n
        assert trio.lowlevel.current_statistics().seconds_to_next_deadline == math.inf
        with counting_wakeups() as counter:
            await trio.sleep(HOUR)
        assert counter.others(me) == 0
        await stack.aclose()
        assert len(job.child_tasks) == 0
    assert len(terminals(sink.updates)) == n


# --------------------------------------------------------------------------------------------
# Terminal ordering
# --------------------------------------------------------------------------------------------


async def test_full_stops_the_ticker_and_no_delta_follows(
    autojump_clock: trio.testing.MockClock,
) -> None:
    sink = Sink()
    async with trio.open_nursery() as job:
        async with open_stream(job, sink) as s:
            await s.delta("a")
            await s.delta("b")
            await s.delta("c")
            assert s.buffer is not None and s.buffer.running
            await s.full("abc!", metadata={"m": 1})
            assert s.closed
            assert not s.buffer.running
            assert len(job.child_tasks) == 0
            with pytest.raises(StreamClosed):
                await s.delta("d")
            await trio.sleep(1.0)
        assert len(job.child_tasks) == 0
    assert sink.updates == [Start(), d(T("a")), d(T("bc")), Full("abc!", metadata={"m": 1})]


async def test_exactly_one_done_last_with_the_callers_index_and_metadata(
    autojump_clock: trio.testing.MockClock,
) -> None:
    sink = Sink()
    async with trio.open_nursery() as job:
        async with open_stream(job, sink, index=1, metadata={"role": "assistant"}) as s:
            await s.delta("a")
            await s.delta("b")
            await s.done(index=9, metadata={"finish": "stop"})
            with pytest.raises(StreamClosed):
                await s.done()
            with pytest.raises(StreamClosed):
                await s.full("x")
    assert sink.updates == [
        Start(index=1, metadata={"role": "assistant"}),
        Delta(T("a"), index=1),
        Delta(T("b"), index=1),
        Done(index=9, metadata={"finish": "stop"}),
    ]


async def test_close_reaps_the_buffer_even_when_already_marked_closed(
    autojump_clock: trio.testing.MockClock,
) -> None:
    sink = Sink()
    async with trio.open_nursery() as job:
        async with open_stream(job, sink) as s:
            await s.delta("a")
            await s.delta("b")
            assert s.buffer is not None
            assert s.buffer.close_nowait(Done(metadata={"x": 1}))  # closed, not reaped
            assert s.closed and s.buffer.running
        # no checkpoint since leaving the context: the exit itself waited for the ticker
        assert not s.buffer.running
        assert len(job.child_tasks) == 0
    assert sink.updates == [Start(), d(T("a")), d(T("b")), Done(metadata={"x": 1})]


async def test_delta_after_done_raises_and_is_never_published(
    autojump_clock: trio.testing.MockClock,
) -> None:
    sink = Sink()
    async with trio.open_nursery() as job:
        async with open_stream(job, sink) as s:
            await s.delta("a")
            await s.done()
            with pytest.raises(StreamClosed):
                await s.delta("late")
            with pytest.raises(StreamClosed):
                s.delta_nowait("late")
            assert s.buffer is not None
            with pytest.raises(StreamClosed):
                s.buffer.add(T("late"))
        await trio.sleep(1.0)
    assert sink.updates == [Start(), d(T("a")), Done()]


@pytest.mark.parametrize("steps", [(0.001, 0.002, 0.0035), (0.0005, 0.001, 0.01)])
async def test_delta_racing_close_is_published_before_the_terminal_or_raises(
    autojump_clock: trio.testing.MockClock, steps: tuple[float, ...]
) -> None:
    sink = Sink()
    sent: list[str] = []
    refused: list[str] = []

    async with trio.open_nursery() as job:
        async with open_stream(job, sink, max_buffered_chars=16, flush_interval=0.004) as s:

            async def producer(name: str, step: float) -> None:
                i = 0
                while True:
                    piece = f"{name}{i};"
                    try:
                        await s.delta(piece)
                    except StreamClosed:
                        refused.append(piece)
                        return
                    sent.append(piece)
                    i += 1
                    await trio.sleep(step)

            async with trio.open_nursery() as producers:
                for name, step in zip("xyz", steps, strict=True):
                    producers.start_soon(producer, name, step)
                await trio.sleep(0.05)
                await s.done(metadata={"why": "race"})
    assert_well_formed(sink.updates)
    assert sink.updates[-1] == Done(metadata={"why": "race"})
    published = "".join(sink.texts).split(";")[:-1]
    assert sorted(published) == sorted(p[:-1] for p in sent)  # all accepted, before Done
    for name in "xyz":  # each producer's deltas in the order it sent them
        assert [p for p in published if p[0] == name] == [p[:-1] for p in sent if p[0] == name]
    assert len(refused) == 3  # every producer was refused exactly once, then stopped
    assert not set(refused) & set(sent)


@pytest.mark.parametrize("trigger", ["window", "threshold"])
async def test_close_during_an_in_flight_flush_publishes_each_chunk_once_in_order(
    autojump_clock: trio.testing.MockClock, trigger: str
) -> None:
    out: list[Update] = []
    buf: StreamBuffer

    def publish(update: Update) -> None:
        out.append(update)
        # a subscriber reacting to the first chunk of the batch closes the stream re-entrantly
        if len(out) == 2 and not buf.closed:
            buf.close_nowait(Done(metadata={"why": "reentrant"}))

    buf = StreamBuffer(publish, max_buffered_chars=8, flush_interval=0.05)
    async with trio.open_nursery() as job:
        await job.start(buf.run)
        buf.add(T("0"))
        buf.add(T("b"))
        buf.add(ReasoningSummaryDelta(0, "x"))
        buf.add(T("c"))
        if trigger == "threshold":
            buf.add(ReasoningSummaryDelta(1, "yyyyy"))  # 8 chars: add() flushes
        else:
            buf.add(ReasoningSummaryDelta(1, "y"))
            await trio.sleep(0.1)  # the ticker flushes
        await buf.aclose()
    tail = "yyyyy" if trigger == "threshold" else "y"
    assert out == [
        d(T("0")),
        d(T("b")),
        d(ReasoningSummaryDelta(0, "x")),
        d(T("c")),
        d(ReasoningSummaryDelta(1, tail)),
        Done(metadata={"why": "reentrant"}),
    ]


async def test_close_on_the_tick_the_window_ends(autojump_clock: trio.testing.MockClock) -> None:
    # The closer and the ticker are woken on the same tick, in either order.
    for i in range(20):
        sink = Sink()
        async with trio.open_nursery() as job:
            buf = StreamBuffer(sink, flush_interval=0.05)
            await job.start(buf.run)
            buf.add(T("0"))
            t0 = trio.current_time()
            buf.add(T(f"b{i}"))
            buf.add(ReasoningSummaryDelta(0, "x"))
            await trio.sleep_until(t0 + 0.05)
            await buf.aclose()
            assert not buf.running
        assert sink.updates == [
            d(T("0")),
            d(T(f"b{i}")),
            d(ReasoningSummaryDelta(0, "x")),
            Done(),
        ]


async def test_cancelled_close_does_not_drop_the_batch(
    autojump_clock: trio.testing.MockClock,
) -> None:
    sink = Sink()
    async with trio.open_nursery() as job:
        buf = StreamBuffer(sink, max_buffered_chars=1000)
        await job.start(buf.run)
        buf.add(T("0"))
        buf.add(T("a"))
        buf.add(ReasoningContentDelta(0, "r"))
        with trio.CancelScope() as cs:
            cs.cancel()
            await buf.aclose(Done(metadata={"m": 1}))
        assert cs.cancelled_caught  # the cancellation propagated out of aclose
        assert not buf.running  # and the ticker was reaped anyway (shielded)
        assert len(job.child_tasks) == 0
    assert sink.updates == [
        d(T("0")),
        d(T("a")),
        d(ReasoningContentDelta(0, "r")),
        Done(metadata={"m": 1}),
    ]


async def test_cancellation_inside_the_stream_propagates_after_the_batch(
    autojump_clock: trio.testing.MockClock,
) -> None:
    sink = Sink()
    reached = False
    async with trio.open_nursery() as job:
        with trio.CancelScope() as cs:
            async with open_stream(job, sink, index=3) as s:
                await s.delta("a")
                await s.delta("b")
                await s.delta("c")
                cs.cancel()
                await trio.sleep(1.0)
            reached = True
        assert cs.cancelled_caught
        assert not reached
        assert s.closed
        assert len(job.child_tasks) == 0
    assert sink.updates == [
        Start(index=3),
        Delta(T("a"), index=3),
        Delta(T("bc"), index=3),
        Done(index=3, metadata={"cancelled": True}),
    ]


async def test_an_exception_inside_the_stream_propagates(
    autojump_clock: trio.testing.MockClock,
) -> None:
    class Boom(Exception):
        pass

    sink = Sink()
    async with trio.open_nursery() as job:
        with pytest.raises(Boom):
            async with open_stream(job, sink) as s:
                await s.delta("a")
                await s.delta("b")
                raise Boom
        assert len(job.child_tasks) == 0
    assert sink.updates == [Start(), d(T("a")), d(T("b")), Done(metadata={"error": "Boom"})]


async def test_aexit_returns_none(autojump_clock: trio.testing.MockClock) -> None:
    sink = Sink()
    async with trio.open_nursery() as job:
        s = open_stream(job, sink)
        await s.__aenter__()
        error = ValueError("x")
        assert await s.__aexit__(ValueError, error, None) is None
        s2 = open_stream(job, sink)
        await s2.__aenter__()
        cancelled = None
        with trio.CancelScope() as cs:
            cs.cancel()
            try:
                await trio.sleep(1)
            except trio.Cancelled as exc:
                cancelled = exc
                assert await s2.__aexit__(trio.Cancelled, exc, None) is None
                raise
        assert cancelled is not None
    assert terminals(sink.updates) == [
        Done(metadata={"error": "ValueError"}),
        Done(metadata={"cancelled": True}),
    ]


# --------------------------------------------------------------------------------------------
# The owning nursery is cancelled mid-stream
# --------------------------------------------------------------------------------------------


async def test_nursery_cancelled_flushes_then_one_cancelled_done(
    autojump_clock: trio.testing.MockClock,
) -> None:
    sink = Sink()
    baseline = trio.lowlevel.current_statistics().tasks_living
    async with trio.open_nursery() as job:
        buf = StreamBuffer(sink, index=5, max_buffered_chars=1000)
        await job.start(buf.run)
        buf.add(T("a"))
        buf.add(T("b"))
        buf.add(T("c"))
        buf.add(ReasoningSummaryDelta(0, "s"))
        assert trio.lowlevel.current_statistics().tasks_living == baseline + 1
        job.cancel_scope.cancel()
    assert sink.updates == [
        Delta(T("a"), index=5),
        Delta(T("bc"), index=5),
        Delta(ReasoningSummaryDelta(0, "s"), index=5),
        Done(index=5, metadata={"cancelled": True}),
    ]
    assert trio.lowlevel.current_statistics().tasks_living == baseline
    assert buf.closed and not buf.running
    with pytest.raises(StreamClosed):
        buf.add(T("late"))


async def test_job_nursery_cancelled_under_an_open_stream(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """The stream's body runs outside the job nursery: the ticker alone ends the message."""

    async def job_actor(*, task_status: trio.TaskStatus[trio.Nursery]) -> None:
        async with trio.open_nursery() as nursery:
            task_status.started(nursery)
            await trio.sleep_forever()

    sink = Sink()
    async with trio.open_nursery() as outer:
        job = await outer.start(job_actor)
        async with open_stream(job, sink) as s:
            await s.delta("a")
            await s.delta("b")
            await s.delta("c")
            job.cancel_scope.cancel()
            await trio.testing.wait_all_tasks_blocked()
            assert s.closed
            assert s.buffer is not None and not s.buffer.running
            with pytest.raises(StreamClosed):
                await s.delta("d")
        outer.cancel_scope.cancel()
    assert sink.updates == [Start(), d(T("a")), d(T("bc")), Done(metadata={"cancelled": True})]


async def test_job_nursery_cancelled_with_the_stream_inside_it(
    autojump_clock: trio.testing.MockClock,
) -> None:
    sink = Sink()

    async def step(job: trio.Nursery) -> None:
        async with open_stream(job, sink) as s:
            for piece in "abcdef":
                await s.delta(piece)
                await trio.sleep(0.001)
            await trio.sleep_forever()

    async with trio.open_nursery() as job:
        job.start_soon(step, job)
        await trio.sleep(0.1)
        job.cancel_scope.cancel()
    assert_well_formed(sink.updates)
    assert "".join(sink.texts) == "abcdef"
    assert sink.updates[-1] == Done(metadata={"cancelled": True})


# --------------------------------------------------------------------------------------------
# Modes and content
# --------------------------------------------------------------------------------------------


async def test_per_token_publishes_every_delta_at_once(
    autojump_clock: trio.testing.MockClock,
) -> None:
    sink = Sink()
    async with trio.open_nursery() as job:
        async with open_stream(job, sink, mode="per_token", index=0) as s:
            assert len(job.child_tasks) == 0  # no ticker needed
            for piece in "abc":
                await s.delta(piece)
                assert sink.updates[-1] == Delta(T(piece), index=0)
            await s.done(metadata={"k": 1})
            with pytest.raises(StreamClosed):
                await s.delta("late")
    assert sink.updates == [
        Start(index=0),
        Delta(T("a"), index=0),
        Delta(T("b"), index=0),
        Delta(T("c"), index=0),
        Done(index=0, metadata={"k": 1}),
    ]


async def test_off_publishes_start_and_a_full_with_the_content(
    autojump_clock: trio.testing.MockClock,
) -> None:
    sink = Sink()
    async with trio.open_nursery() as job:
        async with open_stream(job, sink, mode="off", kind="data") as s:
            await s.delta('{"a": ')
            await s.delta("[1, 2]}")
        async with open_stream(job, sink, mode="off", index=4) as s:
            await s.delta("hello")
            await s.done(metadata={"m": 1})
        async with open_stream(job, sink, mode="off") as s:
            await s.delta("ignored")
            await s.full("given")
        async with open_stream(job, sink, mode="off", kind="data") as s:
            await s.delta('{"a": ')  # incomplete JSON: the Full carries the raw text
        assert len(job.child_tasks) == 0
    assert sink.updates == [
        Start(),
        Full({"a": [1, 2]}),
        Start(index=4),
        Full("hello", index=4, metadata={"m": 1}),
        Start(),
        Full("given"),
        Start(),
        Full('{"a": '),
    ]


async def test_content_by_kind(autojump_clock: trio.testing.MockClock) -> None:
    sink = Sink()
    async with trio.open_nursery() as job:
        async with open_stream(job, sink, kind="text") as s:
            for piece in ["Hel", "lo", TextDelta(" world")]:
                await s.delta(piece)
            assert s.content == "Hello world"
        async with open_stream(job, sink, kind="data") as s:
            assert s.content is None
            await s.delta('{"k": [1')
            with pytest.raises(ValueError):
                _ = s.content
            await s.delta(DataDelta(", 2]}"))
            assert s.content == {"k": [1, 2]}
        async with open_stream(job, sink, kind="reasoning") as s:
            await s.delta(ReasoningSummaryDelta(1, "second"))
            await s.delta(ReasoningSummaryDelta(0, "fir"))
            await s.delta("st")  # continues the last reasoning part
            await s.delta(ReasoningContentDelta(2, "c2"))
            await s.delta(ReasoningContentDelta(0, "c0"))
            assert s.content == {"summary": ["first", "second"], "content": ["c0", "c2"]}
        async with open_stream(job, sink, kind="reasoning") as s:
            await s.delta("plain")
            assert s.content == {"summary": [], "content": ["plain"]}
        async with open_stream(job, sink, kind="tool") as s:
            with pytest.raises(ValueError):
                await s.delta('{"x": 1}')  # which tool call?
            await s.delta(ToolRequestDelta("c1", "search", '{"q": '))
            await s.delta('"trio"}')
            await s.delta(ToolResponseDelta("c1", "search", "found"))
            await s.delta(ToolRequestDelta("c2", "noop", ""))
            assert s.content == [
                {
                    "tool_call_id": "c1",
                    "name": "search",
                    "arguments": {"q": "trio"},
                    "response": "found",
                },
                {"tool_call_id": "c2", "name": "noop", "arguments": None, "response": None},
            ]
        # pieces of other channels in between: each piece is kept on its own channel, in order
        mixed = ["a", DataDelta("[1"), "b", ToolRequestDelta("c1", "f", "{}"), TextDelta("c"), DataDelta(",2"),
                 DataDelta("]"), "d", TextDelta("e")]
        async with open_stream(job, sink, kind="text", mode="per_token") as s:
            for piece in mixed:
                s.delta_nowait(piece)
            assert s.content == "abcde"
        async with open_stream(job, sink, kind="data", mode="per_token") as s:
            for piece in mixed:
                s.delta_nowait(TextDelta(piece) if isinstance(piece, str) else piece)
            assert s.content == [1, 2]
    assert sink.updates.count(Start()) == 7


async def test_invalid_arguments_are_refused(autojump_clock: trio.testing.MockClock) -> None:
    sink = Sink()
    with pytest.raises(ValueError, match="max_buffered_chars"):
        StreamBuffer(sink, max_buffered_chars=-1)
    with pytest.raises(ValueError, match="flush_interval"):
        StreamBuffer(sink, flush_interval=-0.1)
    async with trio.open_nursery() as job:
        with pytest.raises(ValueError, match="mode"):
            open_stream(job, sink, mode="sometimes")  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="kind"):
            open_stream(job, sink, kind="audio")  # type: ignore[arg-type]
        async with open_stream(job, sink) as s:
            with pytest.raises(TypeError):
                await s.delta(42)  # type: ignore[arg-type]
            with pytest.raises(RuntimeError):
                await s.__aenter__()
        buf = StreamBuffer(sink)
        await job.start(buf.run)
        with pytest.raises(RuntimeError):
            await job.start(buf.run)
        with pytest.raises(TypeError):
            buf.add("text")  # type: ignore[arg-type]
        await buf.aclose()
    assert sink.updates == [Start(), Done(), Done()]


async def test_stream_on_a_closed_nursery_still_ends_its_message(
    autojump_clock: trio.testing.MockClock,
) -> None:
    sink = Sink()
    async with trio.open_nursery() as job:
        pass
    with pytest.raises(RuntimeError):
        async with open_stream(job, sink):
            pass  # pragma: no cover - never entered
    assert sink.updates == [Start(), Done(metadata={"error": "RuntimeError"})]


# --------------------------------------------------------------------------------------------
# Property: per channel, the published deltas concatenate to the input, in order
# --------------------------------------------------------------------------------------------

_channel_parts = st.one_of(
    st.builds(TextDelta, st.text("abc", min_size=1, max_size=6)),
    st.builds(DataDelta, st.text("[]1,", min_size=1, max_size=6)),
    st.builds(
        ToolRequestDelta,
        st.sampled_from(["c1", "c2"]),
        st.sampled_from([None, None, "f", "g"]),
        st.text("{}:", min_size=1, max_size=6),
    ),
    st.builds(
        ToolResponseDelta,
        st.sampled_from(["c1", "c2"]),
        st.none(),
        st.text("ok", min_size=1, max_size=6),
    ),
    st.builds(ReasoningSummaryDelta, st.integers(0, 1), st.text("xy", min_size=1, max_size=6)),
    st.builds(ReasoningContentDelta, st.integers(0, 1), st.text("pq", min_size=1, max_size=6)),
)
_inputs = st.one_of(
    _channel_parts,
    st.builds(Delta, _channel_parts, index=st.sampled_from([None, 1])),
)
_ops = st.lists(
    st.one_of(_inputs, st.sampled_from([0.0, 0.001, 0.02, 0.05, 0.2])),
    min_size=1,
    max_size=40,
)


def _key(update: Delta) -> tuple[Any, ...]:
    part = update.delta
    return (type(part), part._channel(), update.index, update.metadata)


class _Expected(Exception):
    pass


@settings(max_examples=100, deadline=None)
@given(
    ops=_ops,
    mode=st.sampled_from(["coalesced", "coalesced", "per_token"]),
    max_chars=st.sampled_from([1, 8, 128]),
    interval=st.sampled_from([0.0, 0.01, 0.05]),
    ending=st.sampled_from(["exit", "done", "full", "error", "cancel"]),
)
def test_property_published_deltas_match_the_input(
    ops: list[Any], mode: str, max_chars: int, interval: float, ending: str
) -> None:
    sink = Sink()
    added: list[tuple[Delta, float]] = []

    async def main() -> None:
        async with trio.open_nursery() as job:
            with trio.CancelScope() as cs:
                async with open_stream(
                    job,
                    sink,
                    mode=mode,  # type: ignore[arg-type]
                    max_buffered_chars=max_chars,
                    flush_interval=interval,
                ) as s:
                    for op in ops:
                        if isinstance(op, float):
                            await trio.sleep(op)
                            continue
                        update = op if isinstance(op, Delta) else Delta(op)
                        added.append((update, trio.current_time()))
                        await s.delta(op)
                    if ending == "done":
                        await s.done(metadata={"end": 1})
                    elif ending == "full":
                        await s.full("all", metadata={"end": 2})
                    elif ending == "error":
                        raise _Expected
                    elif ending == "cancel":
                        cs.cancel()
                        await trio.sleep(1)
            assert len(job.child_tasks) == 0

    async def run_main() -> None:
        try:
            await main()
        except* _Expected:
            raised.append(True)

    raised: list[bool] = []
    trio.run(run_main, clock=trio.testing.MockClock(autojump_threshold=0))
    assert raised == ([True] if ending == "error" else [])

    updates = sink.updates
    assert_well_formed(updates)
    expected_terminal = {
        "exit": Done(),
        "done": Done(metadata={"end": 1}),
        "full": Full("all", metadata={"end": 2}),
        "error": Done(metadata={"error": "_Expected"}),
        "cancel": Done(metadata={"cancelled": True}),
    }[ending]
    assert updates[-1] == expected_terminal

    # Walk the published deltas: each is a contiguous run of same-channel inputs, in order.
    published = [(u, t) for u, t in zip(updates, sink.times, strict=True) if isinstance(u, Delta)]
    if mode == "per_token":
        assert [u for u, _ in published] == [u for u, _ in added]
        return
    j = 0
    for out, t_out in published:
        payload = out.delta._chunk()
        acc, names, t_first = "", [], added[j][1]
        while len(acc) < len(payload):
            update, _ = added[j]
            assert _key(update) == _key(out)
            acc += update.delta._chunk()
            names.append(update.delta._name())
            j += 1
        assert acc == payload
        given_names = [n for n in names if n is not None]
        assert len(set(given_names)) <= 1
        assert out.delta._name() == (given_names[0] if given_names else None)
        # published no later than the window that started with its first piece
        assert t_out <= t_first + interval + 1e-9
    assert j == len(added)
    if added:
        assert published[0][1] == added[0][1]  # the first delta at once
