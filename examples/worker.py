"""A long-lived worker, as a deploy runs it: it carries on what the last worker left, takes new
jobs, lets others steer them by id, and drains on SIGTERM.

Run it from the repository root::

    python -m examples.worker STORE [--spawn N] [--grace SECONDS]

It opens a runtime on STORE with ``resume=True``: durable jobs of a worker that died or drained are
taken over where they stopped (a PAUSED one stays paused, waiting for its human).  Then it spawns
N release-note jobs (``draft`` -> an escalation -> ``publish``) and prints ``job <id>`` for each
job it holds, then ``ready``; at the end ``job <id> <state> [reason]`` for each.  Approve one from
another shell::

    corral resume JOB --payload '{"approved": true}' --store STORE

SIGTERM (what a deploy sends) drains the runtime: no new step starts, running steps get
``--grace`` seconds, then every job is let go -- stored paused or interrupted, with its
checkpoints -- for the next worker; exit status 143.  Ctrl-C cancels the jobs (130).  Once every
job has ended, the worker exits 0 if they all completed.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from pathlib import Path

import structlog
import trio

from examples.steps import draft, publish
from runtime import ExitRule, Flow, JobHandle, JobState, Step, open_runtime

RELEASE_NOTE = Flow("release-note", [
    Step("draft", run=draft, inputs={"version": "$job.version"},
         exits=[ExitRule("needs_approval", action="escalate")]),
    Step("publish", run=publish, after=["draft"],
         inputs={"note": "$draft.note", "approved": "$resume.approved"}),
])


async def serve(store: Path, spawn: int, grace: float) -> int:
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async with open_runtime(store=store, resume=True) as rt:
            jobs: list[JobHandle] = rt.jobs()  # taken over from a worker that is gone
            for i in range(spawn):
                jobs.append(await rt.spawn(RELEASE_NOTE, {"version": f"1.{i}"}, record="durable"))
            for job in jobs:
                print(f"job {job.id}", flush=True)
            print("ready", flush=True)

            async with trio.open_nursery() as nursery:

                async def stop_on_signal() -> None:
                    async for signum in signals:
                        if signum == signal.SIGTERM:
                            await rt.drain(grace)  # every job let go, resumable by the next worker
                        else:
                            for job in rt.jobs():
                                await job.cancel("interrupted")
                        return

                nursery.start_soon(stop_on_signal)
                results = [await job.wait() for job in jobs]
                nursery.cancel_scope.cancel()
        for result in results:
            print(f"job {result.job_id} {result.state.value} {result.reason or ''}".rstrip(), flush=True)
    if any(r.state is JobState.INTERRUPTED for r in results):
        return 143
    if any(r.state is JobState.CANCELLED for r in results):
        return 130
    return 0 if all(r.state is JobState.COMPLETED for r in results) else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("store", type=Path)
    parser.add_argument("--spawn", type=int, default=1, help="new jobs to spawn (default 1)")
    parser.add_argument("--grace", type=float, default=10.0, help="seconds of drain grace on SIGTERM")
    args = parser.parse_args()
    # corral never configures logging: the application decides (warnings and errors, to stderr)
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING),
                        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr))
    return trio.run(serve, args.store, args.spawn, args.grace)


if __name__ == "__main__":
    sys.exit(main())
