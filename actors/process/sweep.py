"""Killing what a runtime leaves behind: :func:`kill_tree` and :func:`sweep_dead_runtimes`.

A runtime that died without its keepers (``lifeline=False``, or before they could act) leaves
marked processes whose runtime is gone. The next runtime sweeps them at start-up; a process of a
live runtime, this one included, is never touched, even across a wall-clock step or a recycled
pid.
"""

from __future__ import annotations

import psutil
import trio

from ..log import get_logger
from .marker import START_TOLERANCE, Marker, marked

__all__ = ["kill_tree", "sweep_dead_runtimes"]

KILL_WAIT = 3.0
"""Bound on waiting for SIGKILLed processes to vanish (and a leader to be reaped)."""


def kill_tree(procs: list[psutil.Process], grace: float) -> None:
    """SIGTERM ``procs``, wait up to ``grace`` seconds, then SIGKILL the survivors.

    Blocking; call it through ``trio.to_thread``. Processes that are already gone
    are ignored; psutil guards every signal against recycled pids.
    """
    for proc in procs:
        try:
            proc.terminate()
        except psutil.Error:
            pass
    _gone, alive = psutil.wait_procs(procs, timeout=grace)
    for proc in alive:
        try:
            proc.kill()
        except psutil.Error:
            pass
    if alive:
        psutil.wait_procs(alive, timeout=KILL_WAIT)


def runtime_gone(marker: Marker, member: psutil.Process) -> bool:
    """True when the runtime that started ``member`` has died (robust to clock steps)."""
    try:
        member_started = member.create_time()
    except psutil.Error:
        return False  # gone already, or not ours to judge
    try:
        runtime = psutil.Process(marker.runtime_pid)
        if runtime.status() == psutil.STATUS_ZOMBIE:
            return True
        started = runtime.create_time()
        if abs(started - marker.runtime_started) <= START_TOLERANCE:
            return False
        # A recycled pid, or the wall clock was stepped since the marker was written.
        # The runtime was alive when its tree started, so a process recycling its pid
        # started after ``member``; the real runtime started before it (and takes far
        # longer than a clock tick to spawn anything, so a tie means recycled). Both
        # times are read now, against the same clock.
        return started >= member_started
    except psutil.NoSuchProcess:
        return True
    except psutil.AccessDenied:
        return False


def _sweep(grace: float) -> int:
    procs = [proc for proc, marker in marked() if runtime_gone(marker, proc)]
    kill_tree(procs, grace)
    return len(procs)


async def sweep_dead_runtimes(grace: float = 1.0) -> int:
    """Kill every marked process whose runtime is no longer alive; return how many.

    Meant for runtime start-up: it catches what a runtime that died without its
    keepers (``lifeline=False``) left behind. Processes of live runtimes,
    this one included, are left alone.
    """
    count = await trio.to_thread.run_sync(_sweep, grace)
    if count:
        get_logger("actors.process").warning("swept processes of dead runtimes", count=count)
    return count
