"""Job ids: the ones a runtime makes up when ``spawn`` is given none."""

from __future__ import annotations

import os
import time

__all__ = ["new_job_id"]

_SUB_MS = 4096  # the 12 bits of ``rand_a`` hold the fraction of the millisecond (RFC 9562, method 3)


def new_job_id() -> str:
    """A fresh job id: a UUIDv7 (RFC 9562) as 32 hex digits, like ``uuid.UUID(...).hex``.

    Ids sort in the order they were made (to 1/4096 ms, as far as the wall clock goes forward),
    so a store's index of job ids takes each new one beside the last: a batch of finishing jobs
    touches a page or two of that index instead of one page per job, as random ids do.  The low
    62 bits are random (``os.urandom``)."""
    ns = time.time_ns()
    ms, rest = divmod(ns, 1_000_000)
    value = ((ms & 0xFFFF_FFFF_FFFF) << 80 | 0x7 << 76 | (rest * _SUB_MS // 1_000_000) << 64
             | 0b10 << 62 | int.from_bytes(os.urandom(8)) >> 2)
    return f"{value:032x}"
