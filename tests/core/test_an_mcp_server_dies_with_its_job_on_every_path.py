"""A stdio MCP server the agent starts (its child, in the agent's process group) is gone when its
job is abandoned by an exit rule, when the agent step times out, and when the runtime itself is
SIGKILLed -- the same leak checks as for the adapter (completion and cancel are in
test_agent_updates_modes_and_mcp_servers_reach_the_job.py).  The server (tests/agents/mcp_server.py)
ignores its stdin closing: only the teardown of the agent's tree ends it."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest
import trio
from child_runtime import child_runtime, sigkill
from test_agent_updates_modes_and_mcp_servers_reach_the_job import (
    BOUND,
    deltas,
    mcp_spec,
    started_server,
)

from runtime import ExitRule, Flow, JobState, Step, open_runtime
from runtime.testing import assert_no_leaks, wait_exited

GATES: dict[str, trio.Event] = {}


async def judge(ctx, inputs):
    await GATES["server_up"].wait()
    return {"verdict": "drop"}


async def _server_pid(job, pidfile: Path) -> int:
    async for event in job.events():  # "waiting": the server is up and the agent hangs
        if any("waiting" in d.text for d in deltas([event], "TextDelta")):
            return started_server(pidfile)
    raise AssertionError(f"the agent never got to wait: {job.result}")


@pytest.mark.parametrize("ending", ["abandon", "step timeout"])
async def test_the_mcp_server_dies_when_the_job_is_abandoned_or_its_step_times_out(tmp_path, ending):
    spec, pidfile = mcp_spec(tmp_path)
    GATES["server_up"] = trio.Event()
    agent = Step("a", agent=spec, prompt="[[mcp]] [[hang]]", timeout=8.0 if ending == "step timeout" else None)
    steps = [agent] if ending == "step timeout" else [
        agent, Step("judge", run=judge, exits=[ExitRule("drop", when="outputs.verdict == 'drop'", action="abandon")])]
    async with open_runtime(term_grace=1.0, workspace=tmp_path / "ws") as rt:
        with trio.fail_after(BOUND):
            job = await rt.spawn(Flow("mcp", steps))
            pid = await _server_pid(job, pidfile)
            GATES["server_up"].set()
            result = await job.wait()
            expected = JobState.ABANDONED if ending == "abandon" else JobState.FAILED
            assert result.state is expected, result
            await wait_exited([pid])
        assert_no_leaks(rt)


CRASHING_RUNTIME = textwrap.dedent("""
    import json, shutil, sys, trio
    from pathlib import Path
    sys.path.insert(0, sys.argv[3])
    from test_agent_updates_modes_and_mcp_servers_reach_the_job import deltas, mcp_spec, started_server
    from runtime import Flow, Step, open_runtime

    async def main():
        spec, pidfile = mcp_spec(Path(sys.argv[1]))
        async with open_runtime(workspace=sys.argv[2]) as rt:
            job = await rt.spawn(Flow("mcp", [Step("a", agent=spec, prompt="[[mcp]] [[hang]]")]))
            async for event in job.events():
                if any("waiting" in d.text for d in deltas([event], "TextDelta")):
                    break
            print(json.dumps({"server": started_server(pidfile)}), flush=True)
            await trio.sleep_forever()

    trio.run(main)
""")


async def test_the_mcp_server_dies_when_the_runtime_is_sigkilled(tmp_path):
    argv = [sys.executable, "-c", CRASHING_RUNTIME, str(tmp_path), str(tmp_path / "ws"), str(Path(__file__).parent)]
    async with child_runtime(argv) as (proc, info):
        await sigkill(proc)
        with trio.fail_after(BOUND):
            await wait_exited([info["server"]])  # the keeper at the head of the agent's group took it down
