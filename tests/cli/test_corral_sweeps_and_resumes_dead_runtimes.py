"""``corral sweep`` kills what dead runtimes left and marks their jobs interrupted; ``corral resume``
finishes them without re-running completed steps."""

from __future__ import annotations

import json
import os
import re
import subprocess

import psutil
import trio
from cli_support import BOUND, CORRAL, PY, REPO, Lines, corral, dead_pid, json_lines, write_flow

from actors.process import MARKER_ENV, Marker, find_marked
from runtime.store import SqliteStore


async def test_resume_finishes_a_dead_runtimes_job_without_rerunning_completed_steps(tmp_path):
    runs, gate = tmp_path / "runs.txt", tmp_path / "go"
    first, second = tmp_path / "first.py", tmp_path / "second.py"
    first.write_text(f"open({str(runs)!r}, 'a').write('ran\\n')\nprint('{{\"n\": 1}}')\n")
    # first run: park until the runtime is killed; the resumed run (gate present) finishes at once
    second.write_text(f"import os, signal\nif not os.path.exists({str(gate)!r}):\n    signal.pause()\n"
                      "print('{\"n\": 2}')\n")
    flow = write_flow(tmp_path, f"""\
        name: two-steps
        steps:
          first: {{command: [python, {str(first)!r}]}}
          second: {{command: [python, {str(second)!r}], after: [first]}}
        """)
    store = tmp_path / "s.db"
    with trio.fail_after(BOUND):
        proc = await trio.lowlevel.open_process([*CORRAL, "run", str(flow), "--json", "--store", str(store)],
                                                cwd=REPO, stdout=subprocess.PIPE)
        try:
            lines = Lines(proc.stdout)
            while (line := await lines.next()) is not None:
                event = json.loads(line)
                if event["type"] == "step_started" and event["step"] == "second":
                    break
            job_id = event["job_id"]
            # checkpoints are written behind the events: crash once first's is committed (a crash
            # before that would run first again: at least once).  Polled: the runtime is another
            # process, about to be SIGKILLed, and SQLite tells no other process of a commit
            async with SqliteStore(store) as st:
                while "first" not in await st.get_checkpoints(job_id):  # noqa: ASYNC110
                    await trio.sleep(0.05)
            proc.kill()  # the runtime dies without any cleanup
            await proc.wait()
        finally:
            proc.kill()
            await proc.wait()
        assert json.loads(corral("show", job_id, "--json", "--store", store).stdout)["state"] == "running"
        # the sweep finds the runtime dead: its job reads interrupted, until it is resumed
        assert corral("sweep", "--grace", "0.5", "--store", store).returncode == 0
        swept = json.loads(corral("show", job_id, "--json", "--store", store).stdout)
        assert swept["state"] == "interrupted" and swept["updated_at"] > swept["created_at"]
        assert "interrupted" in corral("jobs", "--store", store).stdout
        gate.touch()
        resumed = await trio.run_process([*CORRAL, "resume", "--json", "--store", str(store)], cwd=REPO,
                                         capture_stdout=True, capture_stderr=True, check=False)
    assert resumed.returncode == 0, resumed.stderr.decode()
    events = json_lines(resumed.stdout.decode())  # the recorded log, then the resumed run live
    assert [e["seq"] for e in events] == list(range(len(events)))
    restart = next(i for i, e in enumerate(events) if e["type"] == "job_started" and e["resumed"])
    assert [e["step"] for e in events[:restart] if e["type"] == "step_completed"] == ["first"]
    assert [e["step"] for e in events[restart:] if e["type"] == "step_started"] == ["second"]
    assert events[-1]["type"] == "job_finished" and events[-1]["state"] == "completed"
    assert runs.read_text() == "ran\n"  # the completed step was not run again
    record = json.loads(corral("show", job_id, "--json", "--store", store).stdout)
    assert record["state"] == "completed" and record["outputs"]["second"] == {"n": 2}
    assert find_marked(lambda m: m.job_id == job_id) == []
    nothing = corral("resume", "--store", store)
    assert nothing.returncode == 0 and "nothing to resume" in nothing.stderr


def test_sweep_kills_processes_of_dead_runtimes(tmp_path):
    dead = subprocess.Popen(["sleep", "30"])
    started = psutil.Process(dead.pid).create_time()
    dead.kill()
    dead.wait()
    marker = Marker(runtime_id="0" * 32, job_id="orphaned", runtime_pid=dead.pid, runtime_started=started)
    # an orphan: its parent (sh) exits at once, as a dead runtime's process would be left
    launcher = subprocess.run(["sh", "-c", f"'{PY}' -c 'import signal; signal.pause()' >/dev/null 2>&1 & echo $!"],
                              env={**os.environ, MARKER_ENV: marker.env_value()}, start_new_session=True,
                              capture_output=True, text=True, timeout=BOUND, check=True)
    orphan = psutil.Process(int(launcher.stdout))
    try:
        assert find_marked(lambda m: m.runtime_id == marker.runtime_id) == [orphan]
        result = corral("sweep", "--grace", "0.5", "--store", tmp_path / "none.db")
        assert result.returncode == 0, result.stderr
        assert re.search(r"killed [1-9]\d* processes of dead runtimes", result.stdout)
        orphan.wait(timeout=10)
        assert find_marked(lambda m: m.runtime_id == marker.runtime_id) == []
    finally:
        try:
            orphan.kill()
        except psutil.NoSuchProcess:
            pass


async def test_jobs_of_a_dead_runtime_read_interrupted_after_the_sweep(tmp_path):
    import socket

    from runtime.store import EventRow, JobRecord, Lease, resumable, sweep_dead

    pid, started = dead_pid()
    store = tmp_path / "s.db"
    dead_rt, live_rt = "d" * 32, "e" * 32

    def rec(job_id: str, state: str, runtime_id: str = dead_rt) -> JobRecord:
        return JobRecord(job_id=job_id, flow_name="f", flow={"name": "f", "steps": []}, inputs={}, state=state,
                         record="durable", runtime_id=runtime_id, created_at=1000.0, updated_at=1000.0)

    async with SqliteStore(store) as st:
        await st.put_lease(Lease(runtime_id=dead_rt, pid=pid, started=started, host=socket.gethostname(),
                                 created_at=1000.0))
        await st.put_lease(Lease(runtime_id=live_rt, pid=os.getpid(), started=psutil.Process().create_time(),
                                 host=socket.gethostname(), created_at=1000.0))
        for job_id, state in (("running1", "running"), ("pending1", "pending"), ("paused1", "paused"),
                              ("done1", "completed")):
            await st.put_job(rec(job_id, state))
        await st.put_job(rec("alive1", "running", live_rt))
        await st.append_events([EventRow("running1", 0, "job_started", 1000.5, {}),
                                EventRow("running1", 1, "step_started", 1042.25, {})])
    before = corral("jobs", "--json", "--store", store)
    assert {r["job_id"]: r["state"] for r in json_lines(before.stdout)}["running1"] == "running"

    swept = corral("sweep", "--grace", "0.1", "--store", store)
    assert swept.returncode == 0, swept.stderr
    states = {r["job_id"]: r["state"] for r in json_lines(corral("jobs", "--json", "--store", store).stdout)}
    assert states == {"running1": "interrupted", "pending1": "interrupted", "paused1": "paused",
                      "done1": "completed", "alive1": "running"}
    shown = corral("show", "running1", "--store", store).stdout
    assert re.search(r"^state\s+interrupted$", shown, re.MULTILINE), shown
    assert re.search(r"^duration\s+42\.25s$", shown, re.MULTILINE), shown  # start -> its last event
    listing = corral("jobs", "--state", "interrupted", "--store", store).stdout
    assert "running1" in listing and "pending1" in listing and "paused1" not in listing
    async with SqliteStore(store) as st:
        assert await sweep_dead(st, 0.1) == set()  # nothing left to sweep
        found = {r.job_id for r in await resumable(st, {live_rt})}
    assert found == {"running1", "pending1", "paused1"}
