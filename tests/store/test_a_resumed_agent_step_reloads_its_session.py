"""A durable job whose agent step was in a prompt turn when its runtime stopped (a drain, or a
SIGKILL) re-attaches, once resumed, to the ACP session it had: ``session/load`` when the agent
advertises ``loadSession``, the agent's replay of the history ignored, the prompt sent again in
that session.  An agent that refuses the id, or cannot load sessions, gets a new session and the
job still completes; the ``AgentSession`` events say which happened.

The agent is tests/agents/load_agent.mjs, on the official ACP SDK: it keeps its sessions in files
in its cwd (the job's workspace, the same for both runtimes) and logs every session/new and
session/load it answers."""

from __future__ import annotations

import shutil
import sys
import textwrap
from pathlib import Path

import trio
from child_runtime import child_runtime, sigkill
from store_support import recorded

from actors.stream import Delta, TextDelta
from runtime import (
    AgentSession,
    AgentSpec,
    Flow,
    JobStarted,
    JobState,
    Step,
    StepStream,
    open_runtime,
)
from runtime.testing import assert_no_leaks, wait_exited

BOUND = 60
AGENT = Path(__file__).resolve().parents[1] / "agents" / "load_agent.mjs"
NODE = shutil.which("node") or "node"


def _flow(*flags: str) -> Flow:
    return Flow("chat", [Step("talk", agent=AgentSpec([NODE, str(AGENT), *flags]), prompt="[[hang-once]] go on")])


def _text(events) -> str:
    return "".join(e.update.delta.text for e in events if isinstance(e, StepStream)
                   and isinstance(e.update, Delta) and isinstance(e.update.delta, TextDelta))


async def _in_turn(job) -> str:
    """The session id of the agent step's turn, once the agent says it is waiting in it."""
    session = None
    async for event in job.events():
        if isinstance(event, AgentSession):
            session = event.session_id
        elif session is not None and "waiting" in _text([event]):
            return session
    raise AssertionError(f"the agent step never got into its turn: {job.result}")


async def _drained_in_turn(db: Path, ws: Path, flow: Flow) -> tuple[str, str]:
    """Run ``flow`` durably until its agent is in its turn, then drain: (job id, session id)."""
    async with open_runtime(store=db, workspace=ws) as rt:
        job = await rt.spawn(flow, record="durable")
        session = await _in_turn(job)
        await recorded(job)
        await rt.drain(0)
        result = await job.wait()
        assert (result.state, result.reason) == (JobState.INTERRUPTED, "drained")
    return job.id, session


async def _resume(db: Path, ws: Path, job_id: str) -> tuple[object, list]:
    """Resume the job in a new runtime and run it to its end: (result, events since the resume)."""
    async with open_runtime(store=db, workspace=ws, resume=True) as rt:
        job = rt.get(job_id)
        assert job is not None
        events = job.events(replay=True)  # from the store: nothing the resumed run did is missed
        result = await job.wait()
        seen = [e async for e in events]
        assert_no_leaks(rt)
    restart = next(i for i, e in enumerate(seen) if isinstance(e, JobStarted) and e.resumed)
    return result, seen[restart:]


def _calls(ws: Path, job_id: str) -> list[str]:
    return (ws / job_id / ".load_agent" / "calls.log").read_text().splitlines()


async def test_a_drained_agent_step_reattaches_to_its_session(tmp_path):
    db, ws = tmp_path / "s.db", tmp_path / "ws"
    with trio.fail_after(BOUND):
        job_id, session = await _drained_in_turn(db, ws, _flow())
        result, seen = await _resume(db, ws, job_id)
    assert result.state is JobState.COMPLETED, result
    # the same session, its second turn: the agent kept what the first one said
    assert result.outputs["talk"]["text"] == f"session {session} turn 2"
    assert [(e.session_id, e.loaded, e.fallback) for e in seen if isinstance(e, AgentSession)] == [
        (session, True, None)]
    assert "replayed" not in _text(seen)  # the history the agent replays on load is not a new message
    assert _calls(ws, job_id) == [f"new {session}", f"load {session}"]


async def test_a_session_the_agent_refuses_to_load_falls_back_to_a_new_one(tmp_path):
    db, ws = tmp_path / "s.db", tmp_path / "ws"
    with trio.fail_after(BOUND):
        job_id, session = await _drained_in_turn(db, ws, _flow())
        (ws / job_id / ".load_agent" / f"{session}.json").unlink()  # the agent lost it
        result, seen = await _resume(db, ws, job_id)
    assert result.state is JobState.COMPLETED, result
    [opened] = [e for e in seen if isinstance(e, AgentSession)]
    assert opened.session_id != session and not opened.loaded
    assert opened.fallback is not None and "-32002" in opened.fallback
    assert result.outputs["talk"]["text"] == f"session {opened.session_id} turn 1"
    assert _calls(ws, job_id) == [f"new {session}", f"load {session}", f"new {opened.session_id}"]


async def test_an_agent_without_load_session_gets_a_new_session(tmp_path):
    db, ws = tmp_path / "s.db", tmp_path / "ws"
    with trio.fail_after(BOUND):
        job_id, session = await _drained_in_turn(db, ws, _flow("--no-load"))
        result, seen = await _resume(db, ws, job_id)
    assert result.state is JobState.COMPLETED, result
    [opened] = [e for e in seen if isinstance(e, AgentSession)]
    assert opened.session_id != session and not opened.loaded
    assert opened.fallback == "the agent does not advertise loadSession"
    assert _calls(ws, job_id) == [f"new {session}", f"new {opened.session_id}"]  # never asked to load


CRASHING_RUNTIME = textwrap.dedent("""
    import json, sys, trio
    from runtime import AgentSession, AgentSpec, Flow, Step, StepStream, open_runtime
    from runtime.testing import marked_processes

    db, ws, node, agent = sys.argv[1:5]

    async def main():
        async with open_runtime(store=db, workspace=ws) as rt:
            flow = Flow("chat", [Step("talk", agent=AgentSpec([node, agent]), prompt="[[hang-once]] go on")])
            job = await rt.spawn(flow, record="durable")
            session = None
            async for event in job.events():
                if isinstance(event, AgentSession):
                    session = event.session_id
                elif isinstance(event, StepStream) and "waiting" in repr(event.update):
                    break
            replay = job.events(replay=True)  # the recorder writes what it holds first
            await replay.__anext__()
            await replay.aclose()
            print(json.dumps({"job": job.id, "session": session,
                              "pids": [p.pid for p in marked_processes(rt)]}), flush=True)
            await trio.sleep_forever()

    trio.run(main)
""")


async def test_after_a_sigkill_the_resumed_step_reattaches_and_the_old_tree_is_gone(tmp_path):
    db, ws = tmp_path / "s.db", tmp_path / "ws"
    argv = [sys.executable, "-c", CRASHING_RUNTIME, str(db), str(ws), NODE, str(AGENT)]
    with trio.fail_after(BOUND):
        async with child_runtime(argv) as (proc, info):
            assert info["pids"], "the agent was running when the runtime was killed"
            await sigkill(proc)
        await wait_exited(info["pids"])  # the keeper takes the agent tree down with the runtime
        result, seen = await _resume(db, ws, info["job"])
    assert result.state is JobState.COMPLETED, result
    assert result.outputs["talk"]["text"] == f"session {info['session']} turn 2"
    assert [(e.session_id, e.loaded) for e in seen if isinstance(e, AgentSession)] == [(info["session"], True)]
