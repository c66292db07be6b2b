"""The marker: the identity every contained process carries in its environment.

A :class:`Marker` names the runtime that started a process (by id, pid and process start time,
so that a dead runtime can be told from a recycled pid), its job and its process group. It is
written into ``MARKER_ENV`` and inherited by every descendant, so a process that left its group
(``setsid``, double fork) is still found by :func:`find_marked`.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Callable, Iterator

import attrs
import psutil

__all__ = ["MARKER_ENV", "Marker", "find_marked"]

MARKER_ENV = "CORRAL_MARKER"
"""Name of the environment variable that carries a process's :class:`Marker`."""

START_TOLERANCE = 0.1
"""Seconds of slack when matching a runtime's process start time."""

_MARKER_VERSION = 1


def _current_create_time(pid: int) -> float:
    return psutil.Process(pid).create_time()


@attrs.frozen
class Marker:
    """Identity written into a subprocess's environment (``MARKER_ENV``).

    It names the owning runtime (by id, pid and process start time, so a dead
    runtime can be told from a recycled pid), the job and the process group.
    """

    runtime_id: str
    job_id: str
    runtime_pid: int = attrs.field(factory=os.getpid)
    runtime_started: float = attrs.field()
    group_id: str = attrs.field(factory=lambda: uuid.uuid4().hex)

    @runtime_started.default
    def _runtime_started_default(self) -> float:
        return _current_create_time(self.runtime_pid)

    def env_value(self) -> str:
        """Serialise the marker for the ``MARKER_ENV`` environment variable."""
        data = {"v": _MARKER_VERSION, **attrs.asdict(self)}
        return json.dumps(data, separators=(",", ":"), sort_keys=True)

    @classmethod
    def parse(cls, value: str) -> Marker | None:
        """Read a marker written by :meth:`env_value`; ``None`` if ``value`` is not one."""
        try:
            data = json.loads(value)
        except (TypeError, ValueError):
            return None
        if not isinstance(data, dict) or data.get("v") != _MARKER_VERSION:
            return None
        strings = ("runtime_id", "job_id", "group_id")
        if not all(isinstance(data.get(name), str) for name in strings):
            return None
        pid, started = data.get("runtime_pid"), data.get("runtime_started")
        if not isinstance(pid, int) or isinstance(pid, bool):
            return None
        if not isinstance(started, int | float) or isinstance(started, bool):
            return None
        return cls(
            runtime_id=data["runtime_id"],
            job_id=data["job_id"],
            runtime_pid=pid,
            runtime_started=float(started),
            group_id=data["group_id"],
        )

    def runtime_alive(self) -> bool:
        """True while the runtime named by this marker is still running (blocking, psutil).

        Compares wall-clock start times, so a wall-clock step larger than a tenth
        of a second makes a live runtime look dead; :func:`sweep_dead_runtimes`
        does not rely on it alone.
        """
        try:
            proc = psutil.Process(self.runtime_pid)
            if abs(proc.create_time() - self.runtime_started) > START_TOLERANCE:
                return False
            return proc.status() != psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            return False
        except psutil.AccessDenied:
            return True


def marker_value(proc: psutil.Process) -> str | None:
    """The raw ``MARKER_ENV`` value of ``proc``; ``None`` if it has none or cannot be read."""
    try:
        return proc.environ().get(MARKER_ENV)
    except (psutil.Error, OSError):
        return None


def is_zombie(proc: psutil.Process) -> bool:
    """True when ``proc`` has exited (a zombie, or gone); False when it cannot be told."""
    try:
        return proc.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True
    except psutil.Error:
        return False


def marked() -> Iterator[tuple[psutil.Process, Marker]]:
    """Every live marked process but the caller, with its parsed marker."""
    own = os.getpid()
    for proc in psutil.process_iter():
        if proc.pid == own:
            continue
        value = marker_value(proc)
        marker = Marker.parse(value) if value is not None else None
        if marker is not None and not is_zombie(proc):
            yield proc, marker


def find_marked(predicate: Callable[[Marker], bool]) -> list[psutil.Process]:
    """Live processes whose ``MARKER_ENV`` parses to a marker satisfying ``predicate``.

    Blocking (walks the process table); call it through ``trio.to_thread``.
    Zombies and the calling process itself are never returned.
    """
    return [proc for proc, marker in marked() if predicate(marker)]
