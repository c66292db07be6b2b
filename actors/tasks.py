"""Trio's task tree, walked: what leak checks and ``stats()`` count."""

from __future__ import annotations

from collections.abc import Iterator

import trio

__all__ = ["walk_tasks"]


def walk_tasks(root: trio.lowlevel.Task) -> Iterator[trio.lowlevel.Task]:
    """``root`` and every task below it in trio's task tree (depth first, no recursion)."""
    todo = [root]
    while todo:
        task = todo.pop()
        yield task
        for nursery in task.child_nurseries:
            todo.extend(nursery.child_tasks)
