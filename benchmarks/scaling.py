"""Scaling curves: spawn cost and memory per job at 1, 100, 1_000, 10_000 and 100_000 concurrent jobs.

    python benchmarks/scaling.py [--json] [--quick] [--repeats N] [--max-jobs N] [--plot PATH | --no-plot]

For each N, N jobs of a 1-step flow are spawned; each step parks on one shared ``trio.Event`` so all
N are live at once.  Once every task is blocked the RSS is read, the event is set, and every job is
awaited.  Figures per N (median of the repeats, with min and max):

- µs per job from the first ``spawn`` to the last ``job.wait()`` (spawn + run + finish);
- RSS growth per live job (RSS with all N parked, minus RSS before the first spawn, over N);
  RSS moves in pages, so below ~1_000 jobs this figure is coarse.

Floor: a bare trio nursery per job with one task parked on the same event.  Each repeat runs in a
freshly forked child of a warmed-up parent (the child warms up again with 10 jobs of each kind, to
take its copy-on-write page faults outside the measurement), so RSS starts from the same heap every
time and a 100_000-job repeat does not inflate the next.  Flat per-job figures mean cost grows
linearly.

With matplotlib installed (the ``plot`` extra) a PNG of both curves is written, by default to
``benchmarks/scaling.png`` (not with ``--quick`` unless ``--plot`` is given); without it the plot
is skipped with a note on stderr.
"""

from __future__ import annotations

import gc
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import psutil
import trio
import trio.testing

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _common import BENCH_DIR, emit, options, quiet_logs, row, summary

from runtime import Flow, Step, open_runtime

SIZES = (1, 100, 1_000, 10_000, 100_000)
QUICK_SIZES = (1, 10, 100)
FLOOR = "bare nursery per job, one task parked on the event"


# -- one measurement (runs in a forked child) -----------------------------------------------------------


async def _corral(n: int) -> dict[str, float]:
    gate = trio.Event()

    async def park(ctx, inputs):
        await gate.wait()

    flow = Flow("park", [Step("s", run=park)])
    proc = psutil.Process()
    async with open_runtime() as rt:
        gc.collect()
        rss0 = proc.memory_info().rss
        t0 = time.perf_counter()
        jobs = [await rt.spawn(flow) for _ in range(n)]
        await trio.testing.wait_all_tasks_blocked()
        t1 = time.perf_counter()
        rss1 = proc.memory_info().rss  # (reading RSS and stats is outside the timing)
        if rt.stats().live_jobs != n:
            raise RuntimeError(f"expected {n} live jobs, got {rt.stats().live_jobs}")
        t2 = time.perf_counter()
        gate.set()
        for job in jobs:
            await job.wait()
        elapsed = time.perf_counter() - t2 + t1 - t0
    return {"us": elapsed / n * 1e6, "rss": (rss1 - rss0) / n, "peak_rss": rss1, "seconds": elapsed}


async def _floor(n: int) -> dict[str, float]:
    gate = trio.Event()

    async def bare_job() -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(gate.wait)

    proc = psutil.Process()
    gc.collect()
    rss0 = proc.memory_info().rss
    t0 = time.perf_counter()
    async with trio.open_nursery() as nursery:
        for _ in range(n):
            nursery.start_soon(bare_job)
        await trio.testing.wait_all_tasks_blocked()
        t1 = time.perf_counter()
        rss1 = proc.memory_info().rss
        t2 = time.perf_counter()
        gate.set()
    elapsed = time.perf_counter() - t2 + t1 - t0
    return {"us": elapsed / n * 1e6, "rss": (rss1 - rss0) / n, "peak_rss": rss1, "seconds": elapsed}


def in_child(kind: str, n: int) -> dict[str, float]:
    """Run one measurement in a forked child (fresh heap, nothing carried over)."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: measure, report, exit without running the parent's cleanup
        code = 0
        try:
            os.close(r)
            _warm_up()  # take the copy-on-write page faults after fork outside the measurement
            out = trio.run(_corral if kind == "corral" else _floor, n)
            os.write(w, json.dumps(out).encode())
        except BaseException as exc:
            os.write(w, json.dumps({"error": repr(exc)}).encode())
            code = 1
        finally:
            os._exit(code)
    os.close(w)
    chunks = []
    while chunk := os.read(r, 65536):
        chunks.append(chunk)
    os.close(r)
    _, status = os.waitpid(pid, 0)
    out = json.loads(b"".join(chunks) or b'{"error": "no output"}')
    if "error" in out or os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{kind} x {n}: {out.get('error', status)}")
    return out


def _warm_up() -> None:
    # import-time and first-use allocations happen in the parent, before any fork
    trio.run(_corral, 10)
    trio.run(_floor, 10)


# -- plot -------------------------------------------------------------------------------------------------


def plot(results: dict[int, dict[str, dict[str, list[float]]]], path: Path) -> bool:
    """Draw both curves into ``path``; False (with a note on stderr) without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("scaling: matplotlib is not installed, no plot (pip install -e '.[plot]')",
              file=sys.stderr)
        return False
    sizes = sorted(results)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for ax, key, label, where in ((axes[0], "us", "µs per job (spawn to finished)", "upper right"),
                                  (axes[1], "rss", "RSS bytes per live job", "lower right")):
        for kind, style in (("corral", "o-"), ("floor", "s--")):
            med = [summary(results[n][kind][key])[0] for n in sizes]
            lo = [med[i] - summary(results[n][kind][key])[1] for i, n in enumerate(sizes)]
            hi = [summary(results[n][kind][key])[2] - med[i] for i, n in enumerate(sizes)]
            ax.errorbar(sizes, med, yerr=[lo, hi], fmt=style, capsize=3,
                        label="corral" if kind == "corral" else FLOOR)
        ax.set_xscale("log")
        ax.set_xlabel("concurrent jobs")
        ax.set_ylabel(label)
        ax.set_ylim(bottom=0)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8, loc=where)
    fig.suptitle("corral scaling: cost per job should be flat")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


# -- main ---------------------------------------------------------------------------------------------------


def main() -> None:
    def add(p):
        p.add_argument("--max-jobs", type=int, default=None, help="largest N (default 100000)")
        p.add_argument("--plot", type=Path, default=None, help="where to write the PNG")
        p.add_argument("--no-plot", action="store_true", help="do not draw the plot")

    args = options(__doc__, add)
    quiet_logs()
    sizes = QUICK_SIZES if args.quick else SIZES
    if args.max_jobs:
        sizes = tuple(n for n in SIZES if n <= args.max_jobs) or (args.max_jobs,)
    _warm_up()
    results: dict[int, dict[str, dict[str, list[float]]]] = {}
    rows: list[dict[str, Any]] = []
    for n in sizes:
        res: dict[str, dict[str, list[float]]] = {k: {"us": [], "rss": [], "peak_rss": [], "seconds": []}
                                                  for k in ("floor", "corral")}
        for _ in range(args.repeats):
            for kind in ("floor", "corral"):
                out = in_child(kind, n)
                for key in res[kind]:
                    res[kind][key].append(out[key])
        results[n] = res
        rows.append(row(f"scaling: spawn+finish, {n} concurrent jobs", summary(res["corral"]["us"]),
                        "µs/job", summary(res["floor"]["us"]), FLOOR, repeats=args.repeats))
        rows.append(row(f"scaling: RSS per live job, {n} concurrent jobs", summary(res["corral"]["rss"]),
                        "B/job", summary(res["floor"]["rss"]), FLOOR, repeats=args.repeats))
    top = max(sizes)
    rows.append(row(f"scaling: process RSS with {top} live jobs",
                    summary(v / 2**20 for v in results[top]["corral"]["peak_rss"]), "MB",
                    summary(v / 2**20 for v in results[top]["floor"]["peak_rss"]), FLOOR,
                    repeats=args.repeats))
    rows.append(row(f"scaling: wall time for {top} concurrent jobs", summary(results[top]["corral"]["seconds"]),
                    "s", summary(results[top]["floor"]["seconds"]), FLOOR, repeats=args.repeats))
    target = args.plot if args.plot is not None else (None if args.quick else BENCH_DIR / "scaling.png")
    if target is not None and not args.no_plot and plot(results, target):
        print(f"scaling: plot written to {target}", file=sys.stderr)
    emit(rows, args.json)


if __name__ == "__main__":
    main()
