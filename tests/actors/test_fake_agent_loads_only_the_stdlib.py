"""The fake agent runs as an agent process of its own: it loads only the standard library.

Checked as it is imported, run with ``-m`` and run by file path (as the demo and every
``--wrap`` generation run it), each in a fresh interpreter that serves one ``initialize``.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import actors.fake_agent

ROOT = Path(__file__).resolve().parents[2]
THIRD_PARTY = ("trio", "structlog", "attrs", "cattrs", "psutil")
INITIALIZE = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {}}) + "\n"

PROBE = f"""
import json, runpy, sys
how, target = sys.argv[1], sys.argv[2]
sys.argv = [target]
try:
    if how == "import":
        __import__(target)
    elif how == "module":
        runpy.run_module(target, run_name="__main__", alter_sys=True)
    else:
        runpy.run_path(target, run_name="__main__")
except SystemExit as exc:
    assert not exc.code, exc.code
finally:
    loaded = sorted({{name.split(".")[0] for name in sys.modules}} & set({list(THIRD_PARTY)!r}))
    sys.stderr.write("LOADED " + json.dumps(loaded) + "\\n")
"""


@pytest.mark.parametrize(
    "how,target",
    [
        ("import", "actors.fake_agent"),
        ("module", "actors.fake_agent"),
        ("path", str(Path(actors.fake_agent.__file__))),
    ],
)
def test_fake_agent_loads_only_the_standard_library(how: str, target: str) -> None:
    proc = subprocess.run(
        [sys.executable, "-c", PROBE, how, target],
        input=INITIALIZE if how != "import" else "",
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    loaded = [line for line in proc.stderr.splitlines() if line.startswith("LOADED ")]
    assert loaded == ["LOADED []"], proc.stderr
    if how != "import":
        answer = json.loads(proc.stdout.splitlines()[0])
        assert answer["id"] == 1 and answer["result"]["protocolVersion"] == 1
