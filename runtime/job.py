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
import enum
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs
import trio

from actors.actor import Actor, ActorStopped
from actors.log import get_logger
from actors.process import find_marked

from .context import StepContext
from .events import (
    Event,
    EventHub,
    ExitResolved,
    JobFinished,
    JobPaused,
    JobResumed,
    JobStarted,
    Lagged,
    StepCancelled,
    StepCompleted,
    StepFailed,
    StepStarted,
)
from .flow import ExitRule, Flow, Step
from .rules import ExpressionError

if TYPE_CHECKING:
    from .persistence import Restored
    from .runtime import Runtime

__all__ = ["JobHandle", "JobResult", "JobState", "JobStateError", "StepState", "StepTimeout"]

_log = get_logger("corral.job")


class JobState(enum.Enum):
    """The lifecycle of a job: ``PENDING → RUNNING ⇄ PAUSED → terminal``."""

    PENDING = "pending"
    RUNNING = "running"
    PAUSED = "paused"
    COMPLETED = "completed"
    FAILED = "failed"
    ABANDONED = "abandoned"
    CANCELLED = "cancelled"

    @property
    def terminal(self) -> bool:
        return self in _TERMINAL


_TERMINAL = frozenset({JobState.COMPLETED, JobState.FAILED, JobState.ABANDONED, JobState.CANCELLED})


class StepState(enum.Enum):
    PENDING = "pending"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"  # failed and routed with on_error=continue (or the job failed on it)
    CANCELLED = "cancelled"


class StepTimeout(Exception):
    """A step ran longer than its ``timeout``."""


class JobNotFound(KeyError):
    """No job with this id: not live in this runtime and not in its store."""

    def __init__(self, job_id: str) -> None:
        super().__init__(job_id)
        self.job_id = job_id

    def __str__(self) -> str:
        return f"no job {self.job_id!r}"


class JobExistsError(ValueError):
    """``spawn(job_id=...)`` of an id that is live or already stored: nothing is run or overwritten."""

    def __init__(self, job_id: str, where: str) -> None:
        super().__init__(f"job {job_id!r} already exists ({where}); a job id is never reused")
        self.job_id = job_id


class JobStateError(RuntimeError):
    """The operation does not apply to the job's current state (e.g. resume a running job)."""


@attrs.frozen
class JobResult:
    """What is kept of a finished job.

    ``job_id`` is the job's id (``JobHandle.id``); ``flow`` the flow's name; ``state`` the terminal
    state and ``reason`` why (an exit rule's name, ``step_failed:<step>``, ``timeout``, the reason
    given to cancel/abandon, ``shutdown``); ``error`` the failure's text; ``outputs`` and ``steps``
    each step's outputs and final state; ``inputs`` the job inputs (declared defaults filled in);
    ``started_at``/``finished_at`` ``time.time()`` seconds.
    """

    job_id: str
    flow: str
    state: JobState
    reason: str | None = None
    outputs: Mapping[str, Mapping[str, Any]] = attrs.field(factory=dict)
    error: str | None = None
    steps: Mapping[str, StepState] = attrs.field(factory=dict)
    inputs: Mapping[str, Any] = attrs.field(factory=dict)
    started_at: float | None = None
    finished_at: float | None = None


# -- messages -------------------------------------------------------------------------


@attrs.frozen(eq=False)
class _StepDone:
    run: _StepRun
    outputs: Mapping[str, Any]


@attrs.frozen(eq=False)
class _StepError:
    run: _StepRun
    error: BaseException


@attrs.frozen
class _Cancel:
    reason: str


@attrs.frozen
class _Abandon:
    reason: str


@attrs.frozen
class _Resume:
    payload: Any


@attrs.define(eq=False)
class _StepRun:
    step: Step
    attempt: int
    iteration: int
    delay: float = 0.0


Executor = Callable[[StepContext, Step, dict[str, Any]], Any]


class Job(Actor):
    """The job actor.  Users hold a :class:`JobHandle`, never the job."""

    __slots__ = (  # one per live job: no instance dict (~1.5 kB a job less)
        "_done", "_early", "_iterations", "_loops", "_nursery", "_outcome", "_outputs", "_parked",
        "_ready", "_resumed", "_running", "_started_at", "_steps", "_workspace", "adapters", "created_at", "deadline", "flow",
        "hub", "id", "inputs", "process_groups", "record", "recorder", "restored", "result",
        "resume_payload", "runtime", "state", "streams", "task",
    )

    def __init__(self, runtime: Runtime, flow: Flow, inputs: Mapping[str, Any], job_id: str,
                 *, record: str = "off", restored: Restored | None = None) -> None:
        super().__init__()  # its mailbox is never made: messages are applied directly
        self.runtime = runtime
        self.id = job_id
        self.flow = flow
        self.inputs = dict(inputs)
        self.record = record
        self.state = JobState.PENDING
        self.hub = EventHub(job_id, first_seq=restored.first_seq if restored else 0)
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
        self._nursery: trio.Nursery | None = None
        self._done = trio.Event()
        self._outcome: tuple[JobState, str | None, str | None] | None = None
        self._steps: dict[str, StepState] = {s.name: StepState.PENDING for s in flow.steps}
        self._outputs: dict[str, Mapping[str, Any]] = {}
        self._running: dict[str, _StepRun] = {}
        self._iterations: dict[str, int] = {}
        self._loops: dict[tuple[str, str], int] = {}
        self._started_at: float | None = None
        self._parked = False  # the job task waits in _serve_steps for _finish to wake it
        self._ready = False  # set once started: control messages before that wait in _early
        self._early: list[Any] | None = None
        self._workspace: Path | None = None
        if restored is not None:  # completed steps come from checkpoints and are not run again
            for name, outputs in restored.outputs.items():
                self._steps[name] = StepState.COMPLETED
                self._outputs[name] = outputs
            self._iterations.update(restored.iterations)
            self._loops.update(restored.loops)
        # per-job resources; each is started in the job's nursery and gone with it
        self.process_groups: set[Any] = set()
        self.streams: set[Any] = set()
        self.adapters: dict[Any, Any] = {}
        self.recorder: Any = None

    # -- structure ------------------------------------------------------------------------------

    @property
    def nursery(self) -> trio.Nursery:
        if self._nursery is None:
            raise JobStateError(f"job {self.id} is not running")
        return self._nursery

    def track_stream(self, stream: Any) -> None:
        """Count ``stream`` as open while its buffer runs (or until it is closed)."""
        self.streams = {s for s in self.streams if not s.closed or (s.buffer is not None and s.buffer.running)}
        self.streams.add(stream)

    def open_streams(self) -> int:
        return sum(1 for s in self.streams if not s.closed or (s.buffer is not None and s.buffer.running))

    async def adapter_for(self, spec: Any) -> Any:
        """The job's adapter for ``spec``: started on first use in the job's nursery, then shared."""
        while True:
            entry = self.adapters.get(spec)
            if isinstance(entry, trio.Event):  # another step is starting it
                await entry.wait()
                continue
            if entry is not None and entry.usable:
                await trio.lowlevel.checkpoint()
                return entry
            starting = trio.Event()
            self.adapters[spec] = starting
            try:
                adapter = self.runtime.make_adapter(self, spec)
                await self.nursery.start(adapter.run)
            except BaseException:
                del self.adapters[spec]
                raise
            finally:
                starting.set()
            self.adapters[spec] = adapter
            return adapter

    def register_group(self, group: Any, live: bool) -> None:
        if live:
            self.process_groups.add(group)
        else:
            self.process_groups.discard(group)
        self.runtime.group_changed(self, group, live)

    def resolve_ref(self, ref: Any) -> Any:
        return ref.resolve(self.inputs, self._outputs, self.resume_payload)

    def live_processes(self) -> int:
        """Live OS processes of this job's process groups, descendants and escapers included."""
        if not self.process_groups:
            return 0
        return len(find_marked(lambda m: m.job_id == self.id and m.runtime_id == self.runtime.id))

    def workspace(self) -> Path:
        if self._workspace is None:
            self._workspace = self.runtime.workspace_for(self.id)
        return self._workspace

    async def run(self, *, task_status: trio.TaskStatus[Job] = trio.TASK_STATUS_IGNORED) -> None:
        self._state = "running"
        self.task = trio.lowlevel.current_task()
        self._started_at = time.time()
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
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
            cancelled, errors = _split_cancelled(exc)
            if errors is not None:
                _log.error("job_crashed", job_id=self.id, error=repr(errors))
                self._finish(JobState.FAILED, "crashed", repr(errors.exceptions[0]))
            if cancelled is not None:
                self._finish(JobState.CANCELLED, "shutdown")
                raise cancelled from None
        finally:
            self._stopped()
            self._nursery = None
            await self._finalize()

    async def _serve_steps(self, task_status: trio.TaskStatus[Job]) -> None:
        await self.runtime.start_job_resources(self)
        self.state = JobState.RUNNING
        self.hub.publish(JobStarted, flow=self.flow.name, inputs=self.inputs, resumed=self.restored is not None,
                         deadline=self.deadline)
        if self.restored is not None and self.restored.paused:
            self.state = JobState.PAUSED
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
            # Parked until the one exit (``_finish``) wakes it: every message (a step's result, a
            # cancel, a resume) is applied synchronously by whoever delivers it, so the job needs
            # no mailbox loop and an idle job schedules nothing.
            self._parked = True
            await trio.lowlevel.wait_task_rescheduled(self._unpark)

    def _unpark(self, raise_cancel: Any) -> trio.lowlevel.Abort:
        self._parked = False  # cancelled (shutdown, flow timeout) while parked
        return trio.lowlevel.Abort.SUCCEEDED

    def _finish(self, state: JobState, reason: str | None, error: str | None = None) -> None:
        """The single terminal transition: record the outcome once, then close the nursery."""
        if self._outcome is not None:
            return
        self._outcome = (state, reason, error)
        for name in list(self._running):
            self._steps[name] = StepState.CANCELLED
            self.hub.publish(StepCancelled, step=name)
        self._running.clear()
        self.stop()
        if self._parked:  # the job task returns from its park and closes the nursery
            self._parked = False
            assert self.task is not None
            trio.lowlevel.reschedule(self.task)
        nursery = self._nursery
        if nursery is not None:
            # Cancel now whatever else runs (sibling steps, adapters, streams, the recorder).  When
            # the only child is the task finishing the job (a step delivering its last result),
            # nothing needs cancelling: it returns, and the nursery closes without a Cancelled.
            current = trio.lowlevel.current_task()
            if any(task is not current for task in nursery.child_tasks):
                nursery.cancel_scope.cancel()

    async def _finalize(self) -> None:
        assert self._outcome is not None
        if self.recorder is not None and self.record == "durable":
            # a durable job has completed only once its log is in the store
            with trio.CancelScope(shield=True):
                await self.recorder.flush()
            if self.recorder.failed is not None and self._outcome[0] is JobState.COMPLETED:
                self._outcome = (JobState.FAILED, "store_error", _describe(self.recorder.failed))
        state, reason, error = self._outcome
        self.state = state
        self.result = JobResult(
            job_id=self.id, flow=self.flow.name, state=state, reason=reason,
            outputs=dict(self._outputs), error=error, steps=dict(self._steps),
            inputs=self.inputs, started_at=self._started_at, finished_at=time.time(),
        )
        self.hub.publish(JobFinished, state=state.value, reason=reason, error=error)
        try:
            await self.runtime.job_finished(self)  # shields its own store writes
        finally:
            self.recorder = None
            self._done.set()

    # -- messages --------------------------------------------------------------------------------

    async def handle(self, msg: Any) -> Any:
        return self._on_message(msg)

    def _on_message(self, msg: Any) -> Any:
        """Apply one message to the job's state.  Synchronous: no other task of this trio run
        interleaves, so a step task may deliver its own result here directly (no mailbox hop)."""
        match msg:
            case _StepDone(run=run, outputs=outputs):
                if self._running.get(run.step.name) is run:
                    self._step_completed(run, outputs)
            case _StepError(run=run, error=error):
                if self._running.get(run.step.name) is run:
                    self._step_failed(run, error)
            case _Cancel(reason=reason):
                self._finish(JobState.CANCELLED, reason)
            case _Abandon(reason=reason):
                self._finish(JobState.ABANDONED, reason)
            case _Resume(payload=payload):
                if self.state is not JobState.PAUSED:
                    return JobStateError(f"job {self.id} is {self.state.value}, not paused")
                self.resume_payload = payload
                self._resumed = True
                self.state = JobState.RUNNING
                self.hub.publish(JobResumed, payload=payload)
                self.runtime.job_state_changed(self)
        if self._outcome is None:
            self._advance()
        return None

    # -- scheduling -----------------------------------------------------------------------------

    def _advance(self) -> None:
        """Start every ready step; finish the job when nothing is left to do."""
        if self.state is JobState.PAUSED or self._outcome is not None:
            return
        done = (StepState.COMPLETED, StepState.FAILED)
        waiting: Step | None = None  # a ready step that reads $resume before any resume
        for step in self.flow.steps:
            if self._steps[step.name] is not StepState.PENDING:
                continue
            if all(self._steps[d] in done for d in self.flow.deps[step.name]):
                if step.reads_resume and not self._resumed:
                    waiting = waiting or step
                    continue
                self._start_step(_StepRun(step, attempt=1, iteration=self._iterations.get(step.name, 0)))
        if self._running:
            return
        if all(s in done for s in self._steps.values()):
            self._finish(JobState.COMPLETED, None)
        elif waiting is not None:  # nothing else can run: the job waits for a human, as PAUSED
            self.state = JobState.PAUSED
            self.hub.publish(JobPaused, step=waiting.name, rule="$resume")
            self.runtime.job_state_changed(self)

    def _start_step(self, run: _StepRun) -> None:
        assert self._outcome is None, "no step starts after the job's outcome is decided"
        self._steps[run.step.name] = StepState.RUNNING
        self._running[run.step.name] = run
        self.nursery.start_soon(self._step_task, run, name=f"corral.step:{self.id}:{run.step.name}")

    async def _step_task(self, run: _StepRun) -> None:
        step = run.step
        if run.delay:
            await trio.sleep(run.delay)
        if self._running.get(step.name) is not run:
            # The job's outcome was decided after this task was scheduled and before it ran (a
            # sibling failed in the same instant): one exit means nothing after it, so no
            # StepStarted and no user code.
            return
        self.hub.publish(StepStarted, step=step.name, attempt=run.attempt, iteration=run.iteration)
        try:
            inputs = self._resolve_inputs(step)
            ctx = StepContext(self, step.name, run.attempt, run.iteration, inputs)
            executor = self.runtime.executor_for(step)
            if step.timeout is None:
                outputs = await executor(ctx, step, inputs)
            else:
                with trio.move_on_after(step.timeout) as scope:
                    outputs = await executor(ctx, step, inputs)
                if scope.cancelled_caught:
                    raise StepTimeout(f"step {step.name!r} timed out after {step.timeout}s")
            if outputs is None:
                outputs = {}
            if not isinstance(outputs, Mapping):
                raise TypeError(f"step {step.name!r} returned {type(outputs).__name__}, expected a dict")
        except Exception as exc:
            msg: Any = _StepError(run, exc)
        else:
            msg = _StepDone(run, dict(outputs))
        if self.running:  # else the job already ended and recorded this step CANCELLED
            self._on_message(msg)

    def _resolve_inputs(self, step: Step) -> dict[str, Any]:
        resolved: dict[str, Any] = dict(step.literals)
        for local, ref in step.refs.items():
            resolved[local] = ref.resolve(self.inputs, self._outputs, self.resume_payload)
        return {local: resolved[local] for local in step.inputs}  # in the order they were declared

    def _step_completed(self, run: _StepRun, outputs: Mapping[str, Any]) -> None:
        step = run.step
        try:
            rule = self._match_rule(step, run, outputs)
        except ExpressionError as exc:
            self._step_failed(run, exc)
            return
        del self._running[step.name]
        self._outputs[step.name] = outputs
        self._steps[step.name] = StepState.COMPLETED
        self.hub.publish(StepCompleted, step=step.name, outputs=outputs, attempt=run.attempt,
                         iteration=run.iteration)
        self.runtime.step_checkpoint(self, step.name, outputs, run.iteration, run.attempt)
        action = rule.action if rule else "advance"
        self.hub.publish(ExitResolved, step=step.name, rule=rule.name if rule else None, action=action)
        if rule is None or action == "advance":
            return
        if action == "abandon":
            self._finish(JobState.ABANDONED, rule.name)
        elif action == "escalate":
            self.state = JobState.PAUSED
            self.hub.publish(JobPaused, step=step.name, rule=rule.name)
            self.runtime.job_state_changed(self)
        elif action == "loop":
            self._loop(step, rule)

    def _match_rule(self, step: Step, run: _StepRun, outputs: Mapping[str, Any]) -> ExitRule | None:
        inputs = None
        for rule in step.exits:
            if inputs is None:
                try:
                    inputs = self._resolve_inputs(step)
                except KeyError:
                    inputs = {}
            if rule.matches(outputs, inputs, run.attempt, run.iteration):
                return rule
        return None

    def _loop(self, step: Step, rule: ExitRule) -> None:
        key = (step.name, rule.name)
        count = self._loops.get(key, 0)
        if count >= (rule.max_iterations or 0):
            self._finish(JobState.FAILED, f"max_iterations:{rule.name}",
                         f"loop rule {rule.name!r} on step {step.name!r} matched more than "
                         f"{rule.max_iterations} times")
            return
        self._loops[key] = count + 1
        assert rule.target is not None
        for name in self.flow.loop_span(step.name, rule.target):
            self._steps[name] = StepState.PENDING
            self._iterations[name] = self._iterations.get(name, 0) + 1

    def _step_failed(self, run: _StepRun, error: BaseException) -> None:
        step = run.step
        policy = step.on_error
        text = _describe(error)
        del self._running[step.name]
        if policy.action == "retry" and run.attempt < policy.max_attempts:
            self.hub.publish(StepFailed, step=step.name, error=text, attempt=run.attempt, action="retry")
            self._start_step(_StepRun(step, run.attempt + 1, run.iteration, policy.delay(run.attempt)))
            return
        action = "fail" if policy.action == "retry" else policy.action
        self._steps[step.name] = StepState.FAILED
        self.hub.publish(StepFailed, step=step.name, error=text, attempt=run.attempt, action=action)
        _log.warning("step_failed", job_id=self.id, step=step.name, attempt=run.attempt, error=text,
                     action=action)
        if action == "continue":
            self._outputs[step.name] = {"error": text}
        elif action == "abandon":
            self._finish(JobState.ABANDONED, f"on_error:{step.name}", text)
        else:
            self._finish(JobState.FAILED, f"step_failed:{step.name}", text)

    # -- outside requests -------------------------------------------------

    def request_nowait(self, msg: Any) -> Any:
        """Apply a control message now (trio runs one task at a time, so this is atomic).

        Raises :class:`ActorStopped` when the job has already ended; else returns the reply.
        """
        if self._outcome is not None or self._state == "stopped":
            raise ActorStopped(f"job {self.id} has ended")
        if not self._ready:  # not started, or mid-start (its recorder, say): applied once started
            if self._early is None:
                self._early = []
            self._early.append(msg)
            return None
        return self._on_message(msg)

    def fail_on_store_error(self, exc: BaseException) -> None:
        """A durable job whose records cannot be written ends FAILED ``store_error``."""
        self._finish(JobState.FAILED, "store_error", _describe(exc))

    def cancel_nowait(self, reason: str) -> None:
        """Request cancellation without waiting (used by runtime shutdown)."""
        with contextlib.suppress(ActorStopped):
            self.request_nowait(_Cancel(reason))

    async def finish_unstarted(self, state: JobState, reason: str) -> None:
        """End a job that never started (it was still queued)."""
        self._outcome = (state, reason, None)
        self._stopped()
        await self._finalize()

    async def wait(self) -> JobResult:
        await self._done.wait()
        assert self.result is not None
        return self.result


def _describe(error: BaseException) -> str:
    text = str(error)
    name = type(error).__name__
    return f"{name}: {text}" if text else name


def _split_cancelled(exc: BaseException) -> tuple[BaseException | None, BaseExceptionGroup[Any] | None]:
    """Split an exception escaping the job nursery into (trio.Cancelled part, other errors)."""
    if isinstance(exc, trio.Cancelled):
        return exc, None
    if isinstance(exc, BaseExceptionGroup):
        cancelled, rest = exc.split(trio.Cancelled)
        return cancelled, rest
    return None, BaseExceptionGroup("job crashed", [exc])


class _EventIterator:
    """``async for event in job.events()``; subscribed when created, so nothing is missed.

    ``prefetch`` (durable replay) is awaited on first use: it returns the recorded events that came
    before the subscription; live events with a seq already yielded are skipped.
    """

    def __init__(self, sub: Any, hub: EventHub,
                 prefetch: Callable[[int], Awaitable[list[Event]]] | None = None) -> None:
        self._sub = sub
        self._hub = hub
        self._it = sub.__aiter__()
        self._prefetch = prefetch
        self._first_live = hub.next_seq
        self._backlog: list[Event] = []
        self._last_seq = -1

    def __aiter__(self) -> _EventIterator:
        return self

    async def __anext__(self) -> Event | Lagged:
        if self._prefetch is not None:
            prefetch, self._prefetch = self._prefetch, None
            self._backlog = [e for e in await prefetch(self._first_live) if e.seq < self._first_live]
        if self._backlog:
            event = self._backlog.pop(0)
            self._last_seq = event.seq
            return event
        try:
            while True:
                item = await self._it.__anext__()
                if isinstance(item, Lagged) or item.seq > self._last_seq:
                    if not isinstance(item, Lagged):
                        self._last_seq = item.seq
                    return item
        except StopAsyncIteration:
            self._hub.unsubscribe(self._sub)
            raise

    async def aclose(self) -> None:
        self._hub.unsubscribe(self._sub)
        await self._it.aclose()


class JobView:
    """What every job handle shows of its job: this runtime's, or one on a cluster host."""

    __slots__ = ()
    _job: Any  # set by the subclass: anything with id, state, flow and result

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.id} {self._job.flow.name} {self.state.value}>"

    @property
    def id(self) -> str:
        """The job id: the ``job_id`` given to spawn, or a generated hex uuid (``JobResult.job_id``)."""
        return self._job.id

    @property
    def state(self) -> JobState:
        """The current state; terminal only once the nursery has closed (see :meth:`wait`)."""
        return self._job.state

    @property
    def flow(self) -> Flow:
        """The :class:`~runtime.Flow` the job runs."""
        return self._job.flow

    @property
    def result(self) -> JobResult | None:
        """The result once the job has ended and its nursery closed (on its host), else ``None``."""
        return self._job.result


class JobHandle(JobView):
    """The user's handle to a job.  Cheap; holds no resources of its own.

    Attributes: ``id``, ``state``, ``flow`` and ``result`` (``None`` until the job has ended).
    """

    __slots__ = ("_job",)

    def __init__(self, job: Job) -> None:
        self._job = job

    async def wait(self) -> JobResult:
        """Wait until the job has ended *and* its nursery closed (processes reaped)."""
        return await self._job.wait()

    async def cancel(self, reason: str = "cancelled") -> JobResult:
        """End the job CANCELLED; returns once it is torn down."""
        return await self._control(_Cancel(reason))

    async def abandon(self, reason: str = "abandoned") -> JobResult:
        """End the job ABANDONED; returns once it is torn down."""
        return await self._control(_Abandon(reason))

    async def _control(self, msg: _Cancel | _Abandon) -> JobResult:
        job = self._job
        if job.task is None and job.runtime.drop_pending(job):
            state = JobState.CANCELLED if isinstance(msg, _Cancel) else JobState.ABANDONED
            await job.finish_unstarted(state, msg.reason)
        elif job.result is None:
            with contextlib.suppress(ActorStopped):
                job.request_nowait(msg)
        return await job.wait()

    async def resume(self, payload: Any = None) -> None:
        """Resume a PAUSED job; ``payload`` is visible to later steps as ``$resume``.

        Raises :class:`JobStateError` if the job is not paused, or if it has ended: a job's outcome
        can be decided while it is paused (a sibling step fails, the flow times out), and ``state``
        reads PAUSED until its nursery has closed and the terminal state is known.
        """
        if self._job.state is not JobState.PAUSED:
            await trio.lowlevel.checkpoint()
            raise JobStateError(f"job {self.id} is {self.state.value}, not paused")
        await trio.lowlevel.checkpoint_if_cancelled()  # no schedule point between check and act
        try:
            error = self._job.request_nowait(_Resume(payload))
        except ActorStopped:
            raise JobStateError(f"job {self.id} has ended") from None
        if error is not None:
            raise error
        await trio.lowlevel.cancel_shielded_checkpoint()  # resumed: a cancel now must not say otherwise

    def events(self, *, replay: bool = False, maxlen: int | None = None) -> AsyncIterator[Event | Lagged]:
        """Events from now on (``replay=True``: from seq 0, when the job records them).

        The subscription starts when this is called, ends after :class:`JobFinished`, and buffers
        at most ``maxlen`` events; a subscriber that falls behind gets a :class:`Lagged` marker.
        """
        job = self._job
        if not replay:
            return _EventIterator(job.hub.subscribe(None, maxlen), job.hub)
        backlog, prefetch = job.runtime.replay_source(job)
        return _EventIterator(job.hub.subscribe(backlog, maxlen), job.hub, prefetch)
