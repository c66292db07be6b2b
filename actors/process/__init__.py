"""Contained subprocess trees: spawn, contain, terminate, kill, reap.

Every subprocess corral starts runs in its own session (so in its own process group) with a
:class:`Marker` in its environment naming the runtime, the job and the group. When the owning
task leaves, the whole tree is torn down in bounded time: close stdin, wait, SIGTERM the group,
wait, then SIGKILL the group unconditionally (even if the leader already exited) and every marked
process that left the group (``setsid``, double fork), then reap. With ``lifeline=True`` a small
keeper (:mod:`actors.keeper`) heads the group and takes it down if the runtime process itself
dies, even by SIGKILL; as a child subreaper it also kills every orphaned descendant, marked or
not, before it exits. :func:`sweep_dead_runtimes` catches whatever a dead runtime left behind
when the next runtime starts.

Layers, each importing only those before it::

    marker    the identity in MARKER_ENV; finding marked processes
    sweep     kill_tree, and sweeping what dead runtimes left behind
    reap      signalling a group, parking until pids exit (pidfd, no polling)
    spawn     starting a command in a session of its own, under the keeper
    stdout    the group's stdout as its owner reads it (EOF once the group is gone)
    group     ProcessGroup and open_process_group: one tree, torn down when its owner leaves
"""

from .group import ProcessGroup as ProcessGroup
from .group import open_process_group as open_process_group
from .marker import MARKER_ENV as MARKER_ENV
from .marker import Marker as Marker
from .marker import find_marked as find_marked
from .sweep import kill_tree as kill_tree
from .sweep import sweep_dead_runtimes as sweep_dead_runtimes

__all__ = [
    "MARKER_ENV",
    "Marker",
    "ProcessGroup",
    "find_marked",
    "kill_tree",
    "open_process_group",
    "sweep_dead_runtimes",
]
