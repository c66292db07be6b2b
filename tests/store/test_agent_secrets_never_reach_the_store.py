"""Issue 14, part 3: an agent's secrets (``AgentSpec.env`` values, ``env_from`` variables) reach the
agent process and nothing durable or observable -- not the SQLite file or its WAL, not the events,
the logs, ``repr`` or ``corral show --json``.  The store keeps the names, so a job resumed by the
next runtime reads them from that runtime's environment, and fails its agent step naming the
variable (never its value) when it is missing there.  Real SQLite files, real agent processes."""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import subprocess
import sys
from pathlib import Path

import pytest
import trio
from store_support import recorded, until_paused, until_restarted

from runtime import (
    AgentSpec,
    ExitRule,
    Flow,
    JobPaused,
    JobState,
    SecretUnavailable,
    Step,
    event_to_dict,
    open_runtime,
)
from runtime.testing import assert_no_leaks

BOUND = 60
NAME = "ANTHROPIC_API_KEY"
SECRET = "sk-test-SECRET-1234"
REPO = Path(__file__).resolve().parents[2]

# The agent: exits 9 (its step then fails) unless NAME holds SECRET -- compared by hash, so the
# command line (which is stored) never holds the value -- then becomes the bundled fake agent.
_CHECK = ("import hashlib, os, sys\n"
          f"value = os.environ.get({NAME!r})\n"
          "if value is None or hashlib.sha256(value.encode()).hexdigest() != sys.argv[1]:\n"
          "    sys.exit(9)\n"
          "os.execv(sys.executable, [sys.executable, '-m', 'actors.fake_agent', '--delay', '0.001'])\n")
AGENT = [sys.executable, "-c", _CHECK, hashlib.sha256(SECRET.encode()).hexdigest()]


def _flow(spec: AgentSpec) -> Flow:
    return Flow("secret", [
        Step("a", agent=spec, prompt="first", exits=[ExitRule("ask", when="True", action="escalate")]),
        Step("b", agent=spec, prompt="second", after=["a"]),
    ])


def _by_value() -> AgentSpec:
    return AgentSpec(AGENT, env={NAME: SECRET})


def _assert_store_clean(db: Path) -> None:
    files = [p for p in (db, db.with_name(db.name + "-wal")) if p.exists()]
    assert db in files
    for path in files:
        assert SECRET.encode() not in path.read_bytes(), path


async def _events_text(job) -> str:
    """Every event of ``job`` so far, replayed (up to its pause while it is paused)."""
    events = []
    async with contextlib.aclosing(job.events(replay=True)) as stream:
        async for event in stream:
            events.append(event_to_dict(event))
            if isinstance(event, JobPaused) and job.state is JobState.PAUSED:
                break
    assert events
    return json.dumps(events)


def _show(db: Path, job_id: str) -> str:
    out = subprocess.run([sys.executable, "-m", "runtime", "show", job_id, "--json", "--store", str(db)],
                         cwd=REPO, capture_output=True, text=True, timeout=BOUND, check=False)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["flow"]["steps"][0]["agent"]["env_from"] == [NAME]
    return out.stdout + out.stderr


async def test_a_durable_agent_job_keeps_its_secret_out_of_store_events_logs_and_show(tmp_path, caplog):
    db = tmp_path / "s.db"
    caplog.set_level(logging.DEBUG)
    with trio.fail_after(BOUND):
        async with open_runtime(store=db) as rt:
            job = await rt.spawn(_flow(_by_value()), record="durable")
            await until_paused(job)  # step a ran: the agent had the secret
            await recorded(job)
            _assert_store_clean(db)  # while paused at the escalation
            assert SECRET not in await _events_text(job)
            assert SECRET not in await trio.to_thread.run_sync(_show, db, job.id)
            await job.resume({"ok": True})
            result = await job.wait()
            assert result.state is JobState.COMPLETED, result.error
            assert result.outputs["b"]["stop_reason"] == "end_turn"
            assert SECRET not in await _events_text(job)
            assert_no_leaks(rt)
    _assert_store_clean(db)
    assert SECRET not in await trio.to_thread.run_sync(_show, db, job.id)
    assert caplog.records, "nothing was logged: the capture saw nothing"
    assert SECRET not in caplog.text
    assert SECRET not in "".join(str(r.__dict__) for r in caplog.records)
    assert SECRET not in repr(_by_value()) and SECRET not in repr(_flow(_by_value()))


async def test_env_from_is_read_from_the_runtimes_environment_and_stored_by_name(tmp_path, monkeypatch):
    db = tmp_path / "s.db"
    monkeypatch.setenv(NAME, SECRET)
    with trio.fail_after(BOUND):
        async with open_runtime(store=db) as rt:
            job = await rt.spawn(_flow(AgentSpec(AGENT, env_from=[NAME])), record="durable")
            await until_paused(job)
            await job.resume(None)
            result = await job.wait()
            assert result.state is JobState.COMPLETED, result.error
    _assert_store_clean(db)


async def test_a_missing_env_from_variable_is_refused_at_spawn_and_nothing_is_stored(tmp_path, monkeypatch):
    db = tmp_path / "s.db"
    monkeypatch.delenv(NAME, raising=False)
    async with open_runtime(store=db) as rt:
        with pytest.raises(SecretUnavailable, match=f"secret {NAME} is not available to this runtime") as exc:
            await rt.spawn(_flow(AgentSpec(AGENT, env_from=[NAME])), record="durable", job_id="j1")
        assert exc.value.name == NAME
        assert await rt.store.get_job("j1") is None and not rt.jobs()


async def _pause_then_drain(db: Path) -> str:
    async with open_runtime(store=db) as rt:
        job = await rt.spawn(_flow(_by_value()), record="durable")
        await until_paused(job)
        await recorded(job)
        await rt.drain(3600)
        assert (await job.wait()).state is JobState.INTERRUPTED
    return job.id


async def test_a_resumed_job_reads_its_secret_from_the_next_runtimes_environment(tmp_path, monkeypatch):
    db = tmp_path / "s.db"
    monkeypatch.delenv(NAME, raising=False)
    with trio.fail_after(BOUND):
        job_id = await _pause_then_drain(db)
        monkeypatch.setenv(NAME, SECRET)
        async with open_runtime(store=db, resume=True) as rt:
            resumed = rt.get(job_id)
            assert resumed is not None
            await until_restarted(resumed)
            await resumed.resume({"ok": True})
            done = await resumed.wait()
            assert done.state is JobState.COMPLETED, done.error  # b's agent had the value again
            assert done.outputs["b"]["stop_reason"] == "end_turn"
    _assert_store_clean(db)


async def test_a_resumed_job_without_its_secret_fails_the_step_naming_the_variable(tmp_path, monkeypatch):
    db = tmp_path / "s.db"
    monkeypatch.delenv(NAME, raising=False)
    with trio.fail_after(BOUND):
        job_id = await _pause_then_drain(db)
        async with open_runtime(store=db, resume=True) as rt:
            resumed = rt.get(job_id)
            assert resumed is not None
            await until_restarted(resumed)
            await resumed.resume({"ok": True})
            done = await resumed.wait()
            assert (done.state, done.reason) == (JobState.FAILED, "step_failed:b")
            assert (f"secret {NAME} is not available to this runtime (set it in the environment of the "
                    f"runtime that resumes job {job_id})") in done.error
            assert SECRET not in done.error
            assert SECRET not in await _events_text(resumed)
            assert_no_leaks(rt)
    _assert_store_clean(db)
