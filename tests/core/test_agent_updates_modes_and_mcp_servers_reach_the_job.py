"""An agent on the official ACP SDK (tests/agents/sdk_agent.mjs) run by corral as a real process:

- every kind of ``session/update`` it sends reaches the job -- message, thought and tool deltas
  (wrapped tool text and a diff unwrapped) in the stream, plan, commands, mode, usage and tool
  status as ``AgentUpdate`` events (recorded in the store) -- while an unknown kind and a
  malformed update are ignored and the job completes;
- ``AgentSpec(mode=...)`` reaches the agent with ``session/set_mode``; a mode it does not
  advertise fails the step naming it and the agent's modes;
- ``AgentSpec(mcp_servers=...)`` reaches the agent in ``session/new``; the stdio server it starts
  is its child and dies with its tree when the job completes or is cancelled; the server's env
  value reaches the server and never the SQLite file, the events, the logs or ``repr``.

They need ``npm ci --prefix tests/agents`` (CI runs it); without it they FAIL saying so.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import sys
from pathlib import Path

import pytest
import trio

from actors.stream import Delta
from runtime import (
    AgentSpec,
    AgentUpdate,
    Flow,
    JobState,
    McpServer,
    Step,
    StepStream,
    event_to_dict,
    open_runtime,
)
from runtime.testing import assert_no_leaks, wait_exited

AGENTS = Path(__file__).resolve().parents[1] / "agents"
NODE = shutil.which("node") or "node"
BOUND = 60
SECRET = "mcp-SECRET-value-7781"


def sdk_agent() -> list[str]:
    if not (AGENTS / "node_modules" / "@agentclientprotocol" / "sdk").exists():
        pytest.fail("@agentclientprotocol/sdk is missing: run `npm ci --prefix tests/agents` first")
    return [NODE, str(AGENTS / "sdk_agent.mjs")]


async def run(rt, spec: AgentSpec, prompt: str, **spawn):
    job = await rt.spawn(Flow("sdk", [Step("a", agent=spec, prompt=prompt)]), **spawn)
    events = job.events()
    result = await job.wait()
    return result, [e async for e in events]


def deltas(events, channel: str) -> list:
    return [e.update.delta for e in events if isinstance(e, StepStream) and isinstance(e.update, Delta)
            and type(e.update.delta).__name__ == channel]


async def test_every_update_kind_reaches_the_stream_or_an_agent_update_event(tmp_path):
    db = tmp_path / "s.db"
    async with open_runtime(term_grace=1.0, workspace=tmp_path / "ws", store=db) as rt:
        with trio.fail_after(BOUND):
            result, events = await run(rt, AgentSpec(sdk_agent()), "[[updates]] done now", record="durable")
        assert result.state is JobState.COMPLETED, result.error
        # the image block is a placeholder, never its data; the replayed user message, the unknown
        # kind and the malformed update vanish
        assert result.outputs["a"]["text"] == "[image image/png]done now"
        assert [d.chunk for d in deltas(events, "ReasoningContentDelta")] == ["thinking it over"]
        tool = "".join(d.chunk for d in deltas(events, "ToolResponseDelta"))
        assert tool.startswith("notes: all good"), tool  # {type: content, content: {text}} unwrapped
        assert ("--- /ws/notes.txt\n+++ /ws/notes.txt\n@@ -1 +1 @@\n-old line\n+new line") in tool, tool
        updates = [(e.kind, e.data) for e in events if isinstance(e, AgentUpdate)]
        kinds = [k for k, _ in updates]
        assert kinds == ["plan", "tool_call", "tool_call_update", "available_commands_update",
                         "current_mode_update", "usage_update", "config_option_update", "session_info_update",
                         "notice", "compaction_update", "compaction_summary_chunk"], kinds
        data = dict(updates)
        assert [e["content"] for e in data["plan"]["entries"]] == ["read the notes", "write the fix"]
        assert data["plan"]["entries"][0] == {"content": "read the notes", "priority": "high",
                                              "status": "completed"}
        assert data["tool_call"] == {"toolCallId": "t1", "title": "read notes", "kind": "read",
                                     "status": "in_progress"}
        assert data["tool_call_update"] == {"toolCallId": "t1", "status": "completed"}
        assert [c["name"] for c in data["available_commands_update"]["availableCommands"]] == ["plan", "test"]
        assert data["current_mode_update"] == {"currentModeId": "code"}
        assert data["usage_update"] == {"used": 1200, "size": 200000, "cost": {"amount": 0.25, "currency": "USD"}}
        assert data["config_option_update"]["configOptions"][0]["currentValue"] == "fast"
        assert data["session_info_update"] == {"title": "Fixing the notes"}
        assert data["notice"] == {"severity": "warning", "title": "rate limit near"}
        assert data["compaction_update"] == {"compactionId": "c1", "status": "completed"}
        assert data["compaction_summary_chunk"] == {"compactionId": "c1", "content": "summary so far"}
        stored = [row for row in await rt.store.read_events(result.job_id) if row.type == "agent_update"]
        assert [row.payload["kind"] for row in stored] == kinds
        assert stored[0].payload["data"] == data["plan"]
        assert_no_leaks(rt)


async def test_a_mode_is_set_in_the_session_and_an_unknown_one_names_the_modes(tmp_path):
    async with open_runtime(term_grace=1.0, workspace=tmp_path / "ws") as rt:
        with trio.fail_after(BOUND):
            result, _ = await run(rt, AgentSpec(sdk_agent(), mode="code"), "hello there")
            assert result.state is JobState.COMPLETED, result.error
            assert result.outputs["a"]["text"] == "mode:code hello there"
            result, _ = await run(rt, AgentSpec(sdk_agent(), mode="yolo"), "hello there")
        assert result.state is JobState.FAILED and result.reason == "step_failed:a", result
        assert "session/set_mode" in result.error and "mode 'yolo'" in result.error, result.error
        assert "'ask', 'code'" in result.error, result.error
        assert_no_leaks(rt)


def mcp_spec(tmp_path: Path) -> tuple[AgentSpec, Path]:
    pidfile = tmp_path / "mcp.json"
    server = McpServer("files", sys.executable, [str(AGENTS / "mcp_server.py"), str(pidfile), "MCP_TOKEN"],
                       env={"MCP_TOKEN": SECRET})
    return AgentSpec(sdk_agent(), mcp_servers=[server]), pidfile


def assert_secret_kept(db: Path, events) -> None:
    assert db.exists() and events
    for path in (db, db.with_name(db.name + "-wal")):
        if path.exists():
            assert SECRET.encode() not in path.read_bytes(), path
    assert SECRET not in json.dumps([event_to_dict(e) for e in events])


def started_server(pidfile: Path) -> int:
    info = json.loads(pidfile.read_text())
    assert info["sha256"] == hashlib.sha256(SECRET.encode()).hexdigest()  # its env reached it
    return int(info["pid"])


async def test_a_stdio_mcp_server_gets_its_env_and_dies_with_the_agent_when_the_job_completes(tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    spec, pidfile = mcp_spec(tmp_path)
    db = tmp_path / "s.db"
    async with open_runtime(term_grace=1.0, workspace=tmp_path / "ws", store=db) as rt:
        with trio.fail_after(BOUND):
            result, events = await run(rt, spec, "[[mcp]] ok", record="durable")
            assert result.state is JobState.COMPLETED, result.error
            text = result.outputs["a"]["text"]
            assert text == f"mcp:files:{sys.executable}:3:MCP_TOKEN started:files ok", text
            pid = started_server(pidfile)
            await wait_exited([pid])
        assert_no_leaks(rt)
    assert_secret_kept(db, events)
    assert caplog.records, "nothing was logged: the capture saw nothing"
    assert SECRET not in caplog.text and SECRET not in "".join(str(r.__dict__) for r in caplog.records)
    assert SECRET not in repr(spec)


async def test_a_stdio_mcp_server_dies_with_the_agent_when_the_job_is_cancelled(tmp_path):
    spec, pidfile = mcp_spec(tmp_path)
    db = tmp_path / "s.db"
    async with open_runtime(term_grace=1.0, workspace=tmp_path / "ws", store=db) as rt:
        with trio.fail_after(BOUND):
            job = await rt.spawn(Flow("sdk", [Step("a", agent=spec, prompt="[[mcp]] [[hang]]")]),
                                 record="durable")
            events = job.events()
            seen = []
            async for event in events:  # "waiting": the server is up and the agent hangs
                seen.append(event)
                if any("waiting" in d.text for d in deltas([event], "TextDelta")):
                    break
            pid = started_server(pidfile)
            await job.cancel()
            result = await job.wait()
            seen += [e async for e in events]
            assert result.state is JobState.CANCELLED, result
            await wait_exited([pid])
        assert_no_leaks(rt)
    assert_secret_kept(db, seen)
