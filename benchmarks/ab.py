"""Which of two checkouts costs less CPU on the store's workloads: an A/B for deciding a change.

    python benchmarks/ab.py OTHER [--repeats N] [--rounds N] [--json]
    (just bench-ab OTHER; e.g. OTHER from ``git worktree add /tmp/base HEAD~1``)

The wall-clock figures of ``durable.py`` swing by a third between runs on a shared machine; a
change worth 10% cannot be seen in them.  This script runs the same workloads (a 2-step no-op
flow; 1000 concurrent jobs ``record="off"`` on SQLite, ``"off"`` in memory, ``"durable"`` on
SQLite; 300 ``"durable"`` jobs one at a time) in this checkout (A) and in ``OTHER`` (B), each in a
fresh process that imports only its own checkout, alternating A B A B for ``--rounds`` rounds of
``--repeats`` repeats each.  Each timing is process CPU time (``time.process_time``: the writer and
checkpointer threads count too) per job, after 100 warm-up jobs and a ``gc.collect()``.  The
figure is the minimum over all repeats -- noise only adds -- with the median in the range; the
floor is A's figure, so the ratio is B's cost in A's units (> 1: B costs more).  It also prints
the transactions per 1000 jobs of each, from the store's own counters.

Not part of ``just bench``: it compares two versions, not corral with a floor.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import ROOT, emit, options, row

WORKLOADS = ("off, SQLite, 1000 concurrent", "off, in memory, 1000 concurrent",
             "durable, SQLite, 1000 concurrent", "durable, SQLite, one at a time")

WORKER = r"""
import gc, json, sys, tempfile, time
from pathlib import Path
root = Path(sys.argv[1]); sys.path[:0] = [str(root), str(root / "benchmarks")]
import trio
from _common import quiet_logs
import durable as d
quiet_logs()

async def run(path, mode, n, concurrent):
    async with d._open(path, n) as rt:
        flow = d.two_step()
        for _ in range(100):
            await (await rt.spawn(flow, record=mode)).wait()
        gc.collect()
        before, t0 = rt.store.stats().transactions, time.process_time()
        if concurrent:
            jobs = [await rt.spawn(flow, record=mode) for _ in range(n)]
            for job in jobs:
                await job.wait()
        else:
            for _ in range(n):
                await (await rt.spawn(flow, record=mode)).wait()
        cpu = (time.process_time() - t0) / n * 1e6
        return cpu, (rt.store.stats().transactions - before) * 1000 / n

async def main():
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(int(sys.argv[2])):
            db = lambda name: Path(tmp) / f"{name}{i}.db"
            for key, args in ((0, (db("o"), "off", 1000, True)), (1, (None, "off", 1000, True)),
                              (2, (db("d"), "durable", 1000, True)), (3, (db("s"), "durable", 300, False))):
                out.setdefault(key, []).append(await run(*args))
    print(json.dumps(out))

trio.run(main)
"""


def measure(root: Path, repeats: int) -> dict[int, list[tuple[float, float]]]:
    """One worker process in checkout ``root``: ``repeats`` (cpu µs/job, transactions/1000 jobs) per workload."""
    done = subprocess.run([sys.executable, "-c", WORKER, str(root), str(repeats)], capture_output=True,
                          text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"the worker in {root} failed:\n{done.stderr}")
    return {int(k): [tuple(x) for x in v] for k, v in json.loads(done.stdout.splitlines()[-1]).items()}


def main() -> None:
    def add(parser: Any) -> None:
        parser.add_argument("other", type=Path, help="the other checkout (B)")
        parser.add_argument("--rounds", type=int, default=2, help="A B alternations (default 2)")

    args = options(__doc__, add)
    other = args.other.resolve()
    if not (other / "benchmarks" / "durable.py").is_file():
        raise SystemExit(f"{other}: not a corral checkout (no benchmarks/durable.py)")
    results: dict[str, dict[int, list[tuple[float, float]]]] = {"A": {}, "B": {}}
    for _ in range(args.rounds):
        for name, root in (("A", ROOT), ("B", other)):
            for key, samples in measure(root, args.repeats).items():
                results[name].setdefault(key, []).extend(samples)
    rows = []
    for key, workload in enumerate(WORKLOADS):
        a, b = ([cpu for cpu, _ in results[n][key]] for n in ("A", "B"))
        tx = {n: statistics.median(t for _, t in results[n][key]) for n in ("A", "B")}
        rows.append(row(f"ab: {workload} (tx/1000 jobs: A {tx['A']:.0f}, B {tx['B']:.0f})",
                        (min(b), min(b), statistics.median(b)), "µs/job",
                        (min(a), min(a), statistics.median(a)), f"A = {ROOT} (B = {other}), CPU",
                        repeats=len(b), note="min over repeats; the range is min..median"))
    emit(rows, args.json)


if __name__ == "__main__":
    main()
