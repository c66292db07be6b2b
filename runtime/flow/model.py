"""Flows: a DAG of :class:`~runtime.flow.Step` s, validated when built.

Every invalid definition raises :class:`~runtime.flow.FlowError` at construction, naming the
field and what is wrong, so nothing invalid can ever run.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import attrs

from .errors import FlowError, suggest
from .inputs import FlowInput, InputError, InputRef, input_decls
from .step import (
    Step,
    positive_seconds_or_none,
)

__all__ = ["Flow"]


def _step_tuple(value: Iterable[Step]) -> tuple[Step, ...]:
    return tuple(value)


def _find_cycle(deps: Mapping[str, frozenset[str]]) -> list[str] | None:
    color: dict[str, int] = {}
    stack: list[str] = []

    def visit(n: str) -> list[str] | None:
        color[n] = 1
        stack.append(n)
        for d in sorted(deps[n]):
            if color.get(d) == 1:
                return [*stack[stack.index(d):], d]
            if color.get(d) is None and (cycle := visit(d)):
                return cycle
        stack.pop()
        color[n] = 2
        return None

    for n in deps:
        if color.get(n) is None and (cycle := visit(n)):
            return cycle
    return None


@attrs.frozen
class Flow:
    """A named DAG of steps, with an optional wall-clock ``timeout`` for the whole job.

    ``inputs``, when given, declares the job inputs (``{"ticket": int, "title": str}``, or
    :class:`FlowInput` values with a default): ``spawn()`` then refuses missing, unknown or
    mistyped inputs before anything runs.  Without it any mapping is accepted, but every
    ``$job.x`` a step reads must be present at spawn.
    """

    name: str
    steps: tuple[Step, ...] = attrs.field(converter=_step_tuple)
    timeout: float | None = attrs.field(default=None, validator=positive_seconds_or_none("timeout"))
    inputs: Mapping[str, FlowInput] | None = attrs.field(default=None, converter=input_decls)
    _deps: Mapping[str, frozenset[str]] = attrs.field(init=False, factory=dict, repr=False, eq=False)
    _by_name: Mapping[str, Step] = attrs.field(init=False, factory=dict, repr=False, eq=False)
    _job_refs: tuple[tuple[str, InputRef], ...] = attrs.field(init=False, factory=tuple, repr=False, eq=False)

    def __attrs_post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise FlowError("name", "a flow needs a non-empty name")
        if not self.steps:
            raise FlowError("steps", "a flow needs at least one step")
        by_name: dict[str, Step] = {}
        for i, step in enumerate(self.steps):
            if not isinstance(step, Step):
                raise FlowError(f"steps[{i}]", f"must be a Step, got {type(step).__name__}")
            if step.name in by_name:
                raise FlowError(f"steps.{step.name}", f"duplicate step name {step.name!r}")
            by_name[step.name] = step
        for step in self.steps:
            for dep in step.after:
                if dep not in by_name:
                    raise FlowError(f"steps.{step.name}.after",
                                    f"unknown step {dep!r}" + suggest(dep, by_name))
                if dep == step.name:
                    raise FlowError(f"steps.{step.name}.after", "a step cannot wait for itself")
            checks = [(f"steps.{step.name}.inputs.{local}", ref) for local, ref in step.refs.items()]
            checks += [(f"steps.{step.name}.prompt", ref) for ref in step.prompt_refs.values()]
            for field, ref in checks:
                if ref.step is not None and ref.step not in by_name:
                    raise FlowError(field, f"unknown step {ref.step!r} in {ref}"
                                    + suggest(ref.step, [*by_name, "job", "resume"]))
                if ref.step == step.name:
                    raise FlowError(field, "a step cannot read its own outputs")
                if ref.source == "job" and self.inputs is not None and ref.path \
                        and ref.path[0] not in self.inputs:
                    raise FlowError(field, f"{ref} reads an undeclared input {ref.path[0]!r}"
                                    + suggest(ref.path[0], self.inputs))
            for local, literal in step.literals.items():
                head = literal.split(".")[0] if isinstance(literal, str) and "." in literal else None
                if head in by_name:
                    raise FlowError(f"steps.{step.name}.inputs.{local}",
                                    f"{literal!r} is a literal string, but names step {head!r}: a "
                                    f"reference starts with '$' (did you mean '${literal}'?)")
        if not any(r.action == "escalate" for s in self.steps for r in s.exits):
            for step in self.steps:
                if step.reads_resume:
                    raise FlowError(f"steps.{step.name}.inputs",
                                    "reads $resume, but no exit rule of the flow escalates, so the job "
                                    "is never paused and never resumed")
        deps = {s.name: s.depends_on() for s in self.steps}
        if cycle := _find_cycle(deps):
            raise FlowError("steps", "cycle: " + " -> ".join(reversed(cycle)))
        object.__setattr__(self, "_deps", deps)
        object.__setattr__(self, "_by_name", by_name)
        object.__setattr__(self, "_job_refs", tuple(  # what bind_inputs checks at every spawn
            (step.name, ref) for step in self.steps
            for ref in (*step.refs.values(), *step.prompt_refs.values()) if ref.source == "job" and ref.path))
        for step in self.steps:
            for rule in step.exits:
                if rule.action != "loop":
                    continue
                field = f"steps.{step.name}.exits[{rule.name!r}].target"
                if rule.target not in by_name:
                    raise FlowError(field, f"unknown step {rule.target!r}" + suggest(str(rule.target), by_name))
                if rule.target != step.name and rule.target not in self.ancestors(step.name):
                    raise FlowError(field, f"{rule.target!r} must be {step.name!r} itself or a step it depends on")

    def bind_inputs(self, inputs: Any) -> dict[str, Any]:
        """The job inputs for ``spawn(self, inputs)``: checked, with declared defaults filled in.

        Raises :class:`InputError` naming every missing, unknown or mistyped input (or, for a flow
        without declared inputs, every ``$job.x`` a step reads that ``inputs`` lacks), and
        ``TypeError`` if ``inputs`` is not a mapping.
        """
        if inputs is None:
            inputs = {}
        if not isinstance(inputs, Mapping):
            raise TypeError(f"inputs must be a mapping of name -> value, got {type(inputs).__name__}")
        problems: dict[str, str] = {}
        bound = dict(inputs)
        if self.inputs is not None:
            for name in inputs:
                if name not in self.inputs:
                    problems[str(name)] = "unknown input" + suggest(str(name), self.inputs)
            for name, decl in self.inputs.items():
                if name not in inputs:
                    if decl.has_default:
                        bound[name] = decl.default
                    else:
                        problems[name] = f"missing (a {decl.type_name})"
                elif (wrong := decl.check(inputs[name])) is not None:
                    problems[name] = wrong
        for step_name, ref in self._job_refs:
            if ref.path[0] in problems:
                continue
            try:
                ref.resolve(bound, {}, None)
            except KeyError:
                problems.setdefault(".".join(ref.path), f"missing, read by step {step_name!r} as {ref}")
        if problems:
            raise InputError(self.name, problems)
        return bound

    def step(self, name: str) -> Step:
        """The step called ``name``."""
        return self._by_name[name]

    @property
    def deps(self) -> Mapping[str, frozenset[str]]:
        """Direct dependencies of every step."""
        return self._deps

    def ancestors(self, name: str) -> frozenset[str]:
        """Every step ``name`` transitively depends on."""
        seen: set[str] = set()
        todo = list(self._deps[name])
        while todo:
            n = todo.pop()
            if n not in seen:
                seen.add(n)
                todo.extend(self._deps[n])
        return frozenset(seen)

    def descendants(self, name: str) -> frozenset[str]:
        """Every step that transitively depends on ``name``."""
        return frozenset(s for s in self._deps if name in self.ancestors(s))

    def loop_span(self, step: str, target: str) -> frozenset[str]:
        """The steps a loop from ``step`` back to ``target`` runs again: the target and every step
        on a path from it to ``step`` (``step`` included)."""
        return frozenset({target} | (self.descendants(target) & (self.ancestors(step) | {step})))
