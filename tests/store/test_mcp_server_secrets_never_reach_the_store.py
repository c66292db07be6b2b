"""An MCP server's env values (``McpServer(env=...)``) are secrets like an agent's own: the SQLite
file keeps only their names, and a job resumed by the next runtime reads them from that runtime's
environment -- its stdio MCP server gets the value again -- or fails its agent step naming the
variable (never its value).  Real SQLite files, the SDK agent and its MCP server as real processes.
They need ``npm ci --prefix tests/agents``."""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
from pathlib import Path

import pytest
import trio
from store_support import recorded, until_paused, until_restarted

from runtime import AgentSpec, ExitRule, Flow, JobState, McpServer, Step, open_runtime
from runtime.testing import assert_no_leaks

AGENTS = Path(__file__).resolve().parents[1] / "agents"
BOUND = 60
NAME = "MCP_TOKEN"
SECRET = "mcp-SECRET-resume-4417"


def _flow(pidfile: Path) -> Flow:
    if not (AGENTS / "node_modules" / "@agentclientprotocol" / "sdk").exists():
        pytest.fail("@agentclientprotocol/sdk is missing: run `npm ci --prefix tests/agents` first")
    server = McpServer("files", sys.executable, [str(AGENTS / "mcp_server.py"), str(pidfile), NAME],
                       env={NAME: SECRET})
    spec = AgentSpec([shutil.which("node") or "node", str(AGENTS / "sdk_agent.mjs")], mcp_servers=[server])
    return Flow("mcp", [
        Step("a", agent=spec, prompt="[[mcp]] first", exits=[ExitRule("ask", when="True", action="escalate")]),
        Step("b", agent=spec, prompt="[[mcp]] second", after=["a"]),
    ])


def _server_saw_the_secret(pidfile: Path) -> bool:
    return json.loads(pidfile.read_text())["sha256"] == hashlib.sha256(SECRET.encode()).hexdigest()


def _assert_store_clean(db: Path) -> None:
    assert db.exists()
    for path in (db, db.with_name(db.name + "-wal")):
        if path.exists():
            assert SECRET.encode() not in path.read_bytes(), path


async def _pause_then_drain(db: Path, pidfile: Path) -> str:
    async with open_runtime(store=db, term_grace=1.0) as rt:
        job = await rt.spawn(_flow(pidfile), record="durable")
        await until_paused(job)
        assert _server_saw_the_secret(pidfile)  # step a's MCP server had the value
        await recorded(job)
        _assert_store_clean(db)
        await rt.drain(3600)
        assert (await job.wait()).state is JobState.INTERRUPTED
    pidfile.unlink()
    return job.id


async def _resume(db: Path, job_id: str):
    async with open_runtime(store=db, resume=True, term_grace=1.0) as rt:
        resumed = rt.get(job_id)
        assert resumed is not None
        await until_restarted(resumed)
        await resumed.resume({"ok": True})
        done = await resumed.wait()
        assert_no_leaks(rt)
    return done


async def test_a_resumed_job_gives_its_mcp_server_the_value_from_the_next_runtimes_environment(
        tmp_path, monkeypatch):
    db, pidfile = tmp_path / "s.db", tmp_path / "mcp.json"
    monkeypatch.delenv(NAME, raising=False)
    with trio.fail_after(BOUND):
        job_id = await _pause_then_drain(db, pidfile)
        monkeypatch.setenv(NAME, SECRET)
        done = await _resume(db, job_id)
    assert done.state is JobState.COMPLETED, done.error
    assert done.outputs["b"]["text"].endswith("started:files second")
    assert _server_saw_the_secret(pidfile)  # step b's MCP server, started by the next runtime
    _assert_store_clean(db)


async def test_a_resumed_job_without_the_mcp_variable_fails_naming_it(tmp_path, monkeypatch):
    db, pidfile = tmp_path / "s.db", tmp_path / "mcp.json"
    monkeypatch.delenv(NAME, raising=False)
    with trio.fail_after(BOUND):
        job_id = await _pause_then_drain(db, pidfile)
        done = await _resume(db, job_id)
    assert (done.state, done.reason) == (JobState.FAILED, "step_failed:b")
    assert f"secret {NAME} is not available to this runtime" in done.error and SECRET not in done.error
    assert not pidfile.exists()  # no agent, no MCP server started
    _assert_store_clean(db)
