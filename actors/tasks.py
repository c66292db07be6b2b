"""Trio's task tree, walked: what leak checks and ``stats()`` count."""

from __future__ import annotations

from collections.abc import Iterator

import trio

__all__ = ["walk_tasks"]


def walk_tasks(root: trio.lowlevel.Task | None = None) -> Iterator[trio.lowlevel.Task]:
    """``root`` (default: the run's root task) and every task below it in trio's task tree
    (depth first, no recursion)."""
    if root is None:
        root = trio.lowlevel.current_root_task()
        if root is None:
            raise RuntimeError("walk_tasks() needs a trio run")
    todo = [root]
    while todo:
        task = todo.pop()
        yield task
        for nursery in task.child_nurseries:
            todo.extend(nursery.child_tasks)
