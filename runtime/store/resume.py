"""Resume: where a dead runtime's durable job stood, read back from its log and checkpoints."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs

from ..flow import Flow
from ..flow.codec import flow_from_dict
from .protocol import Store
from .records import LIVE_STATES, EventRow, JobRecord

__all__ = ["Restored", "restore", "resumable"]


@attrs.frozen
class Restored:
    """What a resumed job starts from."""

    outputs: Mapping[str, Mapping[str, Any]]
    iterations: Mapping[str, int]
    first_seq: int
    paused: bool
    resume_payload: Any
    created_at: float
    loops: Mapping[tuple[str, str], int] = attrs.field(factory=dict)  # (step, rule) -> loops taken
    abandoned: str | None = None  # an abandon rule that fired before the crash: the job ends so
    resumed: bool = False  # resumed at least once before the crash: steps reading $resume may run
    deadline: float | None = None  # the flow timeout's wall-clock deadline, from the first start
    paused_on: tuple[str, str] | None = None  # (step, rule) of the pause it was left in
    pause_deadline: float | None = None  # that pause's wall-clock deadline (an escalate rule's timeout)
    #: (step, iteration) -> the ACP session its agent turn last ran in, for each step to run again
    sessions: Mapping[tuple[str, int], str] = attrs.field(factory=dict)


async def resumable(store: Store, live_runtimes: set[str]) -> list[JobRecord]:
    """Durable jobs left RUNNING/PAUSED/PENDING (or found INTERRUPTED) by runtimes that are gone."""
    out = []
    for rec in await store.list_jobs(states=LIVE_STATES):
        if rec.record == "durable" and rec.runtime_id not in live_runtimes:
            out.append(rec)
    return list(reversed(out))  # oldest first


async def restore(store: Store, rec: JobRecord) -> tuple[Flow, Restored]:
    """Where a dead runtime's durable job stood, from its event log and checkpoints.

    The log is written in seq order, so after a crash the store holds a prefix of it; replaying
    that prefix gives the step states.  A step counts as completed once its exit was resolved
    (its checkpoint is written before that); a loop resets the steps it re-runs, whose older
    checkpoints are then stale.  Outputs come from the checkpoints; agent sessions from the events.  The last pause's step, rule
    and deadline are kept until a resume (an escalate rule's timeout, re-armed by the job).
    """
    flow = flow_from_dict(rec.flow)
    checkpoints = await store.get_checkpoints(rec.job_id)
    events = await store.read_events(rec.job_id)
    first_seq = (events[-1].seq + 1) if events else rec.next_seq
    completed: dict[str, int] = {}  # step -> the iteration it completed
    resolving: dict[str, int] = {}  # completed, exit not yet resolved
    iterations: dict[str, int] = {}
    loops: dict[tuple[str, str], int] = {}
    paused, payload, abandoned = rec.state == "paused", rec.resume_payload, None
    resumed, deadline = False, None
    paused_on: tuple[str, str] | None = None
    pause_deadline: float | None = None
    for row in events:
        data = row.payload
        if row.type == "job_started":
            if deadline is None:
                deadline = data.get("deadline")
        elif row.type == "step_completed":
            resolving[data["step"]] = data["iteration"]
        elif row.type == "exit_resolved" and data["step"] in resolving:
            step = data["step"]
            completed[step] = iterations[step] = resolving.pop(step)
            if data["action"] == "loop":
                rule = next(r for r in flow.step(step).exits if r.name == data["rule"])
                assert rule.target is not None
                loops[step, rule.name] = loops.get((step, rule.name), 0) + 1
                for name in flow.loop_span(step, rule.target):
                    completed.pop(name, None)
                    iterations[name] = iterations.get(name, 0) + 1
            elif data["action"] == "abandon":
                abandoned = data["rule"]
            elif data["action"] == "escalate":
                paused = True  # its JobPaused event follows; the job waits for resume()
                # were it lost in the crash, the rule's deadline counts from this event
                rule = next(r for r in flow.step(step).exits if r.name == data["rule"])
                paused_on = step, rule.name
                pause_deadline = None if rule.timeout is None else row.ts + rule.timeout
        elif row.type == "job_paused":
            paused, paused_on, pause_deadline = True, (data["step"], data["rule"]), data.get("deadline")
        elif row.type == "job_resumed":
            paused, payload, resumed = False, data.get("payload"), True
            paused_on = pause_deadline = None
    outputs = {name: cp.outputs for name, cp in checkpoints.items()
               if completed.get(name) == cp.iteration and name in flow.deps}
    restored = Restored(
        outputs=outputs, iterations=iterations, loops=loops, abandoned=abandoned,
        first_seq=first_seq, paused=paused, resume_payload=payload, created_at=rec.created_at,
        resumed=resumed, deadline=deadline, paused_on=paused_on, pause_deadline=pause_deadline,
        sessions=_open_sessions(events, completed),
    )
    return flow, restored


def _open_sessions(events: list[EventRow], completed: Mapping[str, int]) -> dict[tuple[str, int], str]:
    """The last ACP session of each agent step's iteration that did not complete (to re-attach to)."""
    sessions = {(row.payload["step"], row.payload.get("iteration", 0)): row.payload["session_id"]
                for row in events if row.type == "agent_session"}
    return {key: sid for key, sid in sessions.items() if completed.get(key[0]) != key[1]}
