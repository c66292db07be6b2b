"""A durable job whose runtime died (SIGKILL, mid agent step, paused, inside a loop, after any
recorded event) is resumed by the next runtime on the store: completed steps are not run again,
the seq goes on without a gap, and it ends as an uninterrupted run would have."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import attrs
import pytest
import trio
import trio.testing
from store_support import TESTS, until_restarted

from actors.process import find_marked
from runtime import ExitRule, Flow, JobPaused, JobStarted, JobState, Step, StepStarted, open_runtime
from runtime.store import SqliteStore
from runtime.testing import assert_no_leaks

PY = sys.executable
BOUND = 60
CRASHING_RUNTIME = textwrap.dedent("""
    import json, sys, structlog, trio
    from runtime import AgentSpec, ExitRule, Flow, JobState, Step, open_runtime
    from runtime.testing import marked_processes
    import resume_steps

    structlog.configure(logger_factory=structlog.PrintLoggerFactory(sys.stderr))
    db, counter, flag, mode = sys.argv[1:5]

    async def main():
        async with open_runtime(store=db) as rt:
            if mode == "agent":
                flow = Flow("crashy", [
                    Step("one", run=resume_steps.count, inputs={"counter": "$job.counter"}),
                    Step("two", agent=AgentSpec([sys.executable, sys.argv[5], flag, "--wrap", "1"]),
                         prompt="say {one.runs}"),
                    Step("three", run=resume_steps.finish, inputs={"text": "$two.text"}),
                ])
            elif mode == "loop":
                flow = Flow("loopy", [
                    Step("one", run=resume_steps.count_or_hold, inputs={"counter": "$job.counter", "flag": "$job.flag"}),
                    Step("check", run=resume_steps.noop, after=["one"],
                         exits=[ExitRule("again", when="True", action="loop", target="one", max_iterations=2)]),
                ])
            else:
                flow = Flow("pausy", [
                    Step("one", run=resume_steps.count, inputs={"counter": "$job.counter"},
                         exits=[ExitRule("ask", when="True", action="escalate")]),
                    Step("two", run=resume_steps.approve, inputs={"who": "$resume.who"}, after=["one"]),
                ])
            job = await rt.spawn(flow, {"counter": counter, "flag": flag}, record="durable")
            async for event in job.events():
                if (mode == "agent" and type(event).__name__ == "StepStream") or \\
                        (mode == "pause" and type(event).__name__ == "JobPaused") or \\
                        (mode == "loop" and type(event).__name__ == "StepStarted" and event.iteration == 1):
                    break
            # a durable replay reads the store, so the recorder first writes what it holds
            replay = job.events(replay=True)
            await replay.__anext__()
            await replay.aclose()
            print(json.dumps({"job": job.id, "runtime": rt.id,
                              "pids": [p.pid for p in marked_processes(rt)]}), flush=True)
            await trio.sleep_forever()

    trio.run(main)
""")


async def _run_and_kill(args) -> dict:
    env = {**os.environ, "PYTHONPATH": f"{TESTS}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    proc = await trio.lowlevel.open_process([PY, "-c", CRASHING_RUNTIME, *map(str, args)],
                                            stdout=subprocess.PIPE, env=env)
    try:
        with trio.fail_after(BOUND):
            line = b""
            while not line.endswith(b"\n"):
                chunk = await proc.stdout.receive_some(4096)
                assert chunk, "the child runtime died early"
                line += chunk
        proc.send_signal(signal.SIGKILL)
        await proc.wait()
        return json.loads(line)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        await proc.stdout.aclose()


async def test_crash_mid_agent_step_then_resume(tmp_path):
    db, counter, flag = tmp_path / "c.db", tmp_path / "counter", tmp_path / "slow.flag"
    flag.write_text("slow")
    info = await _run_and_kill([db, counter, flag, "agent", TESTS / "resume_agent.py"])
    assert len(info["pids"]) >= 3  # keeper and two generations, still running after the crash
    assert counter.read_text().splitlines() == [info["job"]]
    async with SqliteStore(db) as store:
        before = await store.read_events(info["job"])
        assert (await store.get_job(info["job"])).state == "running"
    flag.unlink()  # the re-run of step two completes
    async with open_runtime(store=db, resume=True) as rt:
        # the sweep killed the dead runtime's adapter tree before anything else ran
        assert find_marked(lambda m: m.runtime_id == info["runtime"]) == []
        job = rt.get(info["job"])
        assert job is not None
        with trio.fail_after(BOUND):
            result = await job.wait()
        assert result.state is JobState.COMPLETED, result
        assert counter.read_text().splitlines() == [info["job"]]  # step one did not run again
        assert result.outputs["one"] == {"runs": 1}
        assert result.outputs["three"]["text"] == "say 1"
        events = [e async for e in rt.events(info["job"])]
        seqs = [e.seq for e in events]
        assert seqs == list(range(len(seqs)))  # no gap, no duplicate across the crash
        resumed = [e for e in events if e.type == "job_started" and e.resumed]
        assert len(resumed) == 1 and resumed[0].seq == before[-1].seq + 1
        started = [e.step for e in events if e.type == "step_started" and e.seq > before[-1].seq]
        assert started == ["two", "three"]
        assert_no_leaks(rt)
    for pid in info["pids"]:
        assert not _alive(pid)


def _alive(pid: int) -> bool:
    import psutil

    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


async def test_paused_durable_job_survives_a_restart(tmp_path):
    db, counter = tmp_path / "c.db", tmp_path / "counter"
    info = await _run_and_kill([db, counter, "-", "pause"])
    async with open_runtime(store=db, resume=True) as rt:
        job = rt.get(info["job"])
        await until_restarted(job)
        assert job.state is JobState.PAUSED
        await job.resume({"who": "carol"})
        with trio.fail_after(BOUND):
            result = await job.wait()
        assert result.state is JobState.COMPLETED
        assert result.outputs["two"] == {"approved_by": "carol"}
        assert len(counter.read_text().splitlines()) == 1


async def test_a_crash_inside_a_loop_resumes_the_loop_where_it_was(tmp_path):
    # one -> check, and check loops back to one at most twice.  The runtime dies while "one" runs
    # its second iteration: the loop had reset one and check, so both run again after the restart
    # (their iteration-0 checkpoints are stale), and the loop's bound counts the pass made before it
    db, counter, flag = tmp_path / "c.db", tmp_path / "counter", tmp_path / "hold.flag"
    flag.write_text("hold")
    info = await _run_and_kill([db, counter, flag, "loop"])
    assert len(counter.read_text().splitlines()) == 2  # iteration 0, and iteration 1 holding
    flag.unlink()
    async with open_runtime(store=db, resume=True) as rt:
        job = rt.get(info["job"])
        assert job is not None
        with trio.fail_after(BOUND):
            result = await job.wait()
        assert (result.state, result.reason) == (JobState.FAILED, "max_iterations:again"), result
        # after the restart: one at iteration 1 again, then the loop's second pass (iteration 2);
        # the third match exceeds the bound -- a fresh count would have looped twice more
        assert len(counter.read_text().splitlines()) == 4
        events = [e async for e in rt.events(info["job"])]
        after = max(e.seq for e in events if e.type == "job_started" and e.resumed)
        assert [(e.step, e.iteration) for e in events if e.type == "step_started" and e.seq > after] == [
            ("one", 1), ("check", 1), ("one", 2), ("check", 2)]
        assert_no_leaks(rt)


def crash_points_flow() -> Flow:
    import resume_steps

    # a -> b, which loops back to a twice, then either abandons (drop) or goes on to a gate that
    # pauses for a payload, then c, which reads it
    return Flow("crashy-loop", [
        Step("a", run=resume_steps.tag),
        Step("b", run=resume_steps.tag, after=["a"], inputs={"drop": "$job.drop"},
             exits=[ExitRule("again", when="iteration < 2", action="loop", target="a", max_iterations=2),
                    ExitRule("drop", when="inputs.drop", action="abandon")]),
        Step("gate", run=resume_steps.tag, after=["b"], exits=[ExitRule("ask", when="True", action="escalate")]),
        Step("c", run=resume_steps.tag, after=["gate"], inputs={"ok": "$resume.ok"}),
    ])


async def _drive(handle):
    """Wait for the job, resuming it with ``{"ok": True}`` whenever it pauses.

    A job pauses with a JobPaused, or -- resumed paused, as its dead runtime left it -- with its
    JobStarted.  The replay also holds the events from before the crash: a stale JobPaused finds
    the job not paused and is passed over."""
    with trio.fail_after(BOUND):
        async for event in handle.events(replay=True):
            if isinstance(event, JobPaused | JobStarted) and handle.state is JobState.PAUSED:
                await handle.resume({"ok": True})
        return await handle.wait()


@pytest.mark.parametrize("drop", [False, True], ids=["completes", "abandons"])
async def test_a_crash_after_any_recorded_event_resumes_to_the_same_end(tmp_path, drop):
    # Run the job once without a crash.  Then, for every k, rebuild the store a runtime that died
    # after writing the first k events would have left (the job RUNNING under a dead runtime, the
    # checkpoints of the steps completed so far) and resume it: it must end exactly like the
    # uninterrupted run -- a loop that was under way is taken up again (not skipped on stale
    # checkpoints), its bound counts the passes made before the crash, a pause or an abandon that
    # was recorded holds, and the seq goes on from k without a gap.
    from runtime.store import Checkpoint

    db = tmp_path / "whole.db"
    async with open_runtime(store=db) as rt:
        full = await _drive(await rt.spawn(crash_points_flow(), {"drop": drop}, record="durable"))
    async with SqliteStore(db) as store:
        rec = await store.get_job(full.job_id)
        rows = await store.read_events(full.job_id)
    assert rows[-1].type == "job_finished" and [r.seq for r in rows] == list(range(len(rows)))
    for k in range(1, len(rows) - 1):
        crashed = tmp_path / f"crash-{k}.db"
        async with SqliteStore(crashed) as store:
            await store.put_job(attrs.evolve(rec, state="running", reason=None, outputs={}, finished_at=None,
                                             runtime_id="dead-runtime", resume_payload=None))
            await store.append_events(rows[:k])
            for row in rows[:k]:
                if row.type == "step_completed":
                    p = row.payload
                    await store.put_checkpoint(Checkpoint(job_id=full.job_id, step=p["step"], outputs=p["outputs"],
                                                          iteration=p["iteration"], attempt=p["attempt"]))
        async with open_runtime(store=crashed, resume=True) as rt:
            result = await _drive(rt.get(full.job_id))
            after = [e async for e in rt.events(full.job_id)]
        assert (result.state, result.reason, result.outputs) == (full.state, full.reason, full.outputs), k
        assert [e.seq for e in after] == list(range(len(after))), k
        assert after[k].type == "job_started" and after[k].resumed, k


async def test_a_resumed_job_keeps_its_deadline_instead_of_a_fresh_timeout(tmp_path):
    import resume_steps  # importable steps: a resumed flow is rebuilt from its stored definition

    db, crashed = tmp_path / "s.db", tmp_path / "crashed.db"
    flow = Flow("slow", [Step("a", run=resume_steps.forever)], timeout=3600)
    async with open_runtime(store=db) as rt:
        job = await rt.spawn(flow, record="durable")
        async for event in job.events():
            if isinstance(event, StepStarted):
                break
        await job.cancel()
    async with SqliteStore(db) as store:
        rec = await store.get_job(job.id)
        rows = await store.read_events(job.id)
    assert rows[0].type == "job_started" and rows[0].payload["deadline"] > time.time() + 3000
    # the runtime died while the job ran, and its hour is over by the time a new runtime resumes
    k = next(i for i, row in enumerate(rows) if row.type == "step_started") + 1
    started = attrs.evolve(rows[0], payload={**rows[0].payload, "deadline": time.time() - 1})
    async with SqliteStore(crashed) as store:
        await store.put_job(attrs.evolve(rec, state="running", reason=None, finished_at=None,
                                         runtime_id="dead-runtime"))
        await store.append_events([started, *rows[1:k]])
    async with open_runtime(store=crashed, resume=True) as rt:
        with trio.fail_after(60):  # a fresh timeout would run the step for an hour
            handle = rt.get(job.id)  # None if it already ended while the runtime opened
            if handle is not None:
                await handle.wait()
        result = await rt.result(job.id)
        assert_no_leaks(rt)
    assert result.state is JobState.FAILED and result.reason == "timeout"
