"""Embedding corral in a Python program: build a flow, run jobs, stream and replay their events.

Run it from the repository root::

    python -m examples.embed [STORE]

It runs two jobs of a triage -> fix flow (a python step, then an agent step driving the bundled
fake ACP agent) with durable recording in a SQLite store (a temporary one unless STORE is given):
the first completes, the second is abandoned by the ``wontfix`` exit rule, and the agent's
process tree is gone with it.  Then it replays the first job's events from the store.
"""

from __future__ import annotations

import logging
import sys
import tempfile
from pathlib import Path
from typing import Any

import structlog
import trio

from runtime import AgentSpec, ExitRule, Flow, JobState, OnError, Step, StepStream, open_runtime
from runtime.testing import assert_no_leaks


async def triage(ctx: Any, inputs: dict[str, Any]) -> dict[str, Any]:
    """A python step: ``ctx`` is the step's context, ``inputs`` its resolved inputs."""
    ctx.log.info("triaging", ticket=inputs["ticket"])
    await trio.sleep(0.01)
    wontfix = "typo" in inputs["title"]
    return {"severity": 0 if wontfix else 2, "summary": f"#{inputs['ticket']} {inputs['title']}"}


AGENT = AgentSpec([sys.executable, "-m", "actors.fake_agent", "--wrap", "2", "--delay", "0.002"])

FLOW = Flow("triage-fix", [
    Step("triage", run=triage, inputs={"ticket": "$job.ticket", "title": "$job.title"},
         exits=[ExitRule("wontfix", when="outputs.severity == 0", action="abandon")]),
    Step("fix", agent=AGENT, prompt="Write a patch for {triage.summary}",
         on_error=OnError("retry", max_attempts=2, backoff=0.1), timeout=60),
])


async def main(store: Path) -> int:
    async with open_runtime(store=store, max_running_jobs=10) as rt:
        first = await rt.spawn(FLOW, {"ticket": 7, "title": "search is slow"}, record="durable")
        second = await rt.spawn(FLOW, {"ticket": 8, "title": "typo in the footer"}, record="durable")

        # live events: stream updates carry the agent's tokens as they arrive
        async for event in first.events():
            if isinstance(event, StepStream):
                continue
            print(f"  {event.type:<15} {getattr(event, 'step', '')}")
        done = await first.wait()  # returns once the job's nursery has closed: processes reaped
        print(f"{done.job_id[:8]} {done.state.value}: {done.outputs['fix']['text']!r}")

        abandoned = await second.wait()
        print(f"{abandoned.job_id[:8]} {abandoned.state.value}: reason {abandoned.reason!r}")

        assert_no_leaks(rt)  # no live job, task, process, stream or recorder is left

        # replay the first job from the store
        replayed = [event.type async for event in rt.events(done.job_id)]
        print(f"replayed {len(replayed)} events of {done.job_id[:8]} from {store}")

    ok = done.state is JobState.COMPLETED and abandoned.state is JobState.ABANDONED
    return 0 if ok else 1


if __name__ == "__main__":
    # corral logs through structlog and never configures it: the application decides (here:
    # warnings and errors only, to stderr)
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING),
                        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr))
    if len(sys.argv) > 1:
        sys.exit(trio.run(main, Path(sys.argv[1])))
    with tempfile.TemporaryDirectory() as tmp:
        sys.exit(trio.run(main, Path(tmp) / "corral.db"))
