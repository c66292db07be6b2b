"""``rt.drain(grace)`` for a deploy: no new job and no new step, running steps get the grace, then
every durable job ends INTERRUPTED with its checkpoints written and its record live and ownerless,
so the next runtime resumes it where it stopped; other jobs are cancelled ``drained``.  Nothing of
the drained jobs is left: no task, no process."""

from __future__ import annotations

import os
import sys

import psutil
import pytest
import trio
from store_support import recorded, until_paused, until_restarted

from runtime import (
    ExitRule,
    Flow,
    JobState,
    JobStateError,
    Step,
    StepStarted,
    open_client,
    open_runtime,
)
from runtime.store import SqliteStore
from runtime.testing import assert_no_leaks

BOUND = 60
GATES: dict[str, trio.Event] = {}  # a test's gates, by name: what a held step waits for


async def held(ctx, inputs):
    """Wait for the test to open the gate named ``inputs["gate"]`` (if it is still set up)."""
    gate = GATES.get(inputs["gate"])
    if gate is not None:
        await gate.wait()
    return {"step": ctx.step, "resume": inputs.get("resume")}


def _two_steps(gate: str) -> Flow:
    return Flow("two", [
        Step("a", run=held, inputs={"gate": gate}),
        Step("b", run=held, after=["a"], inputs={"gate": "b-is-free"}),
    ])


async def _record(path, job_id):
    async with SqliteStore(path) as store:
        return await store.get_job(job_id), await store.get_checkpoints(job_id)


async def _started(job, step: str) -> None:
    async for event in job.events():
        if isinstance(event, StepStarted) and event.step == step:
            return
    raise AssertionError(f"{step} never started: {job.result}")


async def test_a_running_step_finishes_in_the_grace_and_the_next_runtime_runs_the_rest(tmp_path):
    db = tmp_path / "s.db"
    GATES["a"] = trio.Event()
    with trio.fail_after(BOUND):
        async with open_runtime(store=db) as rt:
            job = await rt.spawn(_two_steps("a"), record="durable")
            await _started(job, "a")
            started_b = []

            async def watch() -> None:
                async for event in job.events():
                    if isinstance(event, StepStarted):
                        started_b.append(event.step)

            async with trio.open_nursery() as nursery:
                nursery.start_soon(watch)
                nursery.start_soon(rt.drain, 3600)
                await trio.testing.wait_all_tasks_blocked()
                with pytest.raises(RuntimeError, match="shutting down"):
                    await rt.spawn(_two_steps("a"), record="durable")
                GATES["a"].set()  # the running step ends well within the grace
            result = await job.wait()
            assert (result.state, result.reason) == (JobState.INTERRUPTED, "drained")
            assert started_b == []  # a drained job starts no new step
            assert_no_leaks(rt)
        rec, checkpoints = await _record(db, job.id)
        assert (rec.state, rec.runtime_id, rec.finished_at) == ("interrupted", None, None)
        assert set(checkpoints) == {"a"}

        del GATES["a"]
        async with open_runtime(store=db, resume=True) as rt:
            resumed = rt.get(job.id)
            assert resumed is not None
            steps = [e.step async for e in resumed.events(replay=True) if isinstance(e, StepStarted)]
            done = await resumed.wait()
            assert done.state is JobState.COMPLETED
            assert steps.count("a") == 1 and steps[-1] == "b"  # a ran once, before the drain
            assert_no_leaks(rt)


async def test_when_the_grace_is_over_the_step_is_cancelled_its_processes_killed(tmp_path):
    db = tmp_path / "s.db"
    flag, fifo = tmp_path / "ran", tmp_path / "pid.fifo"
    os.mkfifo(fifo)
    # the first run tells the test its pid, then holds; the run after the drain returns at once
    script = (f"import os, signal, sys, pathlib; p = pathlib.Path({str(flag)!r})\n"
              "if p.exists(): print('{\"second\": true}'); sys.exit(0)\n"
              f"p.touch(); pathlib.Path({str(fifo)!r}).write_text(str(os.getpid())); signal.pause()\n")
    flow = Flow("long", [Step("work", command=[sys.executable, "-c", script])])
    with trio.fail_after(BOUND):
        async with open_runtime(store=db, term_grace=0.5) as rt:
            job = await rt.spawn(flow, record="durable")
            pid = int(await trio.to_thread.run_sync(fifo.read_text, abandon_on_cancel=True))
            proc = psutil.Process(pid)
            try:
                await rt.drain(0.2)
                result = await job.wait()
                assert (result.state, result.reason) == (JobState.INTERRUPTED, "drained")
                assert not proc.is_running() or proc.status() == psutil.STATUS_ZOMBIE
                assert_no_leaks(rt)
            finally:
                if proc.is_running():
                    proc.kill()
        rec, _ = await _record(db, job.id)
        assert (rec.state, rec.runtime_id) == ("interrupted", None)

        async with open_runtime(store=db, resume=True) as rt:
            resumed = rt.get(job.id)
            assert resumed is not None
            done = await resumed.wait()
            assert done.state is JobState.COMPLETED and done.outputs["work"] == {"second": True}


async def test_a_paused_job_is_let_go_at_once_and_stays_paused_for_the_next_runtime(tmp_path):
    db = tmp_path / "s.db"
    flow = Flow("ask", [
        Step("a", run=held, inputs={"gate": "free"}, exits=[ExitRule("ask", when="True", action="escalate")]),
        Step("b", run=held, after=["a"], inputs={"gate": "free", "resume": "$resume"}),
    ])
    with trio.fail_after(BOUND):
        async with open_runtime(store=db) as rt:
            job = await rt.spawn(flow, record="durable")
            await until_paused(job)
            await recorded(job)
            await rt.drain(3600)  # returns at once: a paused job has no running step to wait for
            result = await job.wait()
            assert (result.state, result.reason) == (JobState.INTERRUPTED, "drained")
            assert_no_leaks(rt)
        rec, _ = await _record(db, job.id)
        assert (rec.state, rec.runtime_id, rec.finished_at) == ("paused", None, None)

        async with open_runtime(store=db, resume=True) as rt:
            resumed = rt.get(job.id)
            assert resumed is not None
            await until_restarted(resumed)
            assert resumed.state is JobState.PAUSED
            await resumed.resume({"ok": "yes"})
            done = await resumed.wait()
            assert done.state is JobState.COMPLETED and done.outputs["b"]["resume"] == {"ok": "yes"}


async def test_jobs_not_recorded_durably_run_on_in_the_grace_then_are_cancelled(tmp_path):
    GATES["quick"], GATES["stuck"] = trio.Event(), trio.Event()
    try:
        with trio.fail_after(BOUND):
            async with open_runtime(store=tmp_path / "s.db") as rt:
                quick = await rt.spawn(_two_steps("quick"))
                stuck = await rt.spawn(_two_steps("stuck"))
                await _started(stuck, "a")
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(rt.drain, 0.5)
                    await trio.testing.wait_all_tasks_blocked()
                    GATES["quick"].set()  # it finishes a, then runs b too, within the grace
                assert (await quick.wait()).state is JobState.COMPLETED
                ended = await stuck.wait()
                assert (ended.state, ended.reason) == (JobState.CANCELLED, "drained")
                assert_no_leaks(rt)
    finally:
        GATES.clear()


async def test_a_queued_durable_job_is_stored_interrupted_and_runs_in_the_next_runtime(tmp_path):
    db = tmp_path / "s.db"
    GATES["first"] = trio.Event()
    try:
        with trio.fail_after(BOUND):
            async with open_runtime(store=db, max_running_jobs=1) as rt:
                first = await rt.spawn(_two_steps("first"), record="durable")
                queued = await rt.spawn(_two_steps("free"), record="durable")
                await _started(first, "a")
                assert queued.state is JobState.PENDING
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(rt.drain, 3600)
                    await trio.testing.wait_all_tasks_blocked()
                    assert (await queued.wait()).state is JobState.INTERRUPTED  # at once, never started
                    GATES["first"].set()
                assert (await first.wait()).state is JobState.INTERRUPTED
                assert_no_leaks(rt)
            rec, checkpoints = await _record(db, queued.id)
            assert (rec.state, rec.runtime_id, checkpoints) == ("interrupted", None, {})
    finally:
        GATES.clear()
    async with open_runtime(store=db, resume=True) as rt:
        # both are resumed; the one with two instant steps may have completed already (a durable
        # no-op job takes two transactions), so it is found live or among the results
        for job_id in (first.id, queued.id):
            handle = rt.get(job_id)
            result = await handle.wait() if handle is not None else await rt.result(job_id)
            assert result is not None and result.state is JobState.COMPLETED, job_id


async def test_release_lets_go_of_one_durable_job_and_refuses_one_that_is_not(tmp_path):
    db = tmp_path / "s.db"
    flow = Flow("ask", [Step("a", run=held, inputs={"gate": "free"},
                             exits=[ExitRule("ask", when="True", action="escalate")])])
    with trio.fail_after(BOUND):
        async with open_runtime(store=db) as rt:
            kept = await rt.spawn(flow, record="memory")
            await until_paused(kept)
            let_go = await rt.spawn(flow, record="durable")
            await until_paused(let_go)
            with pytest.raises(JobStateError, match=f"job {kept.id} is not recorded durably"):
                await kept.release()
            result = await let_go.release()
            assert (result.state, result.reason) == (JobState.INTERRUPTED, "released")
            assert kept.state is JobState.PAUSED  # only the one job was let go
            await kept.cancel()
            assert_no_leaks(rt)
        rec, _ = await _record(db, let_go.id)
        assert (rec.state, rec.runtime_id) == ("paused", None)


async def test_a_client_left_by_an_error_lets_go_of_the_job_it_took_over(tmp_path):
    db = tmp_path / "s.db"
    GATES["b"] = trio.Event()  # b would hold once resumed: the client's block fails while the job runs
    flow = Flow("ask", [
        Step("a", run=held, inputs={"gate": "free"}, exits=[ExitRule("ask", when="True", action="escalate")]),
        Step("b", run=held, after=["a"], inputs={"gate": "b", "resume": "$resume"}),
    ])
    try:
        with trio.fail_after(BOUND):
            async with open_runtime(store=db) as rt:
                job = await rt.spawn(flow, record="durable")
                await until_paused(job)
                await recorded(job)
                await job.release()  # ownerless and paused, as after its worker died
            with pytest.raises(KeyError, match="boom"):
                async with open_client(store=db, run=True) as client:
                    await client.resume(job.id, {"ok": 1})
                    assert client.runs_here(job.id)
                    assert client.runtime.get(job.id).state is JobState.RUNNING
                    raise KeyError("boom")
            rec, checkpoints = await _record(db, job.id)
            assert (rec.state, rec.runtime_id, rec.resume_payload) == ("interrupted", None, {"ok": 1})
            assert set(checkpoints) == {"a"}
    finally:
        GATES.clear()
