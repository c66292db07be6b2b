"""Load time and peak RSS of a large flow file (run by hand; not part of ``run_all.py``)::

    python benchmarks/_flow_file_size.py [--mb 10] [--mb 0.9] [--no-limit]

For each size it writes a flow of that many megabytes (independent command steps) to a temporary
directory and loads it in a fresh interpreter with ``load_flow_text`` (so the size limit of
``load_flow`` does not refuse it), printing seconds and the child's peak RSS.  The file is
loaded once per size: this measures the parser, it is not a repeatable micro-benchmark.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

CHILD = """
import json, resource, sys, time
from runtime.cli.yaml import load_flow_text
text = open(sys.argv[1], encoding="utf-8").read()
t0 = time.perf_counter()
flow = load_flow_text(text, sys.argv[1])
took = time.perf_counter() - t0
print(json.dumps({"steps": len(flow.steps), "seconds": took,
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def write_flow(path: Path, megabytes: float) -> int:
    target = int(megabytes * 1024 * 1024)
    parts = ["name: big\nsteps:\n"]
    size, i = len(parts[0]), 0
    while size < target:
        chunk = f"  step{i}:\n    command: [echo, \"hello from step {i}\"]\n    timeout: 30\n"
        parts.append(chunk)
        size += len(chunk)
        i += 1
    path.write_text("".join(parts), encoding="utf-8")
    return path.stat().st_size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=float, action="append", help="file size in MB (repeatable)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        for mb in args.mb or [10.0, 0.9]:
            path = Path(tmp) / f"flow-{mb}MB.yaml"
            size = write_flow(path, mb)
            out = subprocess.run([sys.executable, "-c", CHILD, str(path)], cwd=ROOT, capture_output=True,
                                 text=True, check=True)
            figures = json.loads(out.stdout.splitlines()[-1])
            print(f"{size / 1e6:7.2f} MB  {figures['steps']:>7} steps  {figures['seconds']:8.2f} s  "
                  f"peak RSS {figures['peak_rss_mb']:7.1f} MB")


if __name__ == "__main__":
    main()
