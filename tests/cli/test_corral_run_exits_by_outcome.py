"""``corral run``: the exit code says how the job ended (0, 1, 2 for a refused flow or input, 130 on
SIGINT, 143 on SIGTERM), events go to stdout and logs to stderr, and an interrupted run leaves no
process; SIGTERM drains a durable job for ``corral resume``."""

from __future__ import annotations

import json
import os
import signal
import subprocess

import psutil
import trio
from cli_support import BOUND, CORRAL, REPO, Lines, corral, json_lines, write_flow

from actors.process import find_marked


def test_run_a_failing_flow_exits_nonzero_and_logs_only_to_stderr(tmp_path):
    flow = write_flow(tmp_path, """\
        name: broken
        steps:
          ok:
            command: [python, -c, "print('{\\"fine\\": true}')"]
          boom:
            command: [python, -c, "import sys; sys.stderr.write('kaput'); sys.exit(3)"]
            after: [ok]
        """)
    result = corral("-v", "run", flow, "--json", "--store", tmp_path / "s.db")
    assert result.returncode == 1, result.stderr
    events = json_lines(result.stdout)  # library log lines never reach stdout
    assert events[-1]["type"] == "job_finished" and events[-1]["state"] == "failed"
    failed = [e for e in events if e["type"] == "step_failed"]
    assert failed[0]["step"] == "boom" and "kaput" in failed[0]["error"]
    assert "step_failed" in result.stderr  # the library's warning, on stderr


def test_run_refuses_an_invalid_flow_and_runs_nothing(tmp_path):
    flow = write_flow(tmp_path, """\
        name: bad
        steps:
          a:
            command: [echo, hi]
            exits:
              - name: sneaky
                when: "__import__('os').system('touch pwned')"
                action: abandon
        """)
    store = tmp_path / "s.db"
    result = corral("run", flow, "--store", store, cwd=tmp_path)
    assert result.returncode == 2
    assert f"{flow}:7: steps.a.exits.sneaky.when: calls are not allowed" in result.stderr
    assert not store.exists() and not (tmp_path / "pwned").exists()
    bad_input = corral("run", flow, "-i", "no-equals-sign", "--store", store)
    assert bad_input.returncode == 2 and "key=value" in bad_input.stderr


async def test_sigint_mid_prompt_cancels_the_job_and_leaves_no_process(tmp_path):
    flow = write_flow(tmp_path, """\
        name: endless
        steps:
          work:
            agent: {command: [python, -m, actors.fake_agent, --wrap, "2", --slow, --grandchild]}
            prompt: "work until told to stop"
        """)
    store = tmp_path / "s.db"
    with trio.fail_after(BOUND):
        proc = await trio.lowlevel.open_process([*CORRAL, "run", str(flow), "--json", "--store", str(store)],
                                                cwd=REPO, stdout=subprocess.PIPE)
        try:
            lines = Lines(proc.stdout)
            job_id = None
            while (line := await lines.next()) is not None:
                event = json.loads(line)
                job_id = event["job_id"]
                if event["type"] == "step_stream":
                    break  # mid-prompt: the agent is streaming
            during = find_marked(lambda m: m.job_id == job_id)
            assert len(during) >= 5  # keeper, three generations, the agent's grandchild
            proc.send_signal(signal.SIGINT)
            rest = []
            while (line := await lines.next()) is not None:
                rest.append(json.loads(line))
            code = await proc.wait()
        finally:
            proc.kill()
            await proc.wait()
    assert code == 130
    assert rest[-1]["type"] == "job_finished" and rest[-1]["state"] == "cancelled"
    assert {e["type"] for e in rest} >= {"step_cancelled"}
    for p in during:
        assert not p.is_running() or p.status() == psutil.STATUS_ZOMBIE
    assert find_marked(lambda m: m.job_id == job_id) == []
    shown = corral("show", job_id[:10], "--json", "--store", store)
    record = json.loads(shown.stdout)
    assert record["state"] == "cancelled" and record["reason"] == "interrupted (SIGINT)"
    assert record["steps"]["work"]["state"] == "cancelled"


def test_a_failing_python_step_shows_its_traceback_with_v(tmp_path):
    (tmp_path / "failing_steps.py").write_text(
        "def helper():\n    raise KeyError('missing thing')\n\n\nasync def boom(ctx, inputs):\n    helper()\n")
    flow = write_flow(tmp_path, "name: f\nsteps:\n  a: {run: 'failing_steps:boom'}\n")
    quiet = corral("run", flow, "--store", tmp_path / "s.db", cwd=tmp_path)
    assert quiet.returncode == 1 and "KeyError" in quiet.stdout and "Traceback" not in quiet.stderr
    verbose = corral("-v", "run", flow, "--store", tmp_path / "s.db", cwd=tmp_path)
    assert verbose.returncode == 1
    assert "Traceback" in verbose.stderr, verbose.stderr
    assert f'{tmp_path / "failing_steps.py"}", line 2, in helper' in verbose.stderr, verbose.stderr


def test_run_input_errors_are_clear(tmp_path):
    store = tmp_path / "s.db"
    for args, fragment in ((["-i", "no-equals"], "'no-equals' is not key=value"),
                           (["-i", "=value"], "'=value' is not key=value"),
                           (["--resume-payload", "{nope"], "not JSON")):
        result = corral("run", "examples/wordcount.yaml", *args, "--store", store)
        assert result.returncode == 2 and fragment in result.stderr, result.stderr
        assert "Traceback" not in result.stderr
    assert not store.exists()


def _held_command(tmp_path):
    """A command whose first run tells the test its pid (through a FIFO) and holds; its second
    run prints ``{"second": true}`` at once.  (command, FIFO)"""
    flag, fifo = tmp_path / "ran", tmp_path / "pid.fifo"
    os.mkfifo(fifo)
    hold = (f"import os, signal, sys, pathlib; p = pathlib.Path({str(flag)!r})\n"
            "if p.exists(): print('{\"second\": true}'); sys.exit(0)\n"
            f"p.touch(); pathlib.Path({str(fifo)!r}).write_text(str(os.getpid())); signal.pause()\n")
    return f"[python, -c, {json.dumps(hold)}]", fifo


async def _sigterm_mid_step(flow, fifo, store):
    """``corral run`` ``flow`` durably, SIGTERM it while the held step runs; (exit code, events,
    the held process)."""
    with trio.fail_after(BOUND):
        proc = await trio.lowlevel.open_process(
            [*CORRAL, "run", str(flow), "--json", "--store", str(store), "--grace", "0.2"],
            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            pid = int(await trio.to_thread.run_sync(fifo.read_text, abandon_on_cancel=True))
            held = psutil.Process(pid)
            proc.send_signal(signal.SIGTERM)
            events = []
            lines = Lines(proc.stdout)
            while (line := await lines.next()) is not None:
                events.append(json.loads(line))
            return await proc.wait(), events, held
        finally:
            proc.kill()
            await proc.wait()


async def test_sigterm_drains_a_durable_job_for_corral_resume_to_finish(tmp_path):
    # a deploy: SIGTERM lets the job go INTERRUPTED (not CANCELLED), its first step's checkpoint
    # kept; `corral resume` runs only what was left
    command, fifo = _held_command(tmp_path)
    flow = write_flow(tmp_path, f"""\
        name: deploy
        steps:
          first:
            command: [python, -c, "print('{{\\"n\\": 1}}')"]
          held:
            after: [first]
            command: {command}
        """)
    store = tmp_path / "s.db"
    code, events, held = await _sigterm_mid_step(flow, fifo, store)
    assert code == 143
    job_id = events[-1]["job_id"]
    assert events[-1]["type"] == "job_finished"
    assert (events[-1]["state"], events[-1]["reason"]) == ("interrupted", "drained")
    assert not held.is_running() or held.status() == psutil.STATUS_ZOMBIE
    assert find_marked(lambda m: m.job_id == job_id) == []
    shown = json.loads(corral("show", job_id[:10], "--json", "--store", store).stdout)
    assert shown["state"] == "interrupted"

    resumed = corral("resume", "--store", store, "--json")
    assert resumed.returncode == 0, resumed.stderr
    again = [e for e in json_lines(resumed.stdout) if e["seq"] >= len(events)]
    assert [e["step"] for e in again if e["type"] == "step_started"] == ["held"]  # first is not rerun
    assert again[-1]["type"] == "job_finished" and again[-1]["state"] == "completed"


async def test_corral_resume_leaves_a_job_that_pauses_paused_and_returns(tmp_path):
    command, fifo = _held_command(tmp_path)
    flow = write_flow(tmp_path, f"""\
        name: ask-after
        steps:
          held:
            command: {command}
            exits:
              - {{name: ask, when: "True", action: escalate}}
          after:
            after: [held]
            command: [python, -c, "import sys, json; print(json.dumps(json.load(sys.stdin)))"]
            inputs: {{answer: $resume.answer}}
        """)
    store = tmp_path / "s.db"
    code, events, _ = await _sigterm_mid_step(flow, fifo, store)
    assert code == 143
    job_id = events[-1]["job_id"]

    resumed = corral("resume", "--store", store, "--json")  # held runs again and pauses: let go
    assert resumed.returncode == 0, resumed.stderr
    assert f"corral resume {job_id} --payload JSON" in resumed.stderr
    shown = json.loads(corral("show", job_id[:10], "--json", "--store", store).stdout)
    assert shown["state"] == "paused"
    assert find_marked(lambda m: m.job_id == job_id) == []

    done = corral("resume", job_id, "--payload", '{"answer": 42}', "--store", store, "--json")
    assert done.returncode == 0, done.stderr
    last = json_lines(done.stdout)[-1]
    assert last["type"] == "job_finished" and last["state"] == "completed"
    shown = json.loads(corral("show", job_id[:10], "--json", "--store", store).stdout)
    assert shown["outputs"]["after"] == {"answer": 42}
