"""Stream buffer benchmark: throughput, coalescing and idle wakeups, against floors from this run.

Usage: ``python benchmarks/streams.py [--json] [--quick] [--repeats N] [--deltas N] [--streams N]``

Figures (median of 5 repeats, 3 with ``--quick``, with min and max):

- ``coalesced_deltas_per_second``: deltas ingested by ``StreamBuffer.add`` and published (into an
  unbounded trio memory channel, standing in for the job's event hub) in coalesced mode. Floor:
  the same deltas through a bare ``list.append`` plus ``send_nowait`` on such a channel.
  Ratio = floor / value: times the floor's cost (1.0 would be "free").
- ``publishes_per_1000_deltas``: publishes the coalesced buffer made per 1000 deltas. Floor: a
  buffer that publishes every delta (``max_buffered_chars=0``, i.e. per token). Lower is better.
- ``idle_wakeups_per_second``: scheduler wakeups per second of the tickers of N idle open streams
  (expected 0). Floor: N bare tasks parked on an event. The streams are opened once and the
  wakeups counted over consecutive windows (one per repeat). The ratio is undefined when the floor is 0.

Only the standard library and trio are used besides the module under test.
"""

from __future__ import annotations

import collections
import contextlib
import math
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import trio
import trio.testing

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _common import emit, options, quiet_logs, row, summary

from actors.stream import StreamBuffer, TextDelta, open_stream

YIELD_EVERY = 1000  # producers yield to the scheduler this often, in the value and the floor


class _WakeupCounter(trio.abc.Instrument):
    def __init__(self) -> None:
        self.wakeups: collections.Counter[trio.lowlevel.Task] = collections.Counter()

    def task_scheduled(self, task: trio.lowlevel.Task) -> None:
        self.wakeups[task] += 1


def _pieces(n: int) -> list[TextDelta]:
    return [TextDelta(f"t{i % 100:02d} ") for i in range(n)]


async def _floor_ingest(pieces: list[TextDelta]) -> float:
    send, receive = trio.open_memory_channel[Any](math.inf)
    ingested: list[TextDelta] = []
    append = ingested.append
    send_nowait = send.send_nowait
    start = time.perf_counter()
    for i, piece in enumerate(pieces):
        append(piece)
        send_nowait(piece)
        if i % YIELD_EVERY == 0:
            await trio.lowlevel.checkpoint()
    elapsed = time.perf_counter() - start
    send.close()
    receive.close()
    return len(pieces) / elapsed


async def _coalesced_ingest(
    pieces: list[TextDelta], *, max_buffered_chars: int
) -> tuple[float, int]:
    send, receive = trio.open_memory_channel[Any](math.inf)
    async with trio.open_nursery() as nursery:
        buffer = StreamBuffer(send.send_nowait, max_buffered_chars=max_buffered_chars)
        await nursery.start(buffer.run)
        add = buffer.add
        start = time.perf_counter()
        for i, piece in enumerate(pieces):
            add(piece)
            if i % YIELD_EVERY == 0:
                await trio.lowlevel.checkpoint()
        await buffer.aclose()
        elapsed = time.perf_counter() - start
    send.close()
    publishes = receive.statistics().current_buffer_used - 1  # minus the terminal
    receive.close()
    return len(pieces) / elapsed, publishes


async def _count_idle_wakeups(
    n: int, open_one: Callable[[trio.Nursery, contextlib.AsyncExitStack, int], Awaitable[None]],
    repeats: int, window: float,
) -> list[float]:
    """Open ``n`` idle things, then count other tasks' wakeups per second over ``repeats`` windows."""
    me = trio.lowlevel.current_task()
    rates = []
    async with trio.open_nursery() as nursery, contextlib.AsyncExitStack() as stack:
        for i in range(n):
            await open_one(nursery, stack, i)
        await trio.testing.wait_all_tasks_blocked()
        for _ in range(repeats):
            counter = _WakeupCounter()
            trio.lowlevel.add_instrument(counter)
            start = time.perf_counter()
            await trio.sleep(window)
            elapsed = time.perf_counter() - start
            trio.lowlevel.remove_instrument(counter)
            others = sum(c for task, c in counter.wakeups.items() if task is not me)
            rates.append(others / elapsed)
        await stack.aclose()  # close the streams (each publishes its Done)
        nursery.cancel_scope.cancel()  # and end the floor's parked tasks
    return rates


async def _open_idle_stream(
    nursery: trio.Nursery, stack: contextlib.AsyncExitStack, i: int
) -> None:
    stream = await stack.enter_async_context(open_stream(nursery, _discard, index=i))
    stream.delta_nowait("hello")  # published at once; nothing left buffered


async def _open_parked_task(
    nursery: trio.Nursery, stack: contextlib.AsyncExitStack, i: int
) -> None:
    nursery.start_soon(trio.sleep_forever)


def _discard(update: object) -> None:
    pass


async def _main(n_deltas: int, n_streams: int, repeats: int, window: float) -> list[dict[str, Any]]:
    pieces = _pieces(n_deltas)
    rates, floors, publishes, per_token = [], [], [], []
    for _ in range(repeats):
        floors.append(await _floor_ingest(pieces))
        rate, count = await _coalesced_ingest(pieces, max_buffered_chars=128)
        rates.append(rate)
        publishes.append(count * 1000 / n_deltas)
        _, count = await _coalesced_ingest(pieces, max_buffered_chars=0)
        per_token.append(count * 1000 / n_deltas)
    idle = await _count_idle_wakeups(n_streams, _open_idle_stream, repeats, window)
    idle_floor = await _count_idle_wakeups(n_streams, _open_parked_task, repeats, window)
    return [
        row("stream: coalesced deltas ingested+published per second", summary(rates), "deltas/s",
            summary(floors), "list.append + memory channel send_nowait", better="higher",
            repeats=repeats),
        row("stream: publishes per 1000 deltas (coalesced, 128 chars/50 ms)", summary(publishes),
            "publishes", summary(per_token), "per-token buffer (publishes every delta)",
            repeats=repeats),
        row(f"stream: scheduler wakeups/s of {n_streams} idle open streams", summary(idle),
            "wakeups/s", summary(idle_floor), f"{n_streams} bare tasks parked on an event",
            repeats=repeats),
    ]


def main(argv: list[str] | None = None) -> None:
    """Run the benchmark and print one line per figure (or a JSON list with ``--json``)."""

    def add(p):
        p.add_argument("--deltas", type=int, default=None, help="deltas per repeat (default 100000)")
        p.add_argument("--streams", type=int, default=None, help="idle open streams (default 10000)")

    args = options(__doc__, add, argv)
    quiet_logs()
    deltas = args.deltas or (10_000 if args.quick else 100_000)
    streams = args.streams or (500 if args.quick else 10_000)
    window = 0.05 if args.quick else 0.2  # seconds over which idle wakeups are counted, per repeat
    emit(trio.run(_main, deltas, streams, args.repeats, window), args.json)


if __name__ == "__main__":
    main()
