"""A worker process holds a paused durable job and a job running a long command; from other
processes ``corral resume JOB --payload`` completes the first (its next step sees the payload),
``corral cancel JOB`` ends the second with its process tree gone, and an unknown id exits 2.
After a SIGKILL of the worker: ``corral resume`` leaves the paused job paused, a new worker with
``resume=True`` holds it PAUSED and ``corral resume JOB`` completes it there; with no worker,
``corral resume JOB --payload`` runs it to its end in the CLI."""

from __future__ import annotations

import json
import subprocess
import textwrap

import psutil
import trio
from cli_support import BOUND, CORRAL, PY, REPO, Lines, corral, write_flow

from actors.process import find_marked
from runtime.store import SqliteStore

APPROVAL = REPO / "examples" / "approval.yaml"


async def _recorded_paused(store, job_id) -> None:
    """Until the worker (another process, about to be SIGKILLed) has committed the pause: its log
    and record are written behind its events, and SQLite tells no other process of a commit."""
    async with SqliteStore(store) as st:
        while (await st.get_job(job_id)).state != "paused":  # noqa: ASYNC110
            await trio.sleep(0.05)


async def _killed_while_paused(store, version: str):
    """A worker holding a paused durable job, SIGKILLed (no cleanup at all) once the pause is stored."""
    worker, lines, job_id = await _start_worker([APPROVAL, "-i", f"version={version}"], store)
    try:
        await _until(lines, "job_paused")
        await _recorded_paused(store, job_id)
    finally:
        worker.kill()
        await worker.wait()
    return worker, job_id


async def _start_worker(args, store):
    """``corral run ARGS --json`` as a worker; returns (process, lines, job id) once it has started."""
    proc = await trio.lowlevel.open_process([*CORRAL, "run", *map(str, args), "--json", "--store", str(store)],
                                            cwd=REPO, stdout=subprocess.PIPE)
    lines = Lines(proc.stdout)
    return proc, lines, (await _until(lines, "job_started"))["job_id"]


async def _until(lines, kind: str, **match) -> dict:
    while (line := await lines.next()) is not None:
        event = json.loads(line)
        if event["type"] == kind and all(event.get(k) == v for k, v in match.items()):
            return event
    raise AssertionError(f"the worker ended before a {kind} event")


def _show(job_id, store) -> dict:
    return json.loads(corral("show", job_id, "--json", "--store", store).stdout)


async def test_resume_and_cancel_a_live_workers_jobs_from_another_process(tmp_path):
    store = tmp_path / "s.db"
    flow = write_flow(tmp_path, """\
        name: long
        steps:
          wait: {command: [sleep, "600"]}
        """)
    with trio.fail_after(BOUND):
        paused, paused_lines, paused_id = await _start_worker([APPROVAL, "-i", "version=2"], store)
        await _until(paused_lines, "job_paused")
        busy, busy_lines, busy_id = await _start_worker([flow], store)
        await _until(busy_lines, "step_started", step="wait")
        # the command starts after its step_started event; another process's table is polled
        while not (tree := find_marked(lambda m: m.job_id == busy_id)):  # noqa: ASYNC110
            await trio.sleep(0.05)
        try:
            listed = json.loads(corral("jobs", "--json", "--store", store).stdout.splitlines()[-1])
            assert listed["owner"]["pid"] == paused.pid and listed["owner"]["alive"] is True
            done = await trio.to_thread.run_sync(
                lambda: corral("resume", paused_id, "--payload", '{"approved": true}', "--store", store))
            assert done.returncode == 0, done.stderr
            finished = await _until(paused_lines, "job_finished")
            assert finished["state"] == "completed"
            assert _show(paused_id, store)["outputs"]["publish"]["published"] is True
            assert await paused.wait() == 0

            again = corral("resume", paused_id, "--payload", "{}", "--store", store)
            assert again.returncode == 1 and paused_id in again.stderr and len(again.stderr.splitlines()) == 1
            unknown = corral("cancel", "no-such-job", "--store", store)
            assert unknown.returncode == 2 and "no-such-job" in unknown.stderr

            cancelled = await trio.to_thread.run_sync(lambda: corral("cancel", busy_id, "--store", store))
            assert cancelled.returncode == 0, cancelled.stderr
            assert "cancelled" in cancelled.stdout
            assert (await _until(busy_lines, "job_finished"))["state"] == "cancelled"
            assert not [p for p in tree if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
            assert _show(busy_id, store)["state"] == "cancelled"
            assert await busy.wait() == 1
        finally:
            for proc in (paused, busy):
                proc.kill()
                await proc.wait()


async def test_a_paused_job_outlives_its_worker_and_is_resumed_by_id(tmp_path):
    store = tmp_path / "s.db"
    with trio.fail_after(BOUND):
        worker, job_id = await _killed_while_paused(store, "3")
        owner = json.loads(corral("jobs", "--json", "--store", store).stdout)["owner"]
        assert owner["pid"] == worker.pid and owner["alive"] is False
        # `corral resume` with no JOB takes over non-paused jobs only: the paused one stays paused
        nothing = await trio.to_thread.run_sync(lambda: corral("resume", "--store", store))
        assert nothing.returncode == 0 and "nothing to resume" in nothing.stderr
        assert _show(job_id, store)["state"] == "paused"

        # a new worker adopts it and holds it PAUSED (the store says so), until resumed by id
        script = textwrap.dedent(f"""\
            import sys, trio
            from runtime import open_runtime
            async def main():
                async with open_runtime(store={str(store)!r}, resume=True) as rt:
                    (job,) = rt.jobs()
                    async for event in job.events():
                        if event.type == "job_started":
                            break
                    print(job.state.value, flush=True)
                    print((await job.wait()).state.value, flush=True)
            trio.run(main)
            """)
        second = await trio.lowlevel.open_process([PY, "-c", script], cwd=REPO, stdout=subprocess.PIPE)
        try:
            out = Lines(second.stdout)
            assert await out.next() == "paused"
            assert _show(job_id, store)["state"] == "paused"
            done = await trio.to_thread.run_sync(
                lambda: corral("resume", job_id, "--payload", '{"approved": true}', "--store", store))
            assert done.returncode == 0, done.stderr
            assert await out.next() == "completed"
        finally:
            second.kill()
            await second.wait()
    assert _show(job_id, store)["outputs"]["publish"]["published"] is True


async def test_with_no_worker_resume_by_id_runs_the_job_to_its_end_in_the_cli(tmp_path):
    store = tmp_path / "s.db"
    with trio.fail_after(BOUND):
        _worker, job_id = await _killed_while_paused(store, "4")
        ran = await trio.to_thread.run_sync(
            lambda: corral("resume", job_id, "--payload", '{"approved": true}', "--json", "--store", store))
    assert ran.returncode == 0, ran.stderr
    events = [json.loads(line) for line in ran.stdout.splitlines()]
    assert events[-1]["type"] == "job_finished" and events[-1]["state"] == "completed"
    assert any(e["type"] == "job_resumed" and e["payload"] == {"approved": True} for e in events)
    assert _show(job_id, store)["state"] == "completed"
