"""corral next to crewAI, LangGraph and DBOS, the same flows in one run: µs per run, RSS growth, import time.

    python benchmarks/peers.py [--quick] [--json] [--runs N] [--peers crewai,langgraph,dbos] [--no-readme]
    (just bench-peers)

Each peer gets its own virtual environment under ``.bench-peers/<peer>/`` (made with this Python),
with its packages pinned (``PEERS``) from the package registry; a venv is created only if it is
missing and reinstalled only when its pins changed (it keeps them in ``pins.txt``).  Then each
system runs a 2-step and a 10-step no-op flow, one run at a time, each (system, mode, shape) in its
own process and a fresh directory (so a fresh SQLite file), with the same runs and repeats
(``_peer_workers.py`` says exactly what each worker does).  Only one system runs at a time, and
their windows interleave: window k of every system runs before window k + 1 of any, so a change in
the load of a shared machine falls on all of them alike (the waiting workers are parked on a pipe;
DBOS's and corral's own background threads/timers stay alive meanwhile).

- corral in memory: one ``open_runtime()`` (in-memory store) and one ``Flow`` of N chained no-op
  python steps, per run a job spawned (``record="off"``) and awaited.  The floor of the in-memory
  rows whose peer also defines its flow once (crewAI's flow class, LangGraph's compiled graph).
- corral in memory, Flow built per run: the same with a new ``Flow`` per run.  The floor of
  LangGraph's StateGraph built + compiled per run.
- corral durable: one ``Flow`` on ``open_runtime(store=<fresh file>)`` with ``record="durable"``.
  The floor of the durable rows (LangGraph + SqliteSaver compiled once, DBOS's workflow decorated
  once).
- crewAI: per run a ``crewai.flow.flow.Flow`` subclass instance (N no-op methods chained by
  ``@start``/``@listen``) ``kickoff()``-ed, with its defaults (its console output to /dev/null) and
  with ``suppress_flow_events=True``.
- LangGraph in memory, no checkpointer: a ``StateGraph`` of N chained no-op nodes compiled once and
  ``invoke``-d per run (LangGraph's usual use, the cheapest for it), and built + compiled per run
  (as corral builds its ``Flow`` per run).
- LangGraph durable: compiled once with ``SqliteSaver`` (langgraph-checkpoint-sqlite) on a fresh
  file, a new ``thread_id`` per run, LangGraph's default durability.
- DBOS durable: a ``@DBOS.workflow`` of N ``@DBOS.step`` no-ops on a SQLite system database
  (``system_database_url="sqlite:///<fresh file>"``), launched once, one workflow per run.

Telemetry off (``QUIET_ENV``), peers' stdout to /dev/null, logs at WARNING.  Figures: the median of
5 windows of ``--runs``/5 runs each after a warm-up (min..max over windows), µs per run; RSS growth
per 1_000 runs (``/proc/self/statm``); import time in a fresh interpreter (5 imports each after one
to warm the bytecode cache).  Each row's floor is corral's matching mode: ratio = peer / corral.

Writes ``benchmarks/peers.json`` and regenerates the README's benchmark section (with
``benchmarks/results.json``) unless ``--no-readme``, ``--quick`` or ``--peers`` (a partial run).

Internally the same file is the worker: ``peers.py --worker NAME --steps N --out PATH`` (stdlib only
at import time, so it runs in every peer's venv).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BENCH = Path(__file__).resolve().parent
VENVS = ROOT / ".bench-peers"
SHAPES = (2, 10)
# peer -> its venv's pins, the modules its import time is measured on, its workers in run order
PEERS: dict[str, dict[str, Any]] = {
    "crewai": {"pins": ("crewai==1.15.30",), "imports": "crewai.flow.flow",
               "workers": ("crewai", "crewai-quiet")},
    "langgraph": {"pins": ("langgraph==1.2.24", "langgraph-checkpoint-sqlite==3.1.2"),
                  "imports": "langgraph.graph, langgraph.checkpoint.sqlite",
                  "workers": ("langgraph", "langgraph-build", "langgraph-sqlite")},
    "dbos": {"pins": ("dbos==3.4.0",), "imports": "dbos", "workers": ("dbos",)},
}
CORRAL_WORKERS = ("corral", "corral-build", "corral-durable")
QUIET_ENV = {
    "OTEL_SDK_DISABLED": "true",
    "CREWAI_DISABLE_TELEMETRY": "true",
    "CREWAI_DISABLE_TRACKING": "true",
    "CREWAI_TRACING_ENABLED": "false",
    "CREWAI_DISABLE_VERSION_CHECK": "true",
    "LANGSMITH_TRACING": "false",
    "LANGCHAIN_TRACING_V2": "false",
}
FLOORS = {"corral": "corral in memory (one runtime, one Flow; spawn, wait per run)",
          "corral-build": "corral in memory (one runtime; build Flow, spawn, wait per run)",
          "corral-durable": 'corral durable (record="durable", fresh SQLite store, one Flow)'}
# (worker, its floor, label) for the µs/run rows; the RSS rows are the workers in RSS_WORKERS
SPEED_ROWS = (
    ("crewai", "corral", "crewAI defaults, console to /dev/null"),
    ("crewai-quiet", "corral", "crewAI suppress_flow_events=True"),
    ("langgraph", "corral", "LangGraph in memory, compiled once, no checkpointer"),
    ("langgraph-build", "corral-build", "LangGraph in memory, StateGraph built + compiled per run"),
    ("langgraph-sqlite", "corral-durable", "LangGraph + SqliteSaver, durable, thread per run"),
    ("dbos", "corral-durable", "DBOS on SQLite, durable, workflow per run"),
)
RSS_WORKERS = ("crewai", "langgraph", "langgraph-sqlite", "dbos")
NOTES = {
    "corral": "corral's growth here is its result LRU filling (the last max_results=10_000 results are "
              "kept for rt.result()); it is flat once the LRU is full",
    "corral-build": "as corral's, a new Flow per run adding no growth of its own",
    "corral-durable": "each durable system runs with its own defaults: SQLite pragmas corral WAL + "
                      "synchronous=NORMAL, SqliteSaver WAL + synchronous=FULL, DBOS rollback journal; "
                      "LangGraph's default durability (\"async\": a step's checkpoint is written while "
                      "the next step runs, all before invoke returns); corral's RSS growth is its "
                      "result LRU filling, as in memory",
}


def worker_peer(worker: str) -> str | None:
    """The peer (venv) a worker runs in, ``None`` for corral's (this interpreter)."""
    return next((p for p, spec in PEERS.items() if worker in spec["workers"]), None)


# -- virtual environments -----------------------------------------------------------------------------


def venv_python(peer: str, root: Path = VENVS) -> Path:
    return root / peer / "bin" / "python"


def needs_install(peer: str, pins: tuple[str, ...], root: Path = VENVS) -> bool:
    """Whether ``root/peer`` lacks a Python or was installed with other pins than ``pins``."""
    marker = root / peer / "pins.txt"
    if not venv_python(peer, root).exists() or not marker.exists():
        return True
    return marker.read_text(encoding="utf-8").split() != list(pins)


def ensure_venv(peer: str, root: Path = VENVS) -> Path:
    """Create ``root/peer`` and pip-install its pins, unless it is there with the same pins already."""
    pins = tuple(PEERS[peer]["pins"])
    py = venv_python(peer, root)
    if not needs_install(peer, pins, root):
        return py
    if not py.exists():
        print(f"creating {root / peer} ...", file=sys.stderr)
        subprocess.run([sys.executable, "-m", "venv", str(root / peer)], check=True)
    print(f"installing {' '.join(pins)} into {root / peer} (a few minutes the first time) ...",
          file=sys.stderr)
    subprocess.run([str(py), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", *pins],
                   check=True)
    (root / peer / "pins.txt").write_text("\n".join(pins) + "\n", encoding="utf-8")
    return py


# -- running ------------------------------------------------------------------------------------------


class Worker:
    """One worker process, started in a fresh directory under ``tmp`` and held by its gate."""

    def __init__(self, python: Path | str, worker: str, steps: int, runs: int, warmup: int,
                 tmp: Path) -> None:
        self.name, self.steps = worker, steps
        self.cwd = tmp / f"{worker}-{steps}"
        self.cwd.mkdir()
        go_r, self._go = os.pipe()
        self._done, done_w = os.pipe()
        command = [str(python), str(Path(__file__).resolve()), "--worker", worker, "--steps", str(steps),
                   "--out", str(self.cwd / "result.json"), "--runs", str(runs), "--warmup", str(warmup),
                   "--gate", f"{go_r},{done_w}"]
        # crewAI renders its flow events to the console: let it, into /dev/null
        with open(self.cwd / "stderr.txt", "wb") as stderr:
            self.proc = subprocess.Popen(command, cwd=self.cwd, env={**os.environ, **QUIET_ENV},
                                         stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                         stderr=stderr, pass_fds=(go_r, done_w))
        os.close(go_r)
        os.close(done_w)

    def wait_signal(self) -> None:
        """Until the worker is done with its warm-up or its window."""
        if os.read(self._done, 1) != b".":
            self.fail()

    def go(self) -> None:
        try:
            os.write(self._go, b"g")
        except BrokenPipeError:
            self.fail()

    def window(self) -> None:
        """Let the worker run one window, and wait until it has."""
        self.go()
        self.wait_signal()

    def finish(self) -> dict[str, Any]:
        """Let the worker make its check and exit; its JSON result."""
        self.go()
        if self.proc.wait() != 0:
            self.fail()
        os.close(self._go)
        os.close(self._done)
        result: dict[str, Any] = json.loads((self.cwd / "result.json").read_text(encoding="utf-8"))
        return result

    def fail(self) -> None:
        code = self.proc.wait()
        tail = (self.cwd / "stderr.txt").read_text(encoding="utf-8", errors="replace")[-3000:]
        raise RuntimeError(f"{self.name} worker ({self.steps} steps) failed ({code}): {tail}")


def run_shape(pythons: dict[str, Path | str], steps: int, runs: int, warmup: int,
              tmp: Path) -> dict[str, Any]:
    """Every worker on a ``steps``-step flow, their windows interleaved: window k of each system
    runs (alone) before window k + 1 of any.  Workers start one at a time, each warmed up before
    the next starts, so no warm-up, start or final check overlaps a measured window."""
    from _peer_workers import WINDOWS

    workers = []
    try:
        for name, python in pythons.items():
            print(f"starting {name}, {steps} steps ...", file=sys.stderr)
            workers.append(Worker(python, name, steps, runs, warmup, tmp))
            workers[-1].wait_signal()
        for k in range(WINDOWS):
            print(f"window {k + 1}/{WINDOWS}, {steps} steps ...", file=sys.stderr)
            for w in workers:
                w.window()
        return {f"{w.name}/{steps}": w.finish() for w in workers}
    finally:
        for w in workers:
            if w.proc.poll() is None:
                w.proc.kill()
                w.proc.wait()


def import_seconds(python: Path | str, modules: str, repeats: int, cwd: Path) -> list[float]:
    """Seconds to ``import modules`` in a fresh interpreter, ``repeats`` times after a warm-up."""
    code = f"import time; t = time.perf_counter(); import {modules}; print(time.perf_counter() - t)"
    env = {**os.environ, **QUIET_ENV, "PYTHONPATH": str(ROOT)}
    times = []
    for i in range(repeats + 1):
        proc = subprocess.run([str(python), "-c", code], cwd=cwd, env=env, capture_output=True,
                              text=True, check=True)
        if i:  # the first import warms the bytecode cache
            times.append(float(proc.stdout.strip().splitlines()[-1]))
    return times


def run_all(peers: list[str], runs: int, warmup: int, import_repeats: int) -> dict[str, Any]:
    """Every worker of corral and ``peers`` on every shape, then the import times: the raw results."""
    import tempfile

    pythons: dict[str, Path | str] = {w: sys.executable for w in CORRAL_WORKERS}
    for peer in peers:
        py = ensure_venv(peer)
        pythons.update({w: py for w in PEERS[peer]["workers"]})
    raw: dict[str, Any] = {"workers": {}, "import_s": {}}
    with tempfile.TemporaryDirectory(prefix="corral-peers-") as tmpdir:
        tmp = Path(tmpdir)
        for n in SHAPES:
            raw["workers"].update(run_shape(pythons, n, runs, warmup, tmp))
        print("import times ...", file=sys.stderr)
        raw["import_s"]["corral"] = import_seconds(sys.executable, "runtime", import_repeats, tmp)
        for peer in peers:
            raw["import_s"][peer] = import_seconds(venv_python(peer), PEERS[peer]["imports"],
                                                   import_repeats, tmp)
    return raw


# -- rows ---------------------------------------------------------------------------------------------


def build_rows(raw: dict[str, Any], windows: int, import_repeats: int) -> list[dict[str, Any]]:
    """The table: each peer's figure with corral's matching mode as its floor (ratio = peer / corral)."""
    from _common import row, summary

    got = raw["workers"]
    rows = []
    for n in SHAPES:
        for worker, floor, label in SPEED_ROWS:
            if f"{worker}/{n}" in got:
                rows.append(row(f"peers: µs per run, {n}-step no-op flow ({label})",
                                summary(got[f"{worker}/{n}"]["us"]), "µs/run",
                                summary(got[f"{floor}/{n}"]["us"]), FLOORS[floor], repeats=windows))
    for n in SHAPES:
        for worker, floor, label in SPEED_ROWS:
            if worker in RSS_WORKERS and f"{worker}/{n}" in got:
                rows.append(row(f"peers: RSS growth per 1000 runs, {n}-step no-op flow ({label})",
                                summary(got[f"{worker}/{n}"]["rss_per_1000"]), "B/1000 runs",
                                summary(got[f"{floor}/{n}"]["rss_per_1000"]), FLOORS[floor],
                                repeats=windows, note=NOTES[floor]))
    corral_ms = summary(t * 1e3 for t in raw["import_s"]["corral"])
    for peer, times in raw["import_s"].items():
        if peer != "corral":
            rows.append(row(f"peers: import time ({PEERS[peer]['imports']} vs runtime), fresh interpreter",
                            summary(t * 1e3 for t in times), "ms", corral_ms, "corral: import runtime",
                            repeats=import_repeats))
    return rows


def all_versions(raw: dict[str, Any]) -> dict[str, str]:
    """Every system's installed versions, as its workers read them."""
    out: dict[str, str] = {}
    for result in raw["workers"].values():
        out.update(result["versions"])
    return out


# -- main ---------------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").strip().splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="few runs: a smoke run")
    parser.add_argument("--json", action="store_true", help="print the rows as one JSON list")
    parser.add_argument("--runs", type=int, default=None, help="runs per shape (default 1000)")
    parser.add_argument("--warmup", type=int, default=None, help="runs before measuring (default 20)")
    parser.add_argument("--peers", default=",".join(PEERS),
                        help=f"comma-separated subset of {','.join(PEERS)} (a partial run writes nothing)")
    parser.add_argument("--no-readme", action="store_true", help="leave the README alone")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--steps", type=int, default=2, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--gate", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.peers = [p for p in args.peers.split(",") if p]
    unknown = sorted(set(args.peers) - set(PEERS))
    if unknown or not args.peers:
        parser.error(f"--peers: unknown {unknown or 'none given'}; choose from {','.join(PEERS)}")
    if args.runs is not None and args.runs < 1:
        parser.error("--runs must be >= 1")
    args.runs = args.runs or (25 if args.quick else 1000)
    args.warmup = args.warmup if args.warmup is not None else (2 if args.quick else 20)
    return args


def worker_main(args: argparse.Namespace) -> int:
    sys.path.insert(0, str(BENCH))
    from _peer_workers import Gate, run_worker

    text = json.dumps(run_worker(args.worker, args.steps, args.runs, args.warmup, Gate(args.gate)))
    if args.out is None or str(args.out) == "-":
        print(text)
    else:
        args.out.write_text(text, encoding="utf-8")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.worker:
        return worker_main(args)
    sys.path.insert(0, str(BENCH))
    from _common import emit, machine, render_section, update_readme
    from _peer_workers import WINDOWS

    reps = 3 if args.quick else 5
    load_before = os.getloadavg()
    raw = run_all(args.peers, args.runs, args.warmup, reps)
    raw["load_avg"] = {"before": load_before, "after": os.getloadavg()}  # the machine may be shared
    rows = build_rows(raw, WINDOWS, reps)
    versions = all_versions(raw)
    partial = args.peers != list(PEERS)
    command = "python benchmarks/peers.py" + (" --quick" if args.quick else "")
    peers = {"machine": machine(), "versions": versions,
             "pins": {p: list(PEERS[p]["pins"]) for p in args.peers},
             "date": time.strftime("%Y-%m-%d"), "runs": args.runs, "warmup": args.warmup,
             "quick": args.quick, "command": command, "raw": raw, "rows": rows}
    emit(rows, args.json)
    if args.quick or partial:
        return 0
    peers_path = BENCH / "peers.json"
    peers_path.write_text(json.dumps(peers, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {peers_path}", file=sys.stderr)
    results_path = BENCH / "results.json"
    if not args.no_readme and results_path.exists():
        results = json.loads(results_path.read_text(encoding="utf-8"))
        status = update_readme(ROOT / "README.md", render_section(results, peers))
        print(f"README benchmark section: {status}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
