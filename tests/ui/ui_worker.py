"""A worker for the browser tests: on the store given, one job paused at an escalation and one
agent job streaming tokens until it is cancelled (the fake agent behind two wrapper generations,
like ``npm exec`` -> node -> CLI).  Prints ``READY {json}`` (the job ids and the agent tree's
pids) once both are there, then serves until SIGTERM.

    python tests/ui/ui_worker.py STORE
"""

from __future__ import annotations

import json
import signal
import sys

import trio

from runtime import AgentSpec, ExitRule, Flow, JobPaused, Step, StepStream, open_runtime
from runtime.testing import marked_processes

AGENT = AgentSpec([sys.executable, "-m", "actors.fake_agent", "--slow", "--delay", "0.2", "--wrap", "2"],
                  env={"UI_SECRET_TOKEN": "sk-never-shown-0451"})


async def triage(ctx, inputs):
    return {"summary": f"ticket {inputs['ticket']} needs a human"}


async def apply_fix(ctx, inputs):
    return {"approved_by": inputs["approver"], "summary": inputs["summary"]}


APPROVAL = Flow("approval", [
    Step("triage", run=triage, inputs={"ticket": "$job.ticket"},
         exits=[ExitRule("ask", when="True", action="escalate")]),
    Step("apply", run=apply_fix, after=["triage"], inputs={"approver": "$resume.approver", "summary": "$triage.summary"}),
])
STREAMING = Flow("agent-stream", [
    Step("prepare", run=triage, inputs={"ticket": "$job.ticket"}),
    Step("write", agent=AGENT, prompt="work on {prepare.summary}", after=["prepare"]),
])


async def first(job, kind) -> None:
    async for event in job.events(replay=True):
        if isinstance(event, kind):
            return


async def main(store: str) -> None:
    with trio.open_signal_receiver(signal.SIGTERM) as signals:
        async with open_runtime(store=store, term_grace=0.5) as rt:
            paused = await rt.spawn(APPROVAL, {"ticket": 7}, record="durable")
            streaming = await rt.spawn(STREAMING, {"ticket": 8}, record="durable")
            await first(paused, JobPaused)
            await first(streaming, StepStream)
            pids = [p.pid for p in marked_processes(rt)]
            print("READY " + json.dumps({"paused": paused.id, "streaming": streaming.id, "agent_pids": pids,
                                         "runtime_id": rt.id}), flush=True)
            async for _ in signals:
                break


if __name__ == "__main__":
    trio.run(main, sys.argv[1])
