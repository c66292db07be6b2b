"""Signalling a process group and parking until processes exit (pidfd: no polling)."""

from __future__ import annotations

import os
from collections.abc import Sequence

import trio

__all__ = ["killpg", "wait_all_exit", "wait_pid_exit"]


def killpg(pgid: int, sig: int) -> None:
    """Send ``sig`` to the group ``pgid``; a group that is gone (or not ours) is ignored."""
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


async def wait_pid_exit(pid: int) -> None:
    """Park until ``pid`` exits (becomes a zombie or disappears); no polling."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return
    except OSError:  # pidfd unsupported: nothing to park on, do not wait
        await trio.lowlevel.checkpoint()
        return
    try:
        await trio.lowlevel.wait_readable(fd)
    finally:
        os.close(fd)


async def wait_all_exit(proc: trio.Process | None, pids: Sequence[int]) -> None:
    """Park until ``proc`` (if any, reaped by trio) and every other pid of ``pids`` exited."""
    async with trio.open_nursery() as nursery:
        if proc is not None:
            nursery.start_soon(proc.wait)
        for pid in pids:
            if proc is None or pid != proc.pid:
                nursery.start_soon(wait_pid_exit, pid)
