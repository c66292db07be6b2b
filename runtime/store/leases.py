"""Leases and the orphan sweep: how a runtime finds the processes and jobs of runtimes that died.

A runtime with a persistent store holds a lease (its pid and process start time) and records a
row per live process group.  A runtime that starts sweeps: a lease whose process is gone marks a
dead runtime, whose marked processes are killed and whose running jobs become
:data:`~runtime.store.INTERRUPTED`.
"""

from __future__ import annotations

import os
import socket
import stat
import time

import psutil
import trio

from actors.log import get_logger
from actors.process import Marker, find_marked, kill_tree

from .protocol import Store
from .records import INTERRUPTED, Lease, ProcessGroupRow

__all__ = ["group_row", "lease_alive", "new_lease", "sweep_dead"]

_log = get_logger("corral.store")


def lease_alive(lease: Lease) -> bool:
    """True while the runtime that wrote ``lease`` still runs (same pid, same process start)."""
    if lease.host != socket.gethostname():
        return True  # another machine's runtime: never ours to judge
    try:
        proc = psutil.Process(lease.pid)
        return abs(proc.create_time() - lease.started) < 0.1 and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
    except psutil.AccessDenied:
        return True


def new_lease(runtime_id: str, control: str | None = None) -> Lease:
    pid = os.getpid()
    return Lease(runtime_id=runtime_id, pid=pid, started=psutil.Process(pid).create_time(),
                 host=socket.gethostname(), created_at=time.time(), control=control)


async def sweep_dead(store: Store, grace: float) -> set[str]:
    """Kill the processes of runtimes whose lease is dead; forget their groups and leases; mark
    their running and pending jobs :data:`INTERRUPTED` (a paused job stays paused).

    An interrupted job's ``updated_at`` is its last sign of life (its last recorded event, or its
    record's last update), so its duration reads start -> crash.  Returns the dead runtimes' ids.
    """
    leases = await store.list_leases()
    dead = {lease.runtime_id for lease in leases if not lease_alive(lease)}
    known = {lease.runtime_id for lease in leases}
    dead |= {g.runtime_id for g in await store.list_process_groups() if g.runtime_id not in known}
    if not dead:
        return dead

    def kill() -> int:
        procs = find_marked(lambda m: m.runtime_id in dead)
        kill_tree(procs, grace)
        return len(procs)

    killed = await trio.to_thread.run_sync(kill)
    for lease in leases:
        if lease.runtime_id in dead and lease.control is not None:
            _remove_stale_socket(lease.control)
    interrupted = 0
    for runtime_id in dead:
        interrupted += await _interrupt_jobs(store, runtime_id)
        await store.delete_process_groups(runtime_id)
        await store.delete_lease(runtime_id)
    _log.info("swept_dead_runtimes", runtimes=len(dead), processes=killed, interrupted_jobs=interrupted)
    return dead


def _remove_stale_socket(path: str) -> None:
    """Remove a dead runtime's control socket (only a socket: never another kind of file)."""
    try:
        if stat.S_ISSOCK(os.lstat(path).st_mode):
            os.unlink(path)
            os.rmdir(os.path.dirname(path))
    except OSError:
        pass  # gone already, or its directory still holds other runtimes' sockets


async def _interrupt_jobs(store: Store, runtime_id: str) -> int:
    """Mark the running/pending jobs of the dead runtime ``runtime_id`` interrupted."""
    states = ("running", "pending")
    recs = await store.list_jobs(states=states, runtime_id=runtime_id)
    for rec in recs:
        last = rec.updated_at
        tail = await store.read_events(rec.job_id, max(rec.next_seq - 1, 0))
        if tail:
            last = max(last, tail[-1].ts)
        await store.update_job(rec.job_id, state=INTERRUPTED, updated_at=last)
    return len(recs)


def group_row(marker: Marker, pgid: int) -> ProcessGroupRow:
    """The row that lets a later runtime find this process group if ours dies."""
    return ProcessGroupRow(runtime_id=marker.runtime_id, job_id=marker.job_id, pgid=pgid, marker=marker.env_value())
