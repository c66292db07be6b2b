"""Run every benchmark script, print one table, write ``benchmarks/results.json``, update the README.

    python benchmarks/run_all.py [--quick] [--only NAME,...] [--skip NAME,...] [--soak-minutes N]
                                 [--results PATH] [--readme PATH | --no-readme]

Every ``benchmarks/*.py`` except ``_*.py``, this file, ``peers.py`` (``just bench-peers``) and
``ab.py`` (``just bench-ab``, which compares two checkouts) runs
as a subprocess with ``--json`` (and ``--quick``), in the same Python.  Each prints one JSON list
of rows (figure, value, unit, min, max, floor, floor_name, ratio); the rows are checked, printed as
one table, and written with a machine line (cpu count, python, trio, platform, date) to
``results.json``.  The README's text between ``<!-- bench:start -->`` and ``<!-- bench:end -->``
is then regenerated from that file (and from ``benchmarks/peers.json`` when present).  If the
markers are missing they are added under a ``## Benchmarks`` heading; with neither, a warning.

``--quick`` is a smoke run: small sizes, 3 repeats, written to ``benchmarks/results.quick.json``,
and the README is left alone unless ``--readme`` is given.  A script that cannot run here (it exits
with ``_common.SKIP_EXIT``, or an optional extra such as ``ray`` is not installed) is reported as
skipped.  Exit status 1 if any script failed.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (
    BENCH_DIR,
    QUICK_REPEATS,
    REPEATS,
    ROOT,
    SKIP_EXIT,
    machine,
    machine_line,
    render_section,
    table,
    update_readme,
    validate_rows,
)

EXCLUDED = {"run_all.py", "peers.py", "ab.py"}


def scripts() -> list[Path]:
    """The benchmark scripts ``run_all`` runs, in name order."""
    return sorted(p for p in BENCH_DIR.glob("*.py") if not p.name.startswith("_") and p.name not in EXCLUDED)


_MISSING = re.compile(r"ModuleNotFoundError: No module named '([\w.]+)'")
_OURS = ("runtime", "actors", "_common")


def skipped_because(returncode: int, stderr: str) -> str | None:
    """Why a failed script counts as skipped rather than failed, or ``None``.

    A script skips by exiting with ``SKIP_EXIT`` (see ``_common.skip``), or by failing to import
    a module that is not corral's own: an optional extra (``ray`` for ``cluster.py``) that a fresh
    ``pip install -e '.[dev]'`` does not install.
    """
    if returncode == SKIP_EXIT:
        lines = [line for line in stderr.splitlines() if line.startswith("skipped:")]
        return lines[-1].removeprefix("skipped:").strip() if lines else "the script skipped itself"
    missing = _MISSING.findall(stderr)
    if returncode != 0 and missing and missing[-1].split(".")[0] not in _OURS:
        return f"needs {missing[-1]!r}, not installed (an optional extra)"
    return None


def run_script(path: Path, extra: list[str]) -> dict[str, Any]:
    """Run one script with ``--json``; its rows, or why it was skipped, or an error."""
    command = [sys.executable, str(path), "--json", *extra]
    t0 = time.perf_counter()
    proc = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    shown = ["python", str(path.relative_to(ROOT)), "--json", *extra]
    out: dict[str, Any] = {"command": " ".join(shown), "seconds": seconds}
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    reason = skipped_because(proc.returncode, proc.stderr)
    if reason is not None:
        out["skipped"] = reason
        return out
    try:
        if proc.returncode != 0:
            raise ValueError(f"exit status {proc.returncode}")
        if not lines:
            raise ValueError("no output")
        out["rows"] = validate_rows(json.loads(lines[-1]))
    except ValueError as exc:
        out["error"] = str(exc)
        out["stderr_tail"] = proc.stderr[-3000:]
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, 3 repeats: a smoke run")
    parser.add_argument("--only", default="", help="comma-separated script names to run (e.g. spawn,store)")
    parser.add_argument("--skip", default="", help="comma-separated script names to skip")
    parser.add_argument("--soak-minutes", type=float, default=None, help="passed to soak.py --minutes")
    parser.add_argument("--results", type=Path, default=None, help="where to write the results JSON")
    parser.add_argument("--readme", type=Path, default=None, help="the README to update")
    parser.add_argument("--no-readme", action="store_true", help="leave the README alone")
    args = parser.parse_args(argv)

    only = {n.strip().removesuffix(".py") for n in args.only.split(",") if n.strip()}
    skip = {n.strip().removesuffix(".py") for n in args.skip.split(",") if n.strip()}
    chosen = [p for p in scripts() if (not only or p.stem in only) and p.stem not in skip]
    unknown = (only | skip) - {p.stem for p in scripts()}
    if unknown:
        parser.error(f"unknown script(s): {', '.join(sorted(unknown))}")
    results_path = args.results or BENCH_DIR / ("results.quick.json" if args.quick else "results.json")
    plot_path = results_path.with_name("scaling.png")

    results: dict[str, Any] = {
        "machine": machine(),
        "quick": args.quick,
        "repeats": QUICK_REPEATS if args.quick else REPEATS,
        "command": " ".join(["python benchmarks/run_all.py", *(argv if argv is not None else sys.argv[1:])]),
        "scripts": {},
        "plot": None,
    }
    print(f"machine: {machine_line(results['machine'])}", file=sys.stderr)
    failed = []
    started = time.time()
    for path in chosen:
        extra = ["--quick"] if args.quick else []
        if path.stem == "scaling" and not args.quick:  # (no plot in a smoke run)
            extra += ["--plot", str(plot_path)]
        if path.stem == "soak" and args.soak_minutes is not None:
            extra += ["--minutes", str(args.soak_minutes)]
        print(f"running {path.name} ...", file=sys.stderr, flush=True)
        out = run_script(path, extra)
        results["scripts"][path.stem] = out
        if "skipped" in out:
            print(f"  skipped: {out['skipped']}", file=sys.stderr)
        elif "error" in out:
            failed.append(path.stem)
            print(f"  FAILED after {out['seconds']:.0f} s: {out['error']}\n{out['stderr_tail']}",
                  file=sys.stderr)
        else:
            print(f"  {len(out['rows'])} figures in {out['seconds']:.0f} s", file=sys.stderr)
    if plot_path.exists() and plot_path.stat().st_mtime >= started:  # drawn by this run's scaling.py
        results["plot"] = str(plot_path.relative_to(ROOT)) if plot_path.is_relative_to(ROOT) else str(plot_path)

    rows = [r for s in results["scripts"].values() for r in s.get("rows", [])]
    if rows:
        print(table(rows))
    print(f"\nmachine: {machine_line(results['machine'])}")
    print("ratio = times the floor's cost (value/floor; floor/value for throughput); floors measured in this run")
    results_path.parent.mkdir(parents=True, exist_ok=True)
    results_path.write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {results_path}")

    readme = args.readme if args.readme is not None else (None if args.quick or args.no_readme else ROOT / "README.md")
    if readme is not None:
        peers_path = BENCH_DIR / "peers.json"
        peers = json.loads(peers_path.read_text(encoding="utf-8")) if peers_path.exists() else None
        status = update_readme(readme, render_section(results, peers))
        if status in ("missing", "no-readme"):
            print(f"warning: {readme}: no '<!-- bench:start -->' markers and no '## Benchmarks' heading; "
                  "README not updated", file=sys.stderr)
        else:
            print(f"{status} the benchmark section of {readme}")
    if failed:
        print(f"FAILED: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
