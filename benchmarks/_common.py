"""Shared by the benchmark scripts: repeat, take the median, print rows or JSON."""

from __future__ import annotations

import json
import statistics
import sys
from collections.abc import Callable
from typing import Any

REPEATS = 5


def repeat(fn: Callable[[], float], repeats: int = REPEATS) -> tuple[float, float, float]:
    """(median, min, max) of ``repeats`` calls of ``fn``."""
    values = [fn() for _ in range(repeats)]
    return statistics.median(values), min(values), max(values)


def row(figure: str, value: tuple[float, float, float], unit: str,
        floor: tuple[float, float, float] | None = None, floor_name: str = "") -> dict[str, Any]:
    med, lo, hi = value
    out: dict[str, Any] = {"figure": figure, "value": med, "min": lo, "max": hi, "unit": unit}
    if floor is not None:
        out["floor"] = floor[0]
        out["floor_name"] = floor_name
        out["ratio"] = med / floor[0] if floor[0] else None
    return out


def emit(rows: list[dict[str, Any]]) -> None:
    """Print ``rows`` as a table, or as JSON with ``--json``."""
    if "--json" in sys.argv:
        print(json.dumps(rows))
        return
    print(f"{'figure':58} {'value':>12} {'(min..max)':>22} {'floor':>10} {'ratio':>7}")
    for r in rows:
        floor = f"{r['floor']:.2f}" if r.get("floor") is not None else "-"
        ratio = f"{r['ratio']:.2f}" if r.get("ratio") is not None else "-"
        rng = f"({r['min']:.2f}..{r['max']:.2f})"
        print(f"{r['figure'][:58]:58} {r['value']:>10.2f} {r['unit'][:2]:2} {rng:>21} {floor:>10} {ratio:>7}")
