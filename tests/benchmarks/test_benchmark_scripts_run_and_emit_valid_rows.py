"""Smoke tests of the benchmark scripts: each runs with ``--quick`` and emits valid JSON rows.

``benchmarks/run_all.py --quick`` runs every script as a subprocess (real processes, real clock),
checks each one's rows and writes the results and a README section into a temporary directory, so
the repository's ``results.json`` and ``README.md`` are never touched.  The figures themselves are
not asserted on (no timing thresholds): only their shape, and the counts that must be zero.
"""

from __future__ import annotations

import importlib.util
import itertools
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "benchmarks"


def _load(name: str):
    # by file path, under a private name; the scripts put their directory on sys.path to find
    # _common: take it off again, so no benchmark module shadows anything in other tests
    saved = list(sys.path)
    try:
        spec = importlib.util.spec_from_file_location(f"_corral_bench_{name}", BENCH / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        sys.path[:] = saved
    return module


_common = _load("_common")
run_all = _load("run_all")
peers = _load("peers")
ab = _load("ab")


def _scripts_on_disk() -> set[str]:
    return {p.stem for p in BENCH.glob("*.py") if not p.name.startswith("_")} - {"run_all", "peers", "ab"}

HANG_GUARD = 300  # seconds: a guard against a hung subprocess, not a timing threshold

EXPECTED_SCRIPTS = {"adapters", "control", "durable", "processes", "recorder", "scaling", "soak", "spawn", "store",
                    "streams", "ui"}
# cluster.py starts a local Ray (about 20 s): left to the cluster's own tests, kept out of this budget
SKIPPED_HERE = {"cluster"}


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    """One ``run_all.py --quick`` into a temporary directory, shared by the tests that read it."""
    tmp = tmp_path_factory.mktemp("bench")
    readme = tmp / "README.md"
    readme.write_text("# corral\n\n## Benchmarks\n\nold text\n\n## License\n\nMIT\n", encoding="utf-8")
    results = tmp / "results.json"
    proc = subprocess.run(
        [sys.executable, str(BENCH / "run_all.py"), "--quick", "--results", str(results),
         "--readme", str(readme), "--skip", ",".join(SKIPPED_HERE & _scripts_on_disk())],
        cwd=ROOT, capture_output=True, text=True, timeout=HANG_GUARD,
    )
    return proc, json.loads(results.read_text(encoding="utf-8")), readme.read_text(encoding="utf-8")


def test_run_all_runs_every_script(quick_run):
    proc, results, _ = quick_run
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert EXPECTED_SCRIPTS <= _scripts_on_disk()
    assert {p.stem for p in run_all.scripts()} == _scripts_on_disk()
    assert set(results["scripts"]) == _scripts_on_disk() - SKIPPED_HERE
    for name, script in results["scripts"].items():
        assert "error" not in script, (name, script.get("error"), script.get("stderr_tail"))
        _common.validate_rows(script["rows"])
        assert script["command"].startswith(f"python benchmarks/{name}.py --json --quick")
    assert results["quick"] is True
    for key in ("cpu_count", "python", "trio", "platform", "date"):
        assert results["machine"][key]
    # one table with every figure went to stdout
    for script in results["scripts"].values():
        for r in script["rows"]:
            assert r["figure"][:40] in proc.stdout


def test_every_figure_has_a_floor_or_is_a_count(quick_run):
    _, results, _ = quick_run
    for script in results["scripts"].values():
        for r in script["rows"]:
            if r["floor"] is None:
                assert r["ratio"] is None
            else:
                assert r["floor_name"], r["figure"]
            assert r["repeats"] is None or r["repeats"] >= 1


def test_counts_that_must_be_zero_are_zero(quick_run):
    _, results, _ = quick_run
    rows = {r["figure"]: r for s in results["scripts"].values() for r in s["rows"]}
    leftovers = [r for f, r in rows.items() if f.startswith("process: processes alive after")]
    recorded = [r for f, r in rows.items() if f.startswith("recorder: stats().recorded_bytes")]
    leftovers += [r for f, r in rows.items() if f == "soak: live child processes once every job ended"]
    idle = [r for r in rows.values() if r["unit"] == "wakeups/s"]
    # idle streams, paused jobs, idle adapters, an open control endpoint with paused jobs
    assert leftovers and recorded and len(idle) == 4
    assert any(r["figure"].startswith("control: scheduler wakeups/s") for r in idle)
    for r in leftovers + recorded + idle:
        assert r["max"] == 0, r


def test_readme_section_is_regenerated_between_markers(quick_run):
    _, results, readme = quick_run
    assert readme.count(_common.README_START) == 1 and readme.count(_common.README_END) == 1
    head, rest = readme.split(_common.README_START)
    section, tail = rest.split(_common.README_END)
    assert head.endswith("## Benchmarks\n\n")
    assert "old text" in tail and tail.rstrip().endswith("MIT")
    assert "| figure | value | floor | ratio | min..max |" in section
    assert _common.machine_line(results["machine"]) in section


def test_update_readme_replaces_only_the_marked_text(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n\n## Benchmarks\n\n{_common.README_START}\nold\n{_common.README_END}\n\nafter\n",
                      encoding="utf-8")
    assert _common.update_readme(readme, "new figures") == "updated"
    text = readme.read_text(encoding="utf-8")
    assert "old" not in text and "new figures" in text
    assert text.startswith("intro\n\n## Benchmarks\n\n") and text.endswith("\n\nafter\n")
    assert _common.update_readme(readme, "new figures") == "updated"
    assert readme.read_text(encoding="utf-8") == text  # idempotent


def test_update_readme_without_heading_or_markers_writes_nothing(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text("# corral\n\nno benchmark section yet\n", encoding="utf-8")
    assert _common.update_readme(readme, "figures") == "missing"
    assert readme.read_text(encoding="utf-8") == "# corral\n\nno benchmark section yet\n"
    assert _common.update_readme(tmp_path / "absent.md", "figures") == "no-readme"


def test_a_missing_optional_extra_is_a_skip_not_a_failure():
    tb = "Traceback (most recent call last):\nModuleNotFoundError: No module named 'ray'\n"
    assert "ray" in run_all.skipped_because(1, tb)
    assert run_all.skipped_because(_common.SKIP_EXIT, "skipped: no GPU\n") == "no GPU"
    ours = "ModuleNotFoundError: No module named 'runtime.cluster'\n"
    assert run_all.skipped_because(1, ours) is None  # corral's own module missing is a failure
    assert run_all.skipped_because(1, "ValueError: boom\n") is None
    assert run_all.skipped_because(0, tb) is None


def test_ab_compares_two_checkouts_workload_by_workload(tmp_path):
    # this checkout against itself (any checkout with benchmarks/durable.py will do): one row per
    # workload, B's CPU per job with A's as its floor, and each side's transactions per 1000 jobs
    proc = subprocess.run([sys.executable, str(BENCH / "ab.py"), str(ROOT), "--repeats", "1", "--rounds", "1",
                           "--json"], cwd=tmp_path, capture_output=True, text=True, timeout=HANG_GUARD)
    assert proc.returncode == 0, proc.stderr[-4000:]
    rows = _common.validate_rows(json.loads(proc.stdout.splitlines()[-1]))
    assert [r["figure"].split(" (")[0] for r in rows] == [f"ab: {w}" for w in ab.WORKLOADS]
    assert all(r["unit"] == "µs/job" and r["floor"] > 0 and r["ratio"] > 0 for r in rows)
    off_in_memory = rows[ab.WORKLOADS.index("off, in memory, 1000 concurrent")]
    assert "tx/1000 jobs: A 0, B 0" in off_in_memory["figure"]  # the in-memory store has no transactions
    proc = subprocess.run([sys.executable, str(BENCH / "ab.py"), str(tmp_path)], capture_output=True, text=True,
                          timeout=HANG_GUARD)
    assert proc.returncode != 0 and "not a corral checkout" in proc.stderr


def test_validate_rows_names_what_is_wrong():
    good = _common.row("x", (1.0, 0.5, 2.0), "ms", (0.5, 0.5, 0.5), "floor")
    assert good["ratio"] == 2.0
    assert _common.row("t", (50.0, 40.0, 60.0), "ops/s", (100.0, 90.0, 110.0), "f",
                       better="higher")["ratio"] == 2.0
    assert _common.validate_rows([good]) == [good]
    for bad, message in (([], "non-empty"), ([{"figure": "y"}], "missing"),
                         ([{**good, "value": "1"}], "value must be a number"),
                         ([{**good, "min": 3.0}], "min > max")):
        with pytest.raises(ValueError, match=message):
            _common.validate_rows(bad)


@pytest.mark.parametrize("worker", ["corral", "corral-build", "corral-durable"])
def test_peers_corral_workers_run_without_any_peer_installed(worker, tmp_path):
    proc = subprocess.run(
        [sys.executable, str(BENCH / "peers.py"), "--worker", worker, "--steps", "3", "--runs", "10",
         "--warmup", "1", "--out", "-"],
        cwd=tmp_path, capture_output=True, text=True, timeout=HANG_GUARD,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    out = json.loads(proc.stdout.splitlines()[-1])
    assert (out["worker"], out["steps"]) == (worker, 3)
    assert len(out["us"]) == 5 and all(us > 0 for us in out["us"])
    assert len(out["rss_per_1000"]) == 5
    # the last run completed every step; the durable one wrote a fresh store in its own directory
    assert out["check"]["state"] == "completed" and out["check"]["outputs"] == 3
    store = tmp_path / "corral.sqlite"
    if worker == "corral-durable":
        assert store.stat().st_size == out["check"]["store_bytes"] > 0
    else:
        assert not store.exists()



def test_peer_venv_is_reinstalled_only_when_missing_or_its_pins_changed(tmp_path):
    pins = ("langgraph==1.2.24", "langgraph-checkpoint-sqlite==3.1.2")
    assert peers.needs_install("langgraph", pins, tmp_path)  # no venv at all
    (tmp_path / "langgraph" / "bin").mkdir(parents=True)
    (tmp_path / "langgraph" / "bin" / "python").write_text("", encoding="utf-8")
    assert peers.needs_install("langgraph", pins, tmp_path)  # a venv, never installed into
    (tmp_path / "langgraph" / "pins.txt").write_text("\n".join(pins) + "\n", encoding="utf-8")
    assert not peers.needs_install("langgraph", pins, tmp_path)
    assert peers.needs_install("langgraph", ("langgraph==1.2.25", pins[1]), tmp_path)


def test_peer_rows_take_corral_in_the_same_mode_as_their_floor():
    def result(us, rss):
        return {"us": [us] * 5, "rss_per_1000": [rss] * 5, "versions": {}}

    speeds = {"corral": 100.0, "corral-build": 200.0, "corral-durable": 1000.0, "crewai": 5000.0, "crewai-quiet": 2000.0,
              "langgraph": 400.0, "langgraph-build": 800.0, "langgraph-sqlite": 3000.0, "dbos": 20000.0}
    raw = {"workers": {f"{w}/{n}": result(us * n, 10.0 * n) for w, us in speeds.items() for n in peers.SHAPES},
           "import_s": {"corral": [0.2] * 5, "crewai": [2.0] * 5, "langgraph": [0.8] * 5, "dbos": [0.6] * 5}}
    rows = {r["figure"]: r for r in peers.build_rows(raw, 5, 5)}
    _common.validate_rows(list(rows.values()))
    durable = {"LangGraph + SqliteSaver": 3.0, "DBOS on SQLite": 20.0}
    in_memory = {"crewAI defaults": 50.0, "crewAI suppress_flow_events": 20.0,
                 "LangGraph in memory, compiled once": 4.0, "LangGraph in memory, StateGraph built": 4.0}
    # each peer's floor is corral doing what the peer does: a durable run, a flow built per run or once
    floors = {**dict.fromkeys(durable, "corral-durable"), "LangGraph in memory, StateGraph built": "corral-build"}
    for n in peers.SHAPES:
        speed = {f: r for f, r in rows.items() if f.startswith(f"peers: µs per run, {n}-step")}
        assert len(speed) == 6
        for label, expected in {**durable, **in_memory}.items():
            (r,) = [r for f, r in speed.items() if label in f]
            assert r["ratio"] == pytest.approx(expected), r
            assert r["floor_name"] == peers.FLOORS[floors.get(label, "corral")]
        rss = [r for f, r in rows.items() if f.startswith(f"peers: RSS growth per 1000 runs, {n}-step")]
        assert len(rss) == 4 and all(r["ratio"] == pytest.approx(1.0) for r in rss)
    imports = [r for f, r in rows.items() if f.startswith("peers: import time")]
    assert sorted(r["ratio"] for r in imports) == pytest.approx([3.0, 4.0, 10.0])


def test_peers_option_names_what_is_unknown(capsys):
    with pytest.raises(SystemExit):
        peers.parse_args(["--peers", "crewai,prefect"])
    assert "--peers: unknown ['prefect']" in capsys.readouterr().err


def test_peer_windows_interleave_one_system_at_a_time(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(BENCH))
    pythons = {"corral": sys.executable, "corral-durable": sys.executable}
    got = peers.run_shape(pythons, 2, 10, 1, tmp_path)
    assert set(got) == {"corral/2", "corral-durable/2"}
    windows = [(start, end, name) for name, result in got.items() for start, end in result["windows_at"]]
    windows.sort()
    # no two windows overlap, and window k of every system comes before window k + 1 of any
    assert all(a[1] <= b[0] for a, b in itertools.pairwise(windows))
    assert [name for _, _, name in windows] == ["corral/2", "corral-durable/2"] * 5
    # each worker ran in its own fresh directory: only the durable one has a store there
    assert (tmp_path / "corral-durable-2" / "corral.sqlite").exists()
    assert not (tmp_path / "corral-2" / "corral.sqlite").exists()
