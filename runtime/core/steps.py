"""A job's steps: which are pending, running, done; their outputs, loop counts and inputs.

:class:`StepTable` is the bookkeeping half of the job actor, with no trio in it: the job asks it
which steps are ready, tells it what completed or failed, and acts on the answers (starting
tasks, publishing events, taking the one exit).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import attrs

from ..flow import AgentSpec, ExitRule, Flow, InputRef, Step
from ..store import Restored
from .states import StepState

__all__ = ["StepRun", "StepTable"]

_DONE = (StepState.COMPLETED, StepState.FAILED)


@attrs.define(eq=False)
class StepRun:
    """One run of a step: its attempt (1-based, retries), its iteration (0-based, loops) and the
    delay before it starts (a retry's backoff)."""

    step: Step
    attempt: int
    iteration: int
    delay: float = 0.0


class StepTable:
    """The state of every step of one job."""

    __slots__ = ("_flow", "_iterations", "_loops", "outputs", "running", "states")

    def __init__(self, flow: Flow, restored: Restored | None = None) -> None:
        self._flow = flow
        self.states: dict[str, StepState] = {s.name: StepState.PENDING for s in flow.steps}
        self.outputs: dict[str, Mapping[str, Any]] = {}
        self.running: dict[str, StepRun] = {}
        self._iterations: dict[str, int] = {}
        self._loops: dict[tuple[str, str], int] = {}
        if restored is not None:  # completed steps come from checkpoints and are not run again
            for name, outputs in restored.outputs.items():
                self.states[name] = StepState.COMPLETED
                self.outputs[name] = outputs
            self._iterations.update(restored.iterations)
            self._loops.update(restored.loops)

    def start_ready(self, resumed: bool, start: Callable[[StepRun], None]) -> Step | None:
        """``start`` a run of every step that is ready now; return a ready step that waits for
        the first resume (it reads ``$resume`` and ``resumed`` is false), if any."""
        waiting: Step | None = None
        for step in self._flow.steps:
            if self.states[step.name] is not StepState.PENDING:
                continue
            if all(self.states[d] in _DONE for d in self._flow.deps[step.name]):
                if step.reads_resume and not resumed:
                    waiting = waiting or step
                    continue
                start(StepRun(step, attempt=1, iteration=self._iterations.get(step.name, 0)))
        return waiting

    @property
    def all_done(self) -> bool:
        """Every step completed (or failed and continued)."""
        return all(s in _DONE for s in self.states.values())

    def is_current(self, run: StepRun) -> bool:
        """``run`` is still its step's running run (not superseded, not cancelled)."""
        return self.running.get(run.step.name) is run

    def start(self, run: StepRun) -> None:
        self.states[run.step.name] = StepState.RUNNING
        self.running[run.step.name] = run

    def completed(self, run: StepRun, outputs: Mapping[str, Any]) -> None:
        del self.running[run.step.name]
        self.outputs[run.step.name] = outputs
        self.states[run.step.name] = StepState.COMPLETED

    def stopped(self, run: StepRun) -> None:
        """``run`` failed: it is no longer running (a retry starts a new run)."""
        del self.running[run.step.name]

    def failed(self, step: Step, continued_with: Mapping[str, Any] | None) -> None:
        """``step`` failed for good; with ``on_error: continue`` its outputs are ``continued_with``."""
        self.states[step.name] = StepState.FAILED
        if continued_with is not None:
            self.outputs[step.name] = continued_with

    def cancel_running(self) -> list[str]:
        """Mark every running step CANCELLED (the job's outcome is decided); their names."""
        names = list(self.running)
        for name in names:
            self.states[name] = StepState.CANCELLED
        self.running.clear()
        return names

    def agents_needed(self, paused: bool) -> set[AgentSpec]:
        """The agent specs of the steps still able to run: the running agent steps' and, unless
        the job is ``paused``, the pending ones' (a completed step a loop resets is pending again)."""
        specs = {run.step.agent for run in self.running.values() if run.step.agent is not None}
        if not paused:
            specs.update(step.agent for step in self._flow.steps
                         if step.agent is not None and self.states[step.name] is StepState.PENDING)
        return specs

    def loop(self, step: Step, rule: ExitRule) -> bool:
        """Take loop ``rule`` of ``step``: reset the steps it runs again.  False (and nothing
        reset) once the rule has looped ``max_iterations`` times."""
        key = (step.name, rule.name)
        count = self._loops.get(key, 0)
        if count >= (rule.max_iterations or 0):
            return False
        self._loops[key] = count + 1
        assert rule.target is not None
        for name in self._flow.loop_span(step.name, rule.target):
            self.states[name] = StepState.PENDING
            self._iterations[name] = self._iterations.get(name, 0) + 1
        return True

    # -- inputs ---------------------------------------------------------------------------------

    def resolve_ref(self, ref: InputRef, job_inputs: Mapping[str, Any], resume: Any) -> Any:
        """The value ``ref`` reads now."""
        return ref.resolve(job_inputs, self.outputs, resume)

    def inputs_of(self, step: Step, job_inputs: Mapping[str, Any], resume: Any) -> dict[str, Any]:
        """``step``'s resolved inputs, in the order they were declared (``KeyError`` naming a
        missing reference)."""
        resolved: dict[str, Any] = dict(step.literals)
        for local, ref in step.refs.items():
            resolved[local] = ref.resolve(job_inputs, self.outputs, resume)
        return {local: resolved[local] for local in step.inputs}

    def match_rule(self, run: StepRun, outputs: Mapping[str, Any], job_inputs: Mapping[str, Any],
                   resume: Any) -> ExitRule | None:
        """The first exit rule of ``run``'s step whose ``when`` holds (``ExpressionError`` if one
        cannot be evaluated)."""
        inputs: dict[str, Any] | None = None
        for rule in run.step.exits:
            if inputs is None:
                try:
                    inputs = self.inputs_of(run.step, job_inputs, resume)
                except KeyError:
                    inputs = {}
            if rule.matches(outputs, inputs, run.attempt, run.iteration):
                return rule
        return None
