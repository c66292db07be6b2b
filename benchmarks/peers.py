"""corral next to crewAI, the same shape of work in one run: µs per run, RSS growth, import time.

    python benchmarks/peers.py [--quick] [--json] [--runs N] [--no-readme]   (just bench-peers)

It creates its own virtual environment under ``.bench-peers/venv`` (with this Python) and installs
crewAI pinned (``crewai==CREWAI_VERSION``) from the package registry, unless that version is there
already.  Then, in one run, each system runs a 2-step and a 10-step no-op flow, one run at a time:

- corral: one runtime (``open_runtime``); per run a ``Flow`` of N chained no-op python steps is
  built, spawned and awaited.
- crewAI: per run an instance of a ``crewai.flow.flow.Flow`` subclass with N no-op methods chained by
  ``@start``/``@listen`` is built and ``kickoff()``-ed.  Twice: with crewAI's defaults (flow events
  on; its console output goes to /dev/null, the rendering still runs) and with the public
  ``suppress_flow_events=True`` field.  Telemetry off through its documented environment variables
  (``OTEL_SDK_DISABLED``, ``CREWAI_DISABLE_TELEMETRY``, ``CREWAI_DISABLE_TRACKING``), tracing off
  (``CREWAI_TRACING_ENABLED=false``) and the version check off (``CREWAI_DISABLE_VERSION_CHECK``).

Figures (median of 5 windows of ``--runs``/5 runs each, after a warm-up; min..max over windows):
µs per run; RSS growth per 1_000 runs (from ``/proc/self/statm``); import time of ``runtime`` and of
``crewai.flow.flow`` in a fresh interpreter (5 imports each, after one to warm the bytecode cache).
Each row's value is crewAI's and its floor corral's, so ratio = crewAI / corral.

Writes ``benchmarks/peers.json`` and regenerates the README's benchmark section (with
``benchmarks/results.json``) unless ``--no-readme`` or ``--quick``.

Internally the same file is the worker: ``peers.py --worker corral|crewai --out PATH`` (stdlib only
at import time, so it runs in crewAI's venv too).
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

CREWAI_VERSION = "1.15.30"
ROOT = Path(__file__).resolve().parent.parent
VENV = ROOT / ".bench-peers" / "venv"
SHAPES = (2, 10)
WINDOWS = 5
QUIET_ENV = {
    "OTEL_SDK_DISABLED": "true",
    "CREWAI_DISABLE_TELEMETRY": "true",
    "CREWAI_DISABLE_TRACKING": "true",
    "CREWAI_TRACING_ENABLED": "false",
    "CREWAI_DISABLE_VERSION_CHECK": "true",
}


def rss_bytes() -> int:
    """Current RSS of this process (Linux ``/proc/self/statm``; stdlib only)."""
    with open("/proc/self/statm", encoding="ascii") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def measure(run_once, runs: int, warmup: int) -> dict[str, list[float]]:
    """µs per run and RSS growth per 1_000 runs over WINDOWS windows of ``runs // WINDOWS`` runs."""
    import gc

    for _ in range(warmup):
        run_once()
    per_window = max(1, runs // WINDOWS)
    us, growth = [], []
    gc.collect()
    last = rss_bytes()
    for _ in range(WINDOWS):
        t0 = time.perf_counter()
        for _ in range(per_window):
            run_once()
        us.append((time.perf_counter() - t0) / per_window * 1e6)
        gc.collect()
        now = rss_bytes()
        growth.append((now - last) / per_window * 1000)
        last = now
    return {"us": us, "rss_per_1000": growth}


# -- workers (run in the system's own interpreter) ------------------------------------------------------


def corral_worker(runs: int, warmup: int) -> dict[str, Any]:
    sys.path.insert(0, str(ROOT))
    import logging

    import structlog
    import trio

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING),
                        logger_factory=structlog.PrintLoggerFactory(sys.stderr))
    from runtime import Flow, Step, open_runtime

    async def noop(ctx, inputs):
        return None

    out: dict[str, Any] = {"system": "corral", "version": _version("corral")}

    async def main() -> None:
        async with open_runtime() as rt:
            for n in SHAPES:
                def build(n: int = n) -> Flow:
                    return Flow(f"noop{n}", [Step(f"s{i}", run=noop, after=[f"s{i - 1}"] if i else [])
                                            for i in range(n)])

                async def one(build=build) -> None:
                    await (await rt.spawn(build())).wait()

                out[f"noop{n}"] = await _measure_async(one, runs, warmup)

    trio.run(main)
    return out


async def _measure_async(run_once, runs: int, warmup: int) -> dict[str, list[float]]:
    """``measure`` for an async ``run_once`` (same windows, same RSS reads)."""
    import gc

    for _ in range(warmup):
        await run_once()
    per_window = max(1, runs // WINDOWS)
    us, growth = [], []
    gc.collect()
    last = rss_bytes()
    for _ in range(WINDOWS):
        t0 = time.perf_counter()
        for _ in range(per_window):
            await run_once()
        us.append((time.perf_counter() - t0) / per_window * 1e6)
        gc.collect()
        now = rss_bytes()
        growth.append((now - last) / per_window * 1000)
        last = now
    return {"us": us, "rss_per_1000": growth}


def crewai_worker(runs: int, warmup: int) -> dict[str, Any]:
    from crewai.flow.flow import Flow, listen, start

    def make(n: int) -> type:
        def step_fn(i: int):
            def step(self) -> None:
                return None

            step.__name__ = f"s{i}"
            return step

        ns: dict[str, Any] = {"s0": start()(step_fn(0))}
        for i in range(1, n):
            ns[f"s{i}"] = listen(f"s{i - 1}")(step_fn(i))
        return type(f"Noop{n}", (Flow,), ns)

    out: dict[str, Any] = {"system": "crewai", "version": _version("crewai")}
    for n in SHAPES:
        cls = make(n)
        out[f"noop{n}"] = measure(lambda cls=cls: cls().kickoff(), runs, warmup)
        out[f"noop{n}-quiet"] = measure(lambda cls=cls: cls(suppress_flow_events=True).kickoff(), runs, warmup)
    return out


def _version(dist: str) -> str:
    from importlib import metadata

    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "unknown"


# -- orchestration ------------------------------------------------------------------------------------------


def venv_python() -> Path:
    return VENV / "bin" / "python"


def ensure_venv() -> None:
    """Create ``.bench-peers/venv`` and install crewAI pinned, unless it is there already."""
    py = venv_python()
    if not py.exists():
        print(f"creating {VENV} ...", file=sys.stderr)
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    probe = subprocess.run([str(py), "-c", "import importlib.metadata as m; print(m.version('crewai'))"],
                           capture_output=True, text=True)
    if probe.returncode == 0 and probe.stdout.strip() == CREWAI_VERSION:
        return
    print(f"installing crewai=={CREWAI_VERSION} into {VENV} (a few minutes the first time) ...",
          file=sys.stderr)
    subprocess.run([str(py), "-m", "pip", "install", "--quiet", f"crewai=={CREWAI_VERSION}"], check=True)


def run_worker(python: Path | str, system: str, runs: int, warmup: int, tmp: Path) -> dict[str, Any]:
    out_path = tmp / f"{system}.json"
    env = {**os.environ, **QUIET_ENV}
    command = [str(python), str(Path(__file__).resolve()), "--worker", system, "--out", str(out_path),
               "--runs", str(runs), "--warmup", str(warmup)]
    # crewAI renders its flow events to the console: let it, into /dev/null
    proc = subprocess.run(command, cwd=tmp, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                          text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{system} worker failed ({proc.returncode}): {proc.stderr[-3000:]}")
    return json.loads(out_path.read_text(encoding="utf-8"))


def import_seconds(python: Path | str, module: str, repeats: int, cwd: Path) -> list[float]:
    code = f"import time; t = time.perf_counter(); import {module}; print(time.perf_counter() - t)"
    env = {**os.environ, **QUIET_ENV, "PYTHONPATH": str(ROOT)}
    times = []
    for i in range(repeats + 1):
        proc = subprocess.run([str(python), "-c", code], cwd=cwd, env=env, capture_output=True,
                              text=True, check=True)
        if i:  # the first import warms the bytecode cache
            times.append(float(proc.stdout.strip().splitlines()[-1]))
    return times


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="few runs: a smoke run")
    parser.add_argument("--json", action="store_true", help="print the rows as one JSON list")
    parser.add_argument("--runs", type=int, default=None, help="runs per shape (default 1000)")
    parser.add_argument("--warmup", type=int, default=None, help="runs before measuring (default 20)")
    parser.add_argument("--no-readme", action="store_true", help="leave the README alone")
    parser.add_argument("--worker", choices=("corral", "crewai"), help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    runs = args.runs or (25 if args.quick else 1000)
    warmup = args.warmup if args.warmup is not None else (2 if args.quick else 20)

    if args.worker:
        result = (corral_worker if args.worker == "corral" else crewai_worker)(runs, warmup)
        text = json.dumps(result)
        if args.out is None or str(args.out) == "-":
            print(text)
        else:
            args.out.write_text(text, encoding="utf-8")
        return 0

    import tempfile

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from _common import emit, machine, render_section, row, summary, update_readme

    ensure_venv()
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        print("running corral ...", file=sys.stderr)
        corral = run_worker(sys.executable, "corral", runs, warmup, tmp)
        print("running crewAI ...", file=sys.stderr)
        crew = run_worker(venv_python(), "crewai", runs, warmup, tmp)
        print("import times ...", file=sys.stderr)
        reps = 3 if args.quick else 5
        imp_corral = import_seconds(sys.executable, "runtime", reps, tmp)
        imp_crew = import_seconds(venv_python(), "crewai.flow.flow", reps, tmp)

    floor_name = "corral (one runtime; build Flow, spawn, wait per run)"
    rows = []
    for n in SHAPES:
        for key, label in ((f"noop{n}", "defaults, console to /dev/null"),
                           (f"noop{n}-quiet", "suppress_flow_events=True")):
            rows.append(row(f"peers: µs per run, {n}-step no-op flow (crewAI {label})",
                            summary(crew[key]["us"]), "µs/run", summary(corral[f"noop{n}"]["us"]),
                            floor_name, repeats=WINDOWS))
    for n in SHAPES:
        rows.append(row(f"peers: RSS growth per 1000 runs, {n}-step no-op flow (crewAI defaults)",
                        summary(crew[f"noop{n}"]["rss_per_1000"]), "B/1000 runs",
                        summary(corral[f"noop{n}"]["rss_per_1000"]), floor_name, repeats=WINDOWS,
                        note="corral's growth here is its result LRU filling (the last max_results=10_000 "
                             "results are kept for rt.result()); it is flat once the LRU is full"))
    rows.append(row("peers: import time (crewai.flow.flow vs runtime), fresh interpreter",
                    summary(t * 1e3 for t in imp_crew), "ms", summary(t * 1e3 for t in imp_corral),
                    "corral: import runtime", repeats=reps))
    peers = {"machine": machine(), "crewai_version": crew["version"], "corral_version": corral["version"],
             "date": time.strftime("%Y-%m-%d"), "runs": runs, "quick": args.quick,
             "command": "python benchmarks/peers.py" + (" --quick" if args.quick else ""),
             "raw": {"corral": corral, "crewai": crew, "import_s": {"corral": imp_corral, "crewai": imp_crew}},
             "rows": rows}
    emit(rows, args.json)
    if args.quick:
        return 0
    peers_path = ROOT / "benchmarks" / "peers.json"
    peers_path.write_text(json.dumps(peers, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {peers_path}", file=sys.stderr)
    results_path = ROOT / "benchmarks" / "results.json"
    if not args.no_readme and results_path.exists():
        results = json.loads(results_path.read_text(encoding="utf-8"))
        status = update_readme(ROOT / "README.md", render_section(results, peers))
        print(f"README benchmark section: {status}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
