"""Recording is scoped to the job and off unless asked; the store survives crashes; resume works."""

from __future__ import annotations

import gc
import json
import os
import signal
import subprocess
import sys
import textwrap
import tracemalloc
from pathlib import Path

import attrs
import pytest
import trio
import trio.testing
from hypothesis import given, settings
from hypothesis import strategies as st

from actors.process import find_marked
from runtime import ExitRule, Flow, JobFinished, JobState, Step, open_runtime
from runtime.store import MemoryStore, SqliteStore, StoreCorrupt, StoreSchemaTooNew
from runtime.testing import assert_no_leaks

HERE = Path(__file__).resolve().parent
PY = sys.executable
BOUND = 60


async def noop(ctx, inputs):
    return {"n": 1}


def small_flow(i: int = 0) -> Flow:
    # "build flow": a fresh flow object every iteration, as the leaking framework's users did
    return Flow(f"loop{i % 3}", [Step("a", run=noop), Step("b", run=noop, after=["a"])])


# -- the original leak, replayed ---------------------------------------------------------------


async def test_build_spawn_wait_discard_with_recording_off_stays_flat(autojump_clock):
    async with open_runtime(store=MemoryStore(max_finished_jobs=100), max_results=100) as rt:
        tracemalloc.start()
        try:
            for i in range(10_000):
                job = await rt.spawn(small_flow(i))  # record="off" is the default
                stats = rt.stats()
                assert stats.recorders == 0 and stats.recorded_bytes == 0
                assert job._job.recording.recorder is None and job._job.hub.sink is None  # nothing allocated per event
                await job.wait()
                if i == 999:
                    gc.collect()
                    at_1k = tracemalloc.get_traced_memory()[0]
            gc.collect()
            at_10k = tracemalloc.get_traced_memory()[0]
        finally:
            tracemalloc.stop()
        assert at_10k - at_1k < 1_000_000, f"grew {at_10k - at_1k} bytes from job 1000 to 10000"
        assert_no_leaks(rt)


async def test_memory_ring_is_bounded_and_released(autojump_clock):
    async def chatty(ctx, inputs):
        async with ctx.stream(mode="per_token") as s:
            for i in range(200):
                await s.delta(f"token {i} ")
        await trio.sleep(10)
        return {}

    async with open_runtime(record_max_events=50, record_max_bytes=20_000) as rt:
        job = await rt.spawn(Flow("chatty", [Step("a", run=chatty)]), record="memory")
        await trio.sleep(5)
        stats = rt.stats()
        assert stats.recorders == 1 and 0 < stats.recorded_bytes <= 20_000
        late = [e async for e in _take(job.events(replay=True), 50)]
        assert len(late) == 50 and late[0].seq > 0  # the oldest were dropped: bounded
        assert [e.seq for e in late] == list(range(late[0].seq, late[0].seq + 50))
        await job.wait()
        stats = rt.stats()
        assert stats.recorders == 0 and stats.recorded_bytes == 0
        assert job._job.recording.recorder is None
        assert_no_leaks(rt)


async def _take(iterator, n):
    i = 0
    async for item in iterator:
        yield item
        i += 1
        if i == n:
            return


async def test_durable_records_everything_and_memory_stays_flat(tmp_path):
    async with open_runtime(store=tmp_path / "c.db", max_results=50) as rt:
        tracemalloc.start()
        try:
            ids = []
            for i in range(600):
                job = await rt.spawn(small_flow(i), record="durable")
                await job.wait()
                ids.append(job.id)
                if i == 99:
                    gc.collect()
                    at_100 = tracemalloc.get_traced_memory()[0]
            gc.collect()
            at_600 = tracemalloc.get_traced_memory()[0]
        finally:
            tracemalloc.stop()
        assert at_600 - at_100 < 1_000_000
        for job_id in (ids[0], ids[-1]):
            events = [e async for e in rt.events(job_id)]
            assert [e.seq for e in events] == list(range(8))
            assert isinstance(events[-1], JobFinished) and events[-1].state == "completed"
        assert_no_leaks(rt)


# -- replay reads the store ---------------------------------------------------------------------


async def test_replay_from_a_fresh_runtime_reads_the_store(tmp_path):
    db = tmp_path / "c.db"
    async with open_runtime(store=db) as rt:
        job = await rt.spawn(small_flow(), record="durable")
        live = [e async for e in job.events()]
    async with open_runtime(store=db) as fresh:
        assert fresh.jobs() == []
        replayed = [e async for e in fresh.events(job.id)]
        assert [e.seq for e in replayed] == [e.seq for e in live] == list(range(len(live)))
        assert [e.type for e in replayed] == [e.type for e in live]
        result = await fresh.result(job.id)
        assert result.state is JobState.COMPLETED and result.outputs["b"] == {"n": 1}


async def test_live_durable_replay_then_follow(tmp_path):
    gate = trio.Event()

    async def wait_gate(ctx, inputs):
        await gate.wait()
        return {}

    async with open_runtime(store=tmp_path / "c.db") as rt:
        job = await rt.spawn(Flow("f", [Step("a", run=noop), Step("b", run=wait_gate, after=["a"])]),
                             record="durable")
        while job.state is not JobState.RUNNING or job._job.hub.next_seq < 5:
            await trio.sleep(0.01)
        events = job.events(replay=True)
        gate.set()
        seqs = [e.seq async for e in events]
        assert seqs == list(range(len(seqs))) and seqs[-1] >= 7


# -- crash and resume -------------------------------------------------------------------------------

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
            await trio.sleep(0.3)  # let the recorder write
            print(json.dumps({"job": job.id, "runtime": rt.id,
                              "pids": [p.pid for p in marked_processes(rt)]}), flush=True)
            await trio.sleep_forever()

    trio.run(main)
""")


async def _run_and_kill(args) -> dict:
    env = {**os.environ, "PYTHONPATH": f"{HERE}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
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
    info = await _run_and_kill([db, counter, flag, "agent", HERE / "resume_agent.py"])
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
        await trio.sleep(0.2)
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
    """Wait for the job, resuming it with ``{"ok": True}`` whenever it pauses."""
    with trio.fail_after(BOUND):
        while handle.state not in (JobState.COMPLETED, JobState.FAILED, JobState.ABANDONED,
                                   JobState.CANCELLED):
            if handle.state is JobState.PAUSED:
                await handle.resume({"ok": True})
            await trio.sleep(0.005)
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


async def test_two_live_runtimes_on_one_file_keep_their_own_jobs(tmp_path):
    db = tmp_path / "c.db"
    flow = Flow("hold", [Step("a", run=noop, exits=[ExitRule("hold", action="escalate")])])
    async with open_runtime(store=db) as rt1:
        job = await rt1.spawn(flow, record="durable")
        while job.state is not JobState.PAUSED:
            await trio.sleep(0.01)
        async with open_runtime(store=db, resume=True) as rt2:
            assert rt2.jobs() == []  # rt1 is alive: its job is not taken over
            other = await rt2.spawn(small_flow(), record="durable")
            assert (await other.wait()).state is JobState.COMPLETED
            assert rt1.get(other.id) is None
        assert job.state is JobState.PAUSED
        await job.cancel()


# -- faults and bad input --------------------------------------------------------------------------------


async def test_corrupt_file_is_refused_and_left_alone(tmp_path):
    db = tmp_path / "c.db"
    db.write_bytes(b"definitely not sqlite" * 100)
    before = db.read_bytes()
    with pytest.raises(StoreCorrupt) as info:
        async with open_runtime(store=db):
            pass
    assert str(db) in str(info.value)
    assert db.read_bytes() == before


async def test_newer_schema_is_refused(tmp_path):
    import sqlite3

    db = tmp_path / "c.db"
    async with SqliteStore(db):
        pass
    conn = sqlite3.connect(db)
    conn.execute("PRAGMA user_version = 999")
    conn.commit()
    conn.close()
    with pytest.raises(StoreSchemaTooNew, match="999"):
        async with open_runtime(store=db):
            pass


async def test_failed_store_write_fails_only_that_job(tmp_path, monkeypatch):
    import sqlite3

    gate = trio.Event()

    async def wait_gate(ctx, inputs):
        await gate.wait()
        return {"late": True}

    async with open_runtime(store=tmp_path / "c.db") as rt:
        flow = Flow("f", [Step("a", run=noop), Step("b", run=wait_gate, after=["a"])])
        job = await rt.spawn(flow, record="durable")
        while job._job.hub.next_seq < 5:
            await trio.sleep(0.01)
        await job._job.recording.recorder.flush()
        written = [r.seq for r in await rt.store.read_events(job.id)]
        original = rt.store._execute_batch

        def broken(batch):
            raise sqlite3.OperationalError("disk I/O error")

        monkeypatch.setattr(rt.store, "_execute_batch", broken)
        gate.set()
        with trio.fail_after(BOUND):
            result = await job.wait()
        assert result.state is JobState.FAILED and result.reason == "store_error"
        assert "disk I/O error" in result.error
        monkeypatch.setattr(rt.store, "_execute_batch", original)
        assert [r.seq for r in await rt.store.read_events(job.id)][: len(written)] == written
        other = await rt.spawn(small_flow(), record="durable")
        assert (await other.wait()).state is JobState.COMPLETED
        assert_no_leaks(rt)


# -- property: the durable log is complete and monotonic ---------------------------------------------


async def _durable_scenario(outside: str, at: float, pause: bool) -> None:
    async def slow(ctx, inputs):
        await trio.sleep(2)
        return {"x": 1}

    exits = [ExitRule("hold", action="escalate")] if pause else []
    flow = Flow("p", [Step("a", run=slow, exits=exits), Step("b", run=slow, after=["a"]), Step("c", run=noop)])
    store = MemoryStore()
    async with open_runtime(store=store) as rt:
        job = await rt.spawn(flow, record="durable")
        await trio.sleep(at)
        if outside == "cancel":
            await job.cancel()
        elif outside == "abandon":
            await job.abandon()
        elif job.state is JobState.PAUSED and outside == "resume":
            await job.resume({})
        if outside != "shutdown":
            with trio.move_on_after(100):  # a job left paused ends with the runtime's shutdown
                await job.wait()
    async with store:  # the runtime closed it; what it holds is still there
        rows = await store.read_events(job.id)
        assert [r.seq for r in rows] == list(range(len(rows)))
        assert rows[-1].type == "job_finished" and [r.type for r in rows].count("job_finished") == 1
        assert (await store.get_job(job.id)).state == job.result.state.value


@settings(max_examples=60, deadline=None)
@given(outside=st.sampled_from(["none", "cancel", "abandon", "shutdown", "resume"]),
       at=st.sampled_from([0, 0.5, 1.5, 3.0, 5.0]), pause=st.booleans())
def test_durable_event_log_is_complete_and_monotonic(outside, at, pause):
    trio.run(_durable_scenario, outside, at, pause, clock=trio.testing.MockClock(autojump_threshold=0))
