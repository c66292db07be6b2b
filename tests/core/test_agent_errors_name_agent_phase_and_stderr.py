"""An agent step that fails says what failed: the agent's command, the ACP phase, the JSON-RPC code,
message and data, and the last lines of the agent's stderr.  ``auth`` authenticates before
session/new; "Authentication required" without it lists the agent's authMethods and how to pick
one; ``start_timeout`` (the spec's, else ``open_runtime(agent_start_timeout=...)``) bounds the start
and, for npx, suggests the package may be downloading.  Real subprocesses, a real clock."""

from __future__ import annotations

import sys
import textwrap

import trio

from runtime import AgentSpec, Flow, JobState, Step, open_runtime
from runtime.testing import assert_no_leaks

BOUND = 30

# A minimal ACP agent: initialize advertises two authMethods; session/new needs authenticate first;
# session/prompt fails with error data.  It logs each request to stderr.
AGENT = textwrap.dedent("""\
    import json, sys
    authed = False
    for line in sys.stdin:
        msg = json.loads(line)
        method, mid = msg.get("method"), msg.get("id")
        print("agent got", method, file=sys.stderr, flush=True)
        if mid is None:
            continue
        if method == "initialize":
            reply = {"result": {"protocolVersion": 1, "authMethods": [
                {"id": "key", "name": "Use KEY"}, {"id": "login", "name": "Log in"}]}}
        elif method == "authenticate":
            authed = msg["params"] == {"methodId": "key"}
            reply = {"result": {}}
        elif method == "session/new" and not authed:
            reply = {"error": {"code": -32000, "message": "Authentication required"}}
        elif method == "session/new":
            reply = {"result": {"sessionId": "s1"}}
        else:
            reply = {"error": {"code": -32603, "message": "Internal error",
                               "data": {"why": "x" * 2000}}}
        print(json.dumps({"jsonrpc": "2.0", "id": mid, **reply}), flush=True)
""")
SILENT = "import sys, time\nprint('booting slowly', file=sys.stderr, flush=True)\ntime.sleep(60)\n"


async def _fail(spec: AgentSpec, **runtime_kw) -> str:
    async with open_runtime(term_grace=0.5, **runtime_kw) as rt:
        with trio.fail_after(BOUND):
            job = await rt.spawn(Flow("f", [Step("a", agent=spec, prompt="hi")]))
            result = await job.wait()
        assert result.state is JobState.FAILED and result.reason == "step_failed:a", result
        assert_no_leaks(rt)
        assert result.error is not None
        return result.error


async def test_auth_required_lists_the_methods_and_how_to_pick_one(tmp_path):
    script = tmp_path / "agent.py"
    script.write_text(AGENT)
    error = await _fail(AgentSpec([sys.executable, str(script)], env={"SECRET_KEY": "s3cr3t-value"}))
    assert "session/new" in error and "JSON-RPC error -32000: Authentication required" in error, error
    assert "'key' (Use KEY)" in error and "'login' (Log in)" in error, error
    assert 'AgentSpec(auth="<id>")' in error and "auth: <id>" in error, error
    assert "agent got session/new" in error and str(script) in error, error
    assert "s3cr3t-value" not in error


async def test_auth_authenticates_first_and_a_prompt_error_names_phase_code_and_data(tmp_path):
    script = tmp_path / "agent.py"
    script.write_text(AGENT)
    error = await _fail(AgentSpec([sys.executable, str(script)], auth="key"))
    assert "session/prompt" in error and "JSON-RPC error -32603: Internal error" in error, error
    assert 'error data: {"why": "xxx' in error and "(truncated)" in error and len(error) < 3000, error
    assert "agent got authenticate" in error and "agent got session/prompt" in error, error


async def test_a_silent_agent_times_out_naming_what_was_awaited(tmp_path):
    script = tmp_path / "silent.py"
    script.write_text(SILENT)
    error = await _fail(AgentSpec([sys.executable, str(script)], start_timeout=0.5))
    assert "initialize" in error and "start_timeout=0.5s" in error and "booting slowly" in error, error
    assert "npx" not in error


async def test_the_runtime_default_start_timeout_and_the_npx_hint(tmp_path):
    npx = tmp_path / "bin" / "npx"
    npx.parent.mkdir()
    npx.write_text(f"#!{sys.executable}\n{SILENT}")
    npx.chmod(0o755)
    error = await _fail(AgentSpec([str(npx), "some-acp-adapter"]), agent_start_timeout=0.5)
    assert "start_timeout=0.5s" in error and "initialize" in error, error
    assert "first run may be downloading" in error and "npm install" in error, error
