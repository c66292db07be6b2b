"""REAL-ADAPTER TESTS: corral drives the pinned npm ACP adapters (tests/agents/package.json) as
real processes, offline and with no credentials, and each job leaves no process behind.

- claude-agent-acp: initialize and session/new pass; the prompt fails "Authentication required",
  and the step's error names session/prompt, the JSON-RPC code and the agent.
- codex-acp: with ``auth=`` one of its authMethods and a dummy key it gets past session/new and
  the prompt fails offline (not for authentication); without ``auth`` the step fails listing the
  methods and how to pick one.
- tests/agents/sdk_agent.mjs (on @agentclientprotocol/sdk): streams text, asks permission, reads
  and writes a workspace file, and is cancelled mid-prompt.

They need ``npm ci --prefix tests/agents`` (CI runs it); without it they FAIL saying so.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import psutil
import pytest
import trio

from runtime import AgentSpec, Flow, JobState, Step, StepStream, open_runtime
from runtime.testing import assert_no_leaks, marked_processes

AGENTS = Path(__file__).resolve().parents[1] / "agents"
BIN = AGENTS / "node_modules" / ".bin"
NODE = shutil.which("node") or "node"
BOUND = 120  # seconds: a real adapter starting on a cold disk, still nothing may hang


def adapter(name: str) -> list[str]:
    path = BIN / name
    if not path.exists():
        pytest.fail(f"{path} is missing: run `npm ci --prefix tests/agents` first (the real-adapter tests need it)")
    return [NODE, str(path)]


def sdk_agent() -> list[str]:
    if not (AGENTS / "node_modules" / "@agentclientprotocol" / "sdk").exists():
        pytest.fail("@agentclientprotocol/sdk is missing: run `npm ci --prefix tests/agents` first")
    return [NODE, str(AGENTS / "sdk_agent.mjs")]


def offline_home(tmp_path: Path) -> dict[str, str]:
    """An empty home, so no login of the machine's user is found; root needs IS_SANDBOX for claude."""
    home = tmp_path / "home"
    (home / ".codex").mkdir(parents=True, exist_ok=True)
    env = {"HOME": str(home), "CODEX_HOME": str(home / ".codex"), "ANTHROPIC_API_KEY": "",
           "CLAUDE_CODE_OAUTH_TOKEN": ""}
    if os.geteuid() == 0:
        env["IS_SANDBOX"] = "1"
    return env


async def run_one(rt, step: Step, job_id: str | None = None):
    """Run a one-step job; return its result, its events and every pid its tree ever had."""
    seen: set[int] = set()
    async with trio.open_nursery() as nursery:
        job = await rt.spawn(Flow("real", [step]), job_id=job_id)
        events = job.events()

        async def watch() -> None:
            while True:
                seen.update(p.pid for p in marked_processes(rt))
                await trio.sleep(0.05)

        nursery.start_soon(watch)
        result = await job.wait()
        nursery.cancel_scope.cancel()
    return result, [e async for e in events], seen


def assert_tree_gone(rt, pids: set[int]) -> None:
    alive = [p for p in pids if psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE]
    assert alive == [], f"adapter processes outlived their job: {alive}"
    assert_no_leaks(rt)


async def test_claude_agent_acp_starts_and_its_prompt_fails_for_credentials(tmp_path):
    spec = AgentSpec(adapter("claude-agent-acp"), env=offline_home(tmp_path))
    async with open_runtime(term_grace=1.0, workspace=tmp_path / "ws") as rt:
        with trio.fail_after(BOUND):
            result, _, pids = await run_one(rt, Step("ask", agent=spec, prompt="hello"))
        assert result.state is JobState.FAILED and result.reason == "step_failed:ask", result
        error = result.error
        assert "session/prompt" in error and "-32000" in error, error
        assert "Authentication required" in error and "claude-agent-acp" in error, error
        assert "agent stderr" in error, error
        assert pids, "the adapter never ran"
        assert_tree_gone(rt, pids)


async def test_codex_acp_with_auth_gets_past_session_new_then_fails_offline(tmp_path):
    env = {**offline_home(tmp_path), "CODEX_API_KEY": "dummy"}
    spec = AgentSpec(adapter("codex-acp"), env=env, auth="codex-api-key", start_timeout=60)
    async with open_runtime(term_grace=1.0, workspace=tmp_path / "ws") as rt:
        with trio.fail_after(BOUND):
            result, _, pids = await run_one(rt, Step("ask", agent=spec, prompt="hello"))
        assert result.state is JobState.FAILED, result
        error = result.error
        assert "session/prompt" in error and "codex-acp" in error, error
        assert "Authentication required" not in error and "dummy" not in error, error
        assert pids
        assert_tree_gone(rt, pids)


async def test_codex_acp_without_auth_fails_naming_its_methods(tmp_path):
    spec = AgentSpec(adapter("codex-acp"), env=offline_home(tmp_path))
    async with open_runtime(term_grace=1.0, workspace=tmp_path / "ws") as rt:
        with trio.fail_after(BOUND):
            result, _, pids = await run_one(rt, Step("ask", agent=spec, prompt="hello"))
        assert result.state is JobState.FAILED, result
        error = result.error
        assert "session/new" in error and "-32000" in error and "Authentication required" in error, error
        for method in ("chatgpt", "codex-api-key", "openai-api-key"):
            assert repr(method) in error, error
        assert 'AgentSpec(auth="<id>")' in error and "auth: <id>" in error, error
        assert_tree_gone(rt, pids)


def _text(events) -> str:
    return "".join(e.update.delta.text for e in events
                   if isinstance(e, StepStream) and type(e.update).__name__ == "Delta")


async def test_sdk_agent_streams_asks_permission_and_uses_the_workspace(tmp_path):
    root = tmp_path / "ws"
    target = root / "job-fs" / "notes.txt"
    spec = AgentSpec(sdk_agent(), permissions="allow")
    prompt = f"[[permission]] [[fs:{target}]] one two three four five six"
    async with open_runtime(term_grace=1.0, workspace=root) as rt:
        with trio.fail_after(BOUND):
            result, events, pids = await run_one(rt, Step("a", agent=spec, prompt=prompt), job_id="job-fs")
        assert result.state is JobState.COMPLETED, result
        text = result.outputs["a"]["text"]
        assert text == "permission:yes read:written by sdk_agent.mjs one two three four five six", text
        assert _text(events) == text
        assert target.read_text() == "written by sdk_agent.mjs"
        assert_tree_gone(rt, pids)


async def test_sdk_agent_is_cancelled_mid_prompt(tmp_path):
    spec = AgentSpec(sdk_agent())
    async with open_runtime(term_grace=1.0, workspace=tmp_path / "ws") as rt:
        with trio.fail_after(BOUND):
            job = await rt.spawn(Flow("hang", [Step("a", agent=spec, prompt="[[hang]]")]))
            events = job.events()
            async for event in events:  # the agent is mid-prompt once it said "waiting"
                if isinstance(event, StepStream) and type(event.update).__name__ == "Delta":
                    break
            pids = {p.pid for p in marked_processes(rt)}
            assert pids
            await job.cancel()
            result = await job.wait()
        assert result.state is JobState.CANCELLED, result
        assert_tree_gone(rt, pids)
