"""An agent step's terminals at the runtime level: with ``AgentSpec(terminals=True)`` the agent
runs a command in the job's workspace and gets its output and exit code; bad terminal requests and
terminals that are off (the default) get JSON-RPC errors, and the job still completes with nothing
left behind.  The agent is tests/agents/sdk_agent.mjs (official ACP SDK)."""

from __future__ import annotations

import re

import trio
from test_terminals_die_with_their_job import BOUND, spec

from runtime import AgentSpec, Flow, JobState, Step, open_runtime
from runtime.testing import assert_no_leaks


async def run(tmp_path, agent: AgentSpec, prompt: str) -> str:
    async with open_runtime(term_grace=0.5, workspace=tmp_path / "ws") as rt:
        with trio.fail_after(BOUND):
            job = await rt.spawn(Flow("terms", [Step("t", agent=agent, prompt=prompt)]), job_id="job-t")
            result = await job.wait()
        assert result.state is JobState.COMPLETED, result
        assert rt.stats().process_groups == 0
        assert_no_leaks(rt)
    return str(result.outputs["t"]["text"])


async def test_an_agent_runs_a_terminal_in_its_jobs_workspace_and_bad_requests_are_refused(tmp_path):
    text = await run(tmp_path, spec(), "[[caps]] [[term:pwd; exit 7]] [[termbad:outside]] [[termbad:unknown]] done")
    assert "terminal-cap:true" in text and "term-exit:7:null" in text, text
    assert f'term-output:"{(tmp_path / "ws" / "job-t").resolve()}\\n"' in text, text
    assert dict(re.findall(r"termbad:(\w+):(-?\d+):", text)) == {"outside": "-32602", "unknown": "-32002"}
    assert text.endswith("done")


async def test_terminals_are_off_unless_the_spec_asks(tmp_path):
    off = AgentSpec(spec().command)
    assert off.terminals is False
    text = await run(tmp_path, off, "[[caps]] [[term:echo hi]] done")
    assert "terminal-cap:false" in text and "term-error:-32601:" in text and text.endswith("done"), text
