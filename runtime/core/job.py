"""The job actor: one nursery, one state machine, one terminal transition.

A :class:`Job` owns a trio nursery.  Its steps, the tasks and actors they start, their processes,
streams and recorder all run inside it.  Every way a job ends — complete, fail, abandon, cancel,
timeout, shutdown — goes through :meth:`Job._finish`, which records the outcome once and cancels
the nursery.  Teardown is whatever the nursery's children do when cancelled; when the nursery has
closed, :class:`~runtime.events.JobFinished` is published and waiters wake.

Messages (a step's result, cancel, abandon, resume) are applied one at a time and synchronously by
whoever delivers them -- trio runs one task at a time, so that is the actor's serialisation without
a mailbox hop -- while the job's own task parks until the exit.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Mapping
from typing import Any

import trio

from actors._groups import split_cancelled
from actors.actor import ActorStopped
from actors.log import get_logger

from ..flow import ExpressionError, Flow, InputRef
from ..store import Restored
from . import pauses
from .context import StepContext
from .events import (
    ExitResolved,
    JobPaused,
    JobResumed,
    JobStarted,
    StepCancelled,
    StepCompleted,
    StepFailed,
    StepStarted,
)
from .executors import execute
from .jobrecord import job_record
from .messages import Abandon, Cancel, Control, Message, Resume, StepDone, StepError
from .recording import Recording, RecordMode
from .resources import JobResources
from .services import JobServices
from .states import JobResult, JobState, JobStateError, describe_error
from .steps import StepRun, StepTable

__all__ = ["Job"]

_log = get_logger("corral.job")


class Job:
    """The job actor.  Users hold a :class:`~runtime.core.handle.JobHandle`, never the job.

    It reaches its runtime only through ``services`` (:class:`JobServices`); what its nursery
    holds is counted in ``resources``; how it records is its ``recording`` strategy.
    """

    __slots__ = (  # one per live job: no instance dict (~1.5 kB a job less)
        "_done", "_draining", "_early", "_outcome", "_parked", "_pause_timer", "_ready", "_resumed", "_started_at", "_steps",
        "created_at", "deadline", "flow", "hub", "id", "inputs", "recording", "resources", "restored", "result",
        "resume_payload", "services", "state", "task",
    )

    def __init__(self, services: JobServices, flow: Flow, inputs: Mapping[str, Any], job_id: str,
                 *, recording: type[Recording] = Recording, restored: Restored | None = None) -> None:
        self.services = services
        self.id = job_id
        self.flow = flow
        self.inputs = dict(inputs)
        self.recording: Recording = services.recording(recording, job_id, self.fail_on_store_error)
        self.resources = JobResources(job_id, services, restored.sessions if restored else None)
        self.state = JobState.PENDING
        self.hub = services.hub(job_id, flow.name, restored.first_seq if restored else 0)
        self.resume_payload: Any = restored.resume_payload if restored else None
        self._resumed = restored.resumed if restored else False
        # the flow timeout is a wall-clock deadline recorded with the job: a resumed job gets the
        # time it had left, not a fresh timeout
        self.deadline: float | None = None
        if restored is not None and restored.deadline is not None:
            self.deadline = restored.deadline
        elif flow.timeout is not None:
            self.deadline = time.time() + flow.timeout
        self.restored = restored
        self.created_at = restored.created_at if restored else time.time()
        self.result: JobResult | None = None
        self.task: trio.lowlevel.Task | None = None
        self._done = trio.Event()
        self._outcome: tuple[JobState, str | None, str | None] | None = None
        self._steps = StepTable(flow, restored)
        self._started_at: float | None = None
        self._parked = False  # the job task waits in _serve_steps for _finish to wake it
        self._ready = False  # set once started: control messages before that wait in _early
        self._early: list[Control] | None = None
        self._pause_timer: trio.CancelScope | None = None  # an escalation's deadline (pauses.py)
        self._draining: str | None = None  # see drain(): no step starts; the job ends INTERRUPTED

    @property
    def record(self) -> RecordMode:
        """The recording mode: ``off``, ``memory`` or ``durable``."""
        return self.recording.mode

    def resolve_ref(self, ref: InputRef) -> Any:
        """The value an input reference reads now."""
        return self._steps.resolve_ref(ref, self.inputs, self.resume_payload)

    async def run(self, *, task_status: trio.TaskStatus[Job] = trio.TASK_STATUS_IGNORED) -> None:
        self.task = trio.lowlevel.current_task()
        self._started_at = time.time()
        try:
            async with trio.open_nursery() as nursery:
                self.resources.running_in = nursery
                if self.deadline is None:
                    await self._serve_steps(task_status)
                else:
                    # a fresh job gets exactly flow.timeout on trio's clock; a resumed one what is left
                    left = self.flow.timeout if self.restored is None else self.deadline - time.time()
                    with trio.move_on_after(max(0.0, left or 0.0)) as timeout_scope:
                        await self._serve_steps(task_status)
                    if timeout_scope.cancelled_caught:
                        self._finish(JobState.FAILED, "timeout", f"flow timeout after {self.flow.timeout}s")
                if nursery.child_tasks:  # the one exit: whatever is left dies with the nursery
                    nursery.cancel_scope.cancel()
        except BaseException as exc:
            cancelled, errors = split_cancelled(exc)
            if errors is not None:
                _log.error("job_crashed", job_id=self.id, error=repr(errors))
                self._finish(JobState.FAILED, "crashed", repr(errors.exceptions[0]))
            if cancelled is not None:
                self._finish(JobState.CANCELLED, "shutdown")
                raise cancelled from None
        finally:
            self.resources.running_in = None
            await self._finalize()

    async def _serve_steps(self, task_status: trio.TaskStatus[Job]) -> None:
        paused = self.restored is not None and self.restored.paused  # taken over PAUSED: reads paused
        await self.recording.start(self.resources.nursery, self.hub,
                                   lambda state: job_record(self, JobState.PAUSED if paused else state))
        self.state = JobState.RUNNING
        self.hub.publish(JobStarted, flow=self.flow.name, inputs=self.inputs, resumed=self.restored is not None,
                         deadline=self.deadline)
        if self.restored is not None and self.restored.paused:
            self.state = JobState.PAUSED
            pauses.rearm(self, self.restored)  # what is left of the deadline it paused with, if any
        if self.restored is not None and self.restored.abandoned is not None:
            self._finish(JobState.ABANDONED, self.restored.abandoned)  # its exit rule fired before the crash
        task_status.started(self)
        self._advance()
        early, self._early = self._early, None
        self._ready = True
        for msg in early or ():  # control messages that arrived while the job was starting
            if self._outcome is None:
                self._on_message(msg)
        if self._outcome is None:
            # Parked until the one exit (``_finish``) wakes it: every message is applied
            # synchronously by whoever delivers it (no mailbox loop; an idle job schedules nothing).
            self._parked = True
            try:
                await self.recording.park(self._unpark)
            finally:
                self._parked = False

    def _unpark(self, raise_cancel: Any) -> trio.lowlevel.Abort:
        self._parked = False  # cancelled (shutdown, flow timeout) while parked
        return trio.lowlevel.Abort.SUCCEEDED

    def _finish(self, state: JobState, reason: str | None, error: str | None = None) -> None:
        """The single terminal transition: record the outcome once, then close the nursery."""
        if self._outcome is not None:
            return
        self._outcome = (state, reason, error)
        for name in self._steps.cancel_running():
            self.hub.publish(StepCancelled, step=name)
        if self._parked:  # the job task returns from its park and closes the nursery
            self._parked = False
            assert self.task is not None
            self.recording.unpark(self.task)
        nursery = self.resources.running_in
        if nursery is not None:
            # Cancel now whatever else runs (sibling steps, adapters, streams, the recorder).  When
            # the only child is the task finishing the job (a step delivering its last result),
            # nothing needs cancelling: it returns, and the nursery closes without a Cancelled.
            current = trio.lowlevel.current_task()
            if any(task is not current for task in nursery.child_tasks):
                nursery.cancel_scope.cancel()

    async def _finalize(self) -> None:
        assert self._outcome is not None
        try:  # a durable job ends (JobFinished, its result) only once its log and record are stored
            await self.recording.end(self.hub, self._outcome, self._conclude, lambda stored: job_record(self, stored))
            assert self.result is not None
            await self.services.finished(self.id, self.result)
        finally:
            self._done.set()

    def _conclude(self, outcome: tuple[JobState, str | None, str | None]) -> JobState:
        """Make ``outcome`` the job's result; the state its record is stored in."""
        self._outcome = outcome
        state, reason, error = outcome
        self.result = JobResult(
            job_id=self.id, flow=self.flow.name, state=state, reason=reason,
            outputs=dict(self._steps.outputs), error=error, steps=dict(self._steps.states),
            inputs=self.inputs, started_at=self._started_at, finished_at=time.time(),
        )
        # drained: the store reads paused or interrupted, a live state the next runtime resumes
        stored = JobState.PAUSED if state is JobState.INTERRUPTED and self.state is JobState.PAUSED else state
        self.state = state
        return stored

    # -- messages --------------------------------------------------------------------------------

    def _on_message(self, msg: Message) -> JobStateError | None:
        """Apply one message to the job's state.  Synchronous: no other task of this trio run
        interleaves, so a step task may deliver its own result here directly (no mailbox hop)."""
        match msg:
            case StepDone(run=run, outputs=outputs):
                if self._steps.running.get(run.step.name) is run:
                    self._step_completed(run, outputs)
            case StepError(run=run, error=error):
                if self._steps.running.get(run.step.name) is run:
                    self._step_failed(run, error)
            case Cancel(reason=reason):
                self._finish(JobState.CANCELLED, reason)
            case Abandon(reason=reason):
                self._finish(JobState.ABANDONED, reason)
            case Resume(payload=payload):
                if self.state is not JobState.PAUSED:
                    return JobStateError(f"job {self.id} is {self.state.value}, not paused")
                pauses.disarm(self)  # first of all: the escalation's deadline is off
                self.resume_payload = payload
                self._resumed = True
                self.state = JobState.RUNNING
                self.hub.publish(JobResumed, payload=payload)
                self.recording.state_changed(self.state, self.resume_payload)
        if self._outcome is None:
            self._advance()
            self.resources.release_adapters(self._steps, paused=self.state is JobState.PAUSED)
        return None

    # -- scheduling -----------------------------------------------------------------------------

    def _advance(self) -> None:
        """Start every ready step; finish the job when nothing is left to do."""
        if self._outcome is not None:
            return
        if self._draining is not None and (self.state is JobState.PAUSED or not self._steps.all_done):
            if not self._steps.running:
                self._finish(JobState.INTERRUPTED, self._draining)
            return
        if self.state is JobState.PAUSED:
            return
        waiting = self._steps.start_ready(self._resumed, self._start_step)
        if self._steps.running:
            return
        if self._steps.all_done:
            self._finish(JobState.COMPLETED, None)
        elif waiting is not None:  # nothing else can run: the job waits for a human, as PAUSED
            self.state = JobState.PAUSED
            self.hub.publish(JobPaused, step=waiting.name, rule="$resume")
            self.recording.state_changed(self.state, self.resume_payload)

    def _start_step(self, run: StepRun) -> None:
        assert self._outcome is None, "no step starts after the job's outcome is decided"
        if self._draining is not None:  # a retry while draining: the next runtime runs the step again
            return
        self._steps.start(run)
        nursery = self.resources.running_in
        assert nursery is not None
        nursery.start_soon(self._step_task, run, name=f"corral.step:{self.id}:{run.step.name}")

    async def _step_task(self, run: StepRun) -> None:
        step = run.step
        if run.delay:
            await trio.sleep(run.delay)
        if self._draining is not None and self._steps.running.get(run.step.name) is run:
            self._steps.stopped(run)  # drained before its user code began: left for the next runtime
            self._advance()
            return
        if self._steps.running.get(run.step.name) is not run:
            # The job's outcome was decided after this task was scheduled and before it ran (a
            # sibling failed in the same instant): one exit means nothing after it, so no
            # StepStarted and no user code.
            return
        self.hub.publish(StepStarted, step=step.name, attempt=run.attempt, iteration=run.iteration)
        try:
            inputs = self._steps.inputs_of(step, self.inputs, self.resume_payload)
            outputs = await execute(StepContext(self, step.name, run.attempt, run.iteration, inputs), step, inputs)
        except Exception as exc:
            msg: Message = StepError(run, exc)
        else:
            msg = StepDone(run, outputs)
        if self._outcome is None:  # else the job already ended and recorded this step CANCELLED
            self._on_message(msg)

    def _step_completed(self, run: StepRun, outputs: Mapping[str, Any]) -> None:
        step = run.step
        try:
            rule = self._steps.match_rule(run, outputs, self.inputs, self.resume_payload)
        except ExpressionError as exc:
            self._step_failed(run, exc)
            return
        self._steps.completed(run, outputs)
        self.hub.publish(StepCompleted, step=step.name, outputs=outputs, attempt=run.attempt,
                         iteration=run.iteration)
        self.recording.checkpoint(step.name, outputs, run.iteration, run.attempt)
        action = rule.action if rule else "advance"
        self.hub.publish(ExitResolved, step=step.name, rule=rule.name if rule else None, action=action)
        if rule is None or action == "advance":
            return
        if action == "abandon":
            self._finish(JobState.ABANDONED, rule.name)
        elif action == "escalate":
            self.state = JobState.PAUSED
            deadline = pauses.arm(self, step.name, rule, rule.timeout)
            self.hub.publish(JobPaused, step=step.name, rule=rule.name, deadline=deadline)
            self.recording.state_changed(self.state, self.resume_payload)
        elif action == "loop" and not self._steps.loop(step, rule):
            self._finish(JobState.FAILED, f"max_iterations:{rule.name}",
                         f"loop rule {rule.name!r} on step {step.name!r} matched more than "
                         f"{rule.max_iterations} times")

    def _step_failed(self, run: StepRun, error: BaseException) -> None:
        step = run.step
        policy = step.on_error
        text = describe_error(error)
        self._steps.stopped(run)
        if policy.action == "retry" and run.attempt < policy.max_attempts:
            self.hub.publish(StepFailed, step=step.name, error=text, attempt=run.attempt, action="retry")
            self._start_step(StepRun(step, run.attempt + 1, run.iteration, policy.delay(run.attempt)))
            return
        action = "fail" if policy.action == "retry" else policy.action
        self._steps.failed(step, {"error": text} if action == "continue" else None)
        self.hub.publish(StepFailed, step=step.name, error=text, attempt=run.attempt, action=action)
        _log.warning("step_failed", job_id=self.id, step=step.name, attempt=run.attempt, error=text,
                     action=action)
        if action == "abandon":
            self._finish(JobState.ABANDONED, f"on_error:{step.name}", text)
        elif action != "continue":
            self._finish(JobState.FAILED, f"step_failed:{step.name}", text)

    # -- outside requests -------------------------------------------------

    def request_nowait(self, msg: Control) -> JobStateError | None:
        """Apply a control message now (trio runs one task at a time, so this is atomic).

        Raises :class:`ActorStopped` when the job has already ended; else returns the reply.
        """
        if self._outcome is not None:
            raise ActorStopped(f"job {self.id} has ended")
        if not self._ready:  # not started, or mid-start (its recorder, say): applied once started
            if self._early is None:
                self._early = []
            self._early.append(msg)
            return None
        return self._on_message(msg)

    def drain(self, reason: str) -> None:
        """Start no new step; once none runs (a paused job: now), end INTERRUPTED ``reason``,
        its record left live (paused or interrupted) for the next runtime to resume."""
        if self._outcome is None and self._draining is None:
            self._draining = reason
            if self._ready:
                self._advance()

    def interrupt(self, reason: str) -> None:
        """End now as INTERRUPTED (a drain's grace is over): running steps cancelled, record live."""
        self._finish(JobState.INTERRUPTED, reason)

    def fail_on_store_error(self, exc: BaseException) -> None:
        """A durable job whose records cannot be written ends FAILED ``store_error``."""
        self._finish(JobState.FAILED, "store_error", describe_error(exc))

    def cancel_nowait(self, reason: str) -> None:
        """Request cancellation without waiting (used by runtime shutdown)."""
        with contextlib.suppress(ActorStopped):
            self.request_nowait(Cancel(reason))

    async def finish_unstarted(self, state: JobState, reason: str) -> None:
        """End a job that never started (it was still queued)."""
        self._outcome = (state, reason, None)
        await self._finalize()

    async def control(self, msg: Cancel | Abandon) -> None:
        """Cancel or abandon: a queued job ends at once, a running one through its one exit."""
        if self.task is None and self.services.unqueue(self.id):
            state = JobState.CANCELLED if isinstance(msg, Cancel) else JobState.ABANDONED
            await self.finish_unstarted(state, msg.reason)
        elif self.result is None:
            with contextlib.suppress(ActorStopped):
                self.request_nowait(msg)

    async def wait(self) -> JobResult:
        await self._done.wait()
        assert self.result is not None
        return self.result

