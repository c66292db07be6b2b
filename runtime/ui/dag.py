"""A flow's steps laid out as a DAG for the job page's SVG.

Read from the flow definition the store keeps (:func:`runtime.flow.codec.flow_to_dict`), so a job
whose python steps cannot be imported here is drawn all the same.  A step depends on the steps in
its ``after``, on those its inputs reference (``$step.field``) and on those its prompt names
(``{step.field}``); it sits one column right of the deepest of them.  Loop rules are drawn as
dashed edges back to their target.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

import attrs

__all__ = ["Dag", "Edge", "Node", "layout"]

NODE_W, NODE_H, GAP_X, GAP_Y, PAD = 168, 52, 56, 22, 16
_PLACEHOLDER = re.compile(r"\{([A-Za-z_][\w-]*)\.")


@attrs.frozen
class Node:
    name: str
    kind: str
    x: int
    y: int


@attrs.frozen
class Edge:
    path: str
    loop: bool = False
    label: str = ""


@attrs.frozen
class Dag:
    nodes: Sequence[Node]
    edges: Sequence[Edge]
    width: int
    height: int


def _deps(step: Mapping[str, Any], names: set[str]) -> list[str]:
    deps = [str(d) for d in step.get("after") or () if d in names]
    for value in (step.get("inputs") or {}).values():
        if isinstance(value, str) and value.startswith("$"):
            head = value[1:].split(".", 1)[0]
            if head in names and head not in deps:
                deps.append(head)
    for head in _PLACEHOLDER.findall(step.get("prompt") or ""):
        if head in names and head not in deps:
            deps.append(head)
    return deps


def _kind(step: Mapping[str, Any]) -> str:
    return "agent" if step.get("agent") else "command" if step.get("command") else "python"


def layout(flow: Mapping[str, Any]) -> Dag:
    """Columns by depth, rows in definition order; edges as cubic curves."""
    steps = [s for s in flow.get("steps") or () if isinstance(s, Mapping) and s.get("name")]
    names = {str(s["name"]) for s in steps}
    deps = {str(s["name"]): _deps(s, names) for s in steps}
    depth: dict[str, int] = {}

    def depth_of(name: str, seen: frozenset[str] = frozenset()) -> int:
        if name not in depth:
            parents = [d for d in deps[name] if d not in seen]
            depth[name] = 1 + max((depth_of(d, seen | {name}) for d in parents), default=-1)
        return depth[name]

    rows: dict[int, int] = {}
    nodes: dict[str, Node] = {}
    for step in steps:
        name = str(step["name"])
        col = depth_of(name)
        row = rows.get(col, 0)
        rows[col] = row + 1
        nodes[name] = Node(name, _kind(step), PAD + col * (NODE_W + GAP_X), PAD + row * (NODE_H + GAP_Y))
    edges = [_edge(nodes[d], nodes[n]) for n in deps for d in deps[n]]
    for step in steps:
        for rule in step.get("exits") or ():
            if isinstance(rule, Mapping) and rule.get("action") == "loop" and rule.get("target") in nodes:
                edges.append(_loop(nodes[str(step["name"])], nodes[str(rule["target"])], str(rule.get("name", ""))))
    width = PAD * 2 + max((n.x for n in nodes.values()), default=0) + NODE_W
    height = PAD * 2 + max((n.y for n in nodes.values()), default=0) + NODE_H + GAP_Y
    return Dag(list(nodes.values()), edges, width, height)


def _edge(a: Node, b: Node) -> Edge:
    x1, y1, x2, y2 = a.x + NODE_W, a.y + NODE_H // 2, b.x, b.y + NODE_H // 2
    mid = (x1 + x2) // 2
    return Edge(f"M{x1},{y1} C{mid},{y1} {mid},{y2} {x2},{y2}")


def _loop(a: Node, b: Node, label: str) -> Edge:
    x1, y1, x2, y2 = a.x + NODE_W // 2, a.y + NODE_H, b.x + NODE_W // 2, b.y + NODE_H
    low = max(y1, y2) + GAP_Y
    return Edge(f"M{x1},{y1} C{x1},{low} {x2},{low} {x2},{y2}", loop=True, label=label)
