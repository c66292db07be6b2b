"""A job's numbered event log with a bounded window, shared by host actors and the controller."""

from __future__ import annotations

import bisect
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

T = TypeVar("T")


class EventLog(Generic[T]):
    """The latest ``max_events`` entries of one job (ordered by seq; trimmed in chunks, so up to
    1/8 more are held between trims).  ``since(seq)`` replays from a seq and says how many
    entries before the first one it returns are gone (trimmed, or never received)."""

    __slots__ = ("_entries", "_max", "_seq")

    def __init__(self, max_events: int, seq: Callable[[T], int]) -> None:
        if max_events < 1:
            raise ValueError(f"max_events must be >= 1, got {max_events}")
        self._entries: list[T] = []
        self._max = max_events
        self._seq = seq

    def __len__(self) -> int:
        return len(self._entries)

    def __iter__(self) -> Iterator[T]:
        return iter(self._entries)

    @property
    def last_seq(self) -> int:
        """The seq of the newest entry, -1 when empty."""
        return self._seq(self._entries[-1]) if self._entries else -1

    def append(self, entry: T) -> None:
        self._entries.append(entry)
        if len(self._entries) > self._max + max(1, self._max // 8):
            del self._entries[: len(self._entries) - self._max]

    def since(self, seq: int) -> tuple[int, list[T]]:
        """``(missing, entries)``: the entries with seq >= ``seq``, and how many seqs from ``seq``
        up to the first of them this log no longer (or never) held."""
        i = bisect.bisect_left(self._entries, seq, key=self._seq)
        batch = self._entries[i:]
        missing = self._seq(batch[0]) - seq if batch and self._seq(batch[0]) > seq else 0
        return missing, batch

    def first_from(self, seq: int) -> T | None:
        """The oldest entry with seq >= ``seq`` still held, ``None`` if there is none."""
        i = bisect.bisect_left(self._entries, seq, key=self._seq)
        return self._entries[i] if i < len(self._entries) else None
