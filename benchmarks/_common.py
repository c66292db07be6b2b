"""Shared by the benchmark scripts: options, repeats, rows, the table, the machine line, README.

Every script prints a table, or with ``--json`` one JSON list of rows on its last stdout line::

    {"figure", "value", "unit", "min", "max", "floor", "floor_name", "ratio", "better", "repeats"}

``value`` is the median of ``repeats`` runs (at least 5 unless ``--quick``), ``min``/``max`` their
range.  ``floor`` is the same work done by the simplest trio/stdlib code, measured in the same run.
``ratio`` is always "times the floor's cost": ``value / floor`` when lower is better (time, bytes),
``floor / value`` when higher is better (throughput) -- so 1.0 is "as cheap as the floor" and 3.0
is "three times the floor's cost", whichever way the unit reads.  Rows without a floor (counts that
should be 0, slopes) have ``floor`` and ``ratio`` set to ``None``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import logging
import math
import os
import platform
import statistics
import sys
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

REPEATS = 5
QUICK_REPEATS = 3
BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
README_START = "<!-- bench:start -->"
README_END = "<!-- bench:end -->"
README_HEADING = "## Benchmarks"

Sample = tuple[float, float, float]  # (median, min, max)
SKIP_EXIT = 78  # a script that cannot run here (an optional extra is missing) exits with this


def skip(reason: str) -> None:
    """Tell ``run_all`` this script cannot run here (e.g. an optional extra is not installed)."""
    print(f"skipped: {reason}", file=sys.stderr)
    raise SystemExit(SKIP_EXIT)


def options(doc: str | None, add: Callable[[argparse.ArgumentParser], None] | None = None,
            argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parse the options every script shares (``--json``, ``--quick``, ``--repeats``) plus ``add``'s.

    ``args.repeats`` defaults to 5, or 3 with ``--quick``.
    """
    parser = argparse.ArgumentParser(description=(doc or "").strip().splitlines()[0] if doc else None)
    parser.add_argument("--json", action="store_true", help="print the rows as one JSON list")
    parser.add_argument("--quick", action="store_true", help="small sizes, fewer repeats: a smoke run")
    parser.add_argument("--repeats", type=int, default=None, help="repeats per figure (default 5)")
    if add is not None:
        add(parser)
    args = parser.parse_args(argv)
    if args.repeats is None:
        args.repeats = QUICK_REPEATS if args.quick else REPEATS
    if args.repeats < 1:
        parser.error("--repeats must be >= 1")
    return args


def quiet_logs() -> None:
    """Keep stdout for the figures: structlog's default logger prints there; only warnings, to stderr."""
    import structlog

    structlog.configure(
        wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
    )


def summary(values: Iterable[float]) -> Sample:
    """(median, min, max) of ``values``."""
    vals = list(values)
    return statistics.median(vals), min(vals), max(vals)


def repeat(fn: Callable[[], float], repeats: int = REPEATS) -> Sample:
    """(median, min, max) of ``repeats`` calls of ``fn``."""
    return summary(fn() for _ in range(repeats))


def row(figure: str, value: Sample, unit: str, floor: Sample | None = None, floor_name: str = "",
        *, better: str = "lower", repeats: int | None = None, note: str = "") -> dict[str, Any]:
    """One figure.  ``better`` is ``"lower"`` (time, bytes, counts) or ``"higher"`` (throughput)."""
    if better not in ("lower", "higher"):
        raise ValueError("better must be 'lower' or 'higher'")
    med, lo, hi = value
    out: dict[str, Any] = {"figure": figure, "value": med, "unit": unit, "min": lo, "max": hi,
                           "floor": None, "floor_name": floor_name or None, "ratio": None,
                           "better": better, "repeats": repeats}
    if floor is not None:
        out["floor"] = floor[0]
        out["ratio"] = ratio(med, floor[0], better)
    if note:
        out["note"] = note
    return out


def ratio(value: float, floor: float, better: str = "lower") -> float | None:
    """Times the floor's cost (see the module docstring); ``None`` when undefined."""
    num, den = (value, floor) if better == "lower" else (floor, value)
    if not den or not math.isfinite(num) or not math.isfinite(den):
        return None
    return num / den


ROW_KEYS = ("figure", "value", "unit", "min", "max", "floor", "floor_name", "ratio")


def validate_rows(rows: Any) -> list[dict[str, Any]]:
    """Check a script's JSON output; raise ``ValueError`` naming what is wrong."""
    if not isinstance(rows, list) or not rows:
        raise ValueError("expected a non-empty JSON list of rows")
    for i, r in enumerate(rows):
        if not isinstance(r, dict):
            raise ValueError(f"row {i}: not an object")
        missing = [k for k in ROW_KEYS if k not in r]
        if missing:
            raise ValueError(f"row {i} ({r.get('figure')!r}): missing {missing}")
        if not isinstance(r["figure"], str) or not isinstance(r["unit"], str):
            raise ValueError(f"row {i}: figure and unit must be strings")
        for k in ("value", "min", "max"):
            if not isinstance(r[k], int | float) or isinstance(r[k], bool):
                raise ValueError(f"row {i} ({r['figure']!r}): {k} must be a number, got {r[k]!r}")
        if r["min"] > r["max"]:
            raise ValueError(f"row {i} ({r['figure']!r}): min > max")
        for k in ("floor", "ratio"):
            if r[k] is not None and (not isinstance(r[k], int | float) or isinstance(r[k], bool)):
                raise ValueError(f"row {i} ({r['figure']!r}): {k} must be a number or null")
    return rows


def fmt(x: float | None) -> str:
    """A number for a table: 3 significant-ish digits, thousands separators for big ones."""
    if x is None:
        return "-"
    if not math.isfinite(x):
        return str(x)
    ax = abs(x)
    if ax >= 1000:
        return f"{x:,.0f}"
    if ax >= 100:
        return f"{x:.0f}"
    if ax >= 10:
        return f"{x:.1f}"
    if ax >= 0.01 or ax == 0:
        return f"{x:.2f}"
    return f"{x:.2g}"


def table(rows: Sequence[dict[str, Any]], *, width: int = 70) -> str:
    """Rows as a fixed-width text table: figure, value unit, floor, ratio, min..max."""
    lines = [f"{'figure':{width}} {'value':>12} {'unit':10} {'floor':>12} {'ratio':>7}  min..max"]
    for r in rows:
        fig = r["figure"] if len(r["figure"]) <= width else r["figure"][: width - 1] + "~"
        lines.append(f"{fig:{width}} {fmt(r['value']):>12} {r['unit'][:10]:10} {fmt(r['floor']):>12} "
                     f"{fmt(r['ratio']):>7}  {fmt(r['min'])}..{fmt(r['max'])}")
    return "\n".join(lines)


def emit(rows: list[dict[str, Any]], as_json: bool | None = None) -> None:
    """Print ``rows`` as a table, or as one JSON line with ``--json``."""
    if as_json is None:
        as_json = "--json" in sys.argv
    if as_json:
        print(json.dumps(rows))
        return
    print(table(rows))
    floors = sorted({r["floor_name"] for r in rows if r.get("floor_name")})
    if floors:
        print("\nfloors (measured in this run): " + "; ".join(floors))
    print("ratio = times the floor's cost (value/floor, or floor/value for throughput)")


def machine() -> dict[str, Any]:
    """The machine line: cpu count, python, trio version, platform, date."""
    import trio

    try:
        import psutil

        mem_gb: float | None = round(psutil.virtual_memory().total / 2**30, 1)
        cpus_usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    except Exception:  # pragma: no cover - psutil is a dependency, this is belt and braces
        mem_gb, cpus_usable = None, os.cpu_count()
    return {
        "cpu_count": os.cpu_count(),
        "cpus_usable": cpus_usable,
        "cpu_model": _cpu_model(),
        "memory_gb": mem_gb,
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "trio": trio.__version__,
        "platform": platform.platform(),
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine_line(m: dict[str, Any]) -> str:
    """``machine()`` as one human line."""
    mem = f", {m['memory_gb']} GB RAM" if m.get("memory_gb") else ""
    return (f"{m['cpu_count']} CPUs ({m.get('cpu_model', '?')}){mem}, {m['implementation']} "
            f"{m['python']}, trio {m['trio']}, {m['platform']}, {m['date']}")


# -- README ---------------------------------------------------------------------------------------


def markdown_table(rows: Sequence[dict[str, Any]]) -> str:
    """Rows as a Markdown table; each row's note becomes a numbered footnote under it."""
    out = ["| figure | value | floor | ratio | min..max |", "| --- | ---: | ---: | ---: | --- |"]
    notes: list[str] = []
    for r in rows:
        floor = "-" if r["floor"] is None else f"{fmt(r['floor'])} ({r.get('floor_name') or 'floor'})"
        mark = ""
        if r.get("note"):
            if r["note"] not in notes:  # rows that share a note share its number
                notes.append(r["note"])
            mark = f" [{notes.index(r['note']) + 1}]"
        out.append(f"| {r['figure']}{mark} | {fmt(r['value'])} {r['unit']} | {floor} | "
                   f"{fmt(r['ratio'])} | {fmt(r['min'])}..{fmt(r['max'])} |")
    if notes:
        out.append("")
        out += [f"[{i}] {note}  " for i, note in enumerate(notes, 1)]
    return "\n".join(out)


def render_section(results: dict[str, Any], peers: dict[str, Any] | None = None) -> str:
    """The README's benchmark section (the text between the markers) from ``results.json``."""
    m = results["machine"]
    lines = [
        "",
        f"Machine: {machine_line(m)}.",
        "",
        "Commands: `just bench` (`python benchmarks/run_all.py`; `--quick` for a smoke run), "
        "`just bench-peers` (`python benchmarks/peers.py`), `python benchmarks/soak.py --minutes N`.",
        "Each figure is the median of "
        f"{'at least ' if not results.get('quick') else ''}{results.get('repeats', REPEATS)} repeats "
        "with min..max; each floor is the same work done by bare trio/stdlib code, measured in the "
        "same run. Ratio = times the floor's cost (value/floor; floor/value for throughput), so 1.0 "
        "is \"free\". Generated from `benchmarks/results.json` by `benchmarks/run_all.py`"
        f"{' (QUICK run: small sizes, not for comparison)' if results.get('quick') else ''}.",
        "",
    ]
    for name, script in results["scripts"].items():
        if "rows" not in script:
            why = script.get("skipped") or f"failed: {script.get('error', '?')}"
            lines += [f"**{name}**: {why}.", ""]
            continue
        lines.append(f"**{name}** ({script['seconds']:.0f} s)")
        lines.append("")
        lines.append(markdown_table(script["rows"]))
        lines.append("")
    if results.get("plot"):
        lines += [f"Scaling curve: `{results['plot']}`.", ""]
    if peers:
        lines += [f"**peers** (`just bench-peers`, {peer_versions(peers)}, {peers.get('date', '')}, "
                  f"{peers.get('runs', '?')} runs per figure; ratio = peer / corral in the same mode)",
                  "", markdown_table(peers["rows"]), ""]
    return "\n".join(lines)


def peer_versions(peers: dict[str, Any]) -> str:
    """The peers' pinned versions for the README, e.g. ``crewai 1.15.30, dbos 3.4.0``."""
    if "versions" not in peers:  # a peers.json from before LangGraph and DBOS
        return f"crewai {peers.get('crewai_version', '?')}"
    shown = [f"{dist} {version}" for dist, version in peers["versions"].items()
             if dist not in ("corral", "trio", "sqlalchemy")]
    return ", ".join(shown)


def update_readme(readme: Path, section: str) -> str:
    """Replace the text between the markers in ``readme`` with ``section``.

    If the markers are absent but a ``## Benchmarks`` heading exists, the markers are added right
    under the heading.  Returns what happened: ``"updated"``, ``"added"``, ``"missing"`` (no
    markers, no heading: nothing written) or ``"no-readme"``.
    """
    if not readme.exists():
        return "no-readme"
    text = readme.read_text(encoding="utf-8")
    start, end = text.find(README_START), text.find(README_END)
    block = f"{README_START}\n{section.strip(chr(10))}\n{README_END}"
    if start != -1 and end != -1 and start < end:
        new = text[:start] + block + text[end + len(README_END):]
        status = "updated"
    else:
        lines = text.splitlines(keepends=True)
        at = next((i for i, line in enumerate(lines) if line.strip() == README_HEADING), None)
        if at is None:
            return "missing"
        lines.insert(at + 1, f"\n{block}\n")
        new = "".join(lines)
        status = "added"
    if new != text:
        readme.write_text(new, encoding="utf-8")
    return status


# -- idle wakeups ---------------------------------------------------------------------------------


async def idle_wakeups_per_s(repeats: int, window: float) -> list[float]:
    """Scheduler wakeups per second of every task but the caller's, over ``repeats`` windows.

    Call it once the things under test are idle (after ``trio.testing.wait_all_tasks_blocked``).
    Uses a trio ``Instrument`` counting ``task_scheduled``; the hook only counts.
    """
    import time

    import trio

    me = trio.lowlevel.current_task()

    class Counter(trio.abc.Instrument):
        def __init__(self) -> None:
            self.count = 0

        def task_scheduled(self, task: trio.lowlevel.Task) -> None:
            if task is not me:
                self.count += 1

    rates = []
    for _ in range(repeats):
        counter = Counter()
        trio.lowlevel.add_instrument(counter)
        try:
            t0 = time.perf_counter()
            await trio.sleep(window)
            elapsed = time.perf_counter() - t0
        finally:
            trio.lowlevel.remove_instrument(counter)
        rates.append(counter.count / elapsed)
    return rates
