"""Every example in examples/ runs: the YAML flows through ``corral run``, the embedding and
worker examples as programs (the worker through a deploy: SIGTERM, then a new worker).  Real subprocesses, real SQLite files, bounded by subprocess timeouts."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import trio
from cli_support import Lines

from actors.process import find_marked
from runtime.cli.yaml import load_flow, load_flow_text
from runtime.store import SqliteStore

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples"
BOUND = 60


def run(*args: object, timeout: float = BOUND) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, *map(str, args)], cwd=REPO, capture_output=True, text=True,
                          timeout=timeout, check=False)


def events_of(result: subprocess.CompletedProcess[str]) -> list[dict]:
    return [json.loads(line) for line in result.stdout.splitlines()]


# example -> (corral run arguments, a check on its events)
CASES = {
    "triage.yaml": (["-i", "ticket=7", "-i", "title=app crashes on start", "-i", "flaky=true"],
                    lambda evs: {("fix", "retry")} <= {(e["step"], e["action"]) for e in evs if e["type"] == "step_failed"}
                    and any(e["type"] == "exit_resolved" and e["action"] == "loop" for e in evs)),
    "wordcount.yaml": (["-i", "text=the quick brown fox jumps over the lazy dog"],
                       lambda evs: any(e["type"] == "step_completed" and e["outputs"] == {"LONGEST": "QUICK"}
                                       for e in evs)),
    "agents.yaml": (["-i", "ticket=42", "-i", "title=search is slow"],
                    lambda evs: any(e["type"] == "step_stream" and e["step"] == "fix" for e in evs)),
    "approval.yaml": (["-i", "version=1.2", "--resume-payload", '{"approved": true}'],
                      lambda evs: [e["type"] for e in evs if e["type"] in ("job_paused", "job_resumed")]
                      == ["job_paused", "job_resumed"]
                      and any(e["type"] == "step_completed" and e["outputs"].get("published") for e in evs)),
}


def test_every_yaml_example_is_run_here():
    assert sorted(p.name for p in EXAMPLES.glob("*.yaml")) == sorted(CASES)


@pytest.mark.parametrize("name", sorted(CASES))
def test_yaml_example_completes(tmp_path, name):
    args, check = CASES[name]
    assert load_flow(EXAMPLES / name).name  # valid on its own
    result = run("-m", "runtime", "run", f"examples/{name}", *args, "--json", "--store", tmp_path / "s.db")
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    evs = events_of(result)
    assert evs[-1]["type"] == "job_finished" and evs[-1]["state"] == "completed"
    assert check(evs), evs
    assert find_marked(lambda m: m.job_id == evs[0]["job_id"]) == []


def test_agent_example_abandoned_by_its_exit_rule_exits_nonzero(tmp_path):
    result = run("-m", "runtime", "run", "examples/agents.yaml", "-i", "ticket=1", "-i", "title=wontfix: typo",
                 "--json", "--store", tmp_path / "s.db")
    assert result.returncode == 1
    evs = events_of(result)
    assert evs[-1]["state"] == "abandoned" and evs[-1]["reason"] == "wontfix"
    assert find_marked(lambda m: m.job_id == evs[0]["job_id"]) == []


def test_embedding_example_runs(tmp_path):
    store = tmp_path / "embed.db"
    result = run("-m", "examples.embed", store)
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "completed: 'Write a patch for #7 search is slow'" in out
    assert "abandoned: reason 'wontfix'" in out
    assert re.search(r"replayed [1-9]\d* events", out)
    assert result.stderr == ""  # the example configures logging: warnings only
    assert store.exists()


def test_readme_yaml_flow_loads():
    readme = (REPO / "README.md").read_text()
    block = re.search(r"```yaml\n(.*?)```", readme, re.DOTALL).group(1)
    flow = load_flow_text(block, "README.md")
    assert [s.name for s in flow.steps] == ["triage", "fix", "review"]
    assert flow.step("review").exits[0].action == "loop"


async def _worker(store: Path, *args: str):
    """``python -m examples.worker STORE ARGS``; (process, its lines, the job ids it holds)."""
    proc = await trio.lowlevel.open_process([sys.executable, "-m", "examples.worker", str(store), *args],
                                            cwd=REPO, stdout=subprocess.PIPE)
    lines, ids = Lines(proc.stdout), []
    while (line := await lines.next()) != "ready":
        assert line is not None, "the worker ended before it was ready"
        ids.append(line.split()[1])
    return proc, lines, ids


async def _stored_state(store: Path, job_id: str, state: str) -> None:
    # the worker is another process: SQLite tells no one of its commits, so read until it shows
    async with SqliteStore(store) as st:
        while (rec := await st.get_job(job_id)) is None or rec.state != state:  # noqa: ASYNC110
            await trio.sleep(0.05)


async def test_the_worker_example_drains_on_sigterm_and_the_next_worker_carries_on(tmp_path):
    store = tmp_path / "worker.db"
    with trio.fail_after(BOUND):
        first, lines, (job_id,) = await _worker(store, "--spawn", "1")
        try:
            await _stored_state(store, job_id, "paused")
            first.send_signal(signal.SIGTERM)  # a deploy: the paused job is let go, not cancelled
            rest = [line async for line in _each(lines)]
            assert await first.wait() == 143
        finally:
            first.kill()
            await first.wait()
        assert rest == [f"job {job_id} interrupted drained"]
        async with SqliteStore(store) as st:
            rec = await st.get_job(job_id)
        assert (rec.state, rec.runtime_id) == ("paused", None)

        second, lines, held = await _worker(store, "--spawn", "0")  # takes the paused job over
        try:
            assert held == [job_id]
            approve = await trio.run_process(
                [sys.executable, "-m", "runtime", "resume", job_id, "--payload", '{"approved": true}',
                 "--store", str(store)], cwd=REPO, capture_stdout=True, capture_stderr=True, check=False)
            assert approve.returncode == 0, approve.stderr
            rest = [line async for line in _each(lines)]
            assert await second.wait() == 0
        finally:
            second.kill()
            await second.wait()
    assert rest == [f"job {job_id} completed"]
    assert find_marked(lambda m: m.job_id == job_id) == []


async def _each(lines):
    while (line := await lines.next()) is not None:
        yield line
