"""The SQLite store's writer thread: one long-lived thread that runs the write transactions.

``trio.to_thread.run_sync`` per transaction costs a thread-cache handoff and a limiter each time;
this thread is started once per store, takes calls from a queue and answers each through the trio
token (``run_sync_soon``), about half the round trip.  It parks on the queue while idle (no
polling) and ends when :meth:`WriterThread.stop` is called (the store's close joins it).
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from typing import Any, TypeVar

import trio

__all__ = ["WriterThread"]

_T = TypeVar("_T")
_Result = tuple[bool, Any]  # (True, value) or (False, the exception)
_Call = tuple[Callable[[], Any], Callable[[_Result], None]] | None


class WriterThread:
    """Runs blocking calls one at a time, in order, on one thread of its own."""

    def __init__(self, name: str) -> None:
        self._queue: queue.SimpleQueue[_Call] = queue.SimpleQueue()
        self._token = trio.lowlevel.current_trio_token()
        self._thread = threading.Thread(target=self._serve, name=name, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        token = self._token
        while True:
            call = self._queue.get()
            if call is None:
                return
            fn, report = call
            try:
                result: _Result = (True, fn())
            except BaseException as exc:  # handed to the caller, raised there
                result = (False, exc)
            token.run_sync_soon(report, result)

    async def run(self, fn: Callable[..., _T], *args: Any) -> _T:
        """``fn(*args)`` on the thread; its result or exception.  Not cancellable once queued
        (callers shield it): a started transaction always finishes."""
        done = trio.Event()
        box: list[_Result] = []

        def report(result: _Result) -> None:
            box.append(result)
            done.set()

        self._queue.put((lambda: fn(*args), report))
        await done.wait()
        ok, value = box[0]
        if not ok:
            raise value
        result: _T = value
        return result

    def stop(self) -> None:
        """End the thread once the calls queued before have run."""
        self._queue.put(None)

    def join(self) -> None:
        """Wait (blocking) until the thread has ended."""
        self._thread.join()
