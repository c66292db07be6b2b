"""Flow definitions: frozen attrs classes, validated when they are built.

A :class:`Flow` is a DAG of :class:`Step` s.  Every invalid definition raises :class:`FlowError`
at construction, naming the field and what is wrong, so nothing invalid can ever run.
"""

from __future__ import annotations

import difflib
import enum
import inspect
import math
import re
from collections.abc import Awaitable, Callable, Iterable, Mapping
from types import MappingProxyType
from typing import Any, Literal

import attrs

from .rules import Expression, ExpressionError, compile_when

__all__ = [
    "ACTIONS",
    "ERROR_ACTIONS",
    "AgentSpec",
    "ExitRule",
    "Flow",
    "FlowError",
    "FlowInput",
    "InputError",
    "InputRef",
    "OnError",
    "Step",
]

ACTIONS = ("advance", "loop", "escalate", "abandon")
ERROR_ACTIONS = ("fail", "retry", "abandon", "continue")
PERMISSION_MODES = ("reject", "allow", "allow_always")

StepFn = Callable[[Any, dict[str, Any]], Awaitable[Mapping[str, Any] | None]]
WhenFn = Callable[[Mapping[str, Any]], Any]


_PLACEHOLDER = re.compile(r"\{\{|\}\}|\{([^{}]*)\}")


def template_fields(template: str) -> list[str]:
    """The placeholders of a prompt template: ``"{triage.summary}"`` -> ``["triage.summary"]``.

    ``{{`` and ``}}`` stand for literal braces.  Nothing is evaluated: a placeholder is a name or a
    dotted path, looked up in the step's inputs or, failing that, read as an input reference.
    """
    fields = []
    for match in _PLACEHOLDER.finditer(template):
        if match.group(1) is not None:
            name = match.group(1).strip()
            if not name or not all(part.strip() and part.replace("_", "a").replace("$", "a").isalnum()
                                   for part in name.split(".")):
                raise ValueError(f"placeholder {{{match.group(1)}}} is not a name or dotted path")
            fields.append(name)
    return fields


def fill_template(template: str, lookup: Callable[[str], Any]) -> str:
    """Replace every placeholder with ``str(lookup(name))``; ``{{``/``}}`` become braces."""

    def sub(match: re.Match[str]) -> str:
        token = match.group(0)
        if token == "{{":
            return "{"
        if token == "}}":
            return "}"
        value = lookup(match.group(1).strip())
        return value if isinstance(value, str) else str(value)

    return _PLACEHOLDER.sub(sub, template)


class FlowError(ValueError):
    """An invalid flow definition.  ``field`` names the offending field (e.g. ``steps.fix.after``)."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.problem = problem


def _suggest(name: str, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(name, list(choices), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _positive_or_none(field: str) -> Callable[[Any, Any, Any], None]:
    def check(inst: Any, _attr: Any, value: Any) -> None:
        if value is None:
            return
        where = f"steps.{inst.name}.{field}" if isinstance(inst, Step) else field
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise FlowError(where, f"must be a number of seconds, got {type(value).__name__} {value!r}")
        if not math.isfinite(value) or value <= 0:
            raise FlowError(where, f"must be a positive, finite number of seconds, got {value!r}")

    return check


@attrs.frozen
class InputRef:
    """A parsed input reference: ``$job.x``, ``$resume.x`` or ``$step.x`` (``path`` may be empty)."""

    source: Literal["job", "resume", "step"]
    step: str | None
    path: tuple[str, ...]

    @classmethod
    def parse(cls, text: str) -> InputRef:
        """Parse ``$job.x``, ``$resume.x`` or ``$step.field``; raise ``ValueError`` if malformed."""
        if not text.startswith("$") or text.startswith("$$"):
            raise ValueError(f"{text!r} is not a reference (a reference starts with one '$')")
        parts = text[1:].split(".")
        if any(not p for p in parts):
            raise ValueError(f"malformed reference {text!r}")
        head, path = parts[0], tuple(parts[1:])
        if head == "job":
            return cls("job", None, path)
        if head == "resume":
            return cls("resume", None, path)
        if not head.replace("_", "a").replace("-", "a").isalnum():
            raise ValueError(f"unknown reference {text!r} (use $job.x, $resume.x or $step.x)")
        return cls("step", head, path)

    def __str__(self) -> str:
        head = self.step if self.source == "step" else self.source
        return "$" + ".".join((str(head), *self.path))

    def resolve(self, job_inputs: Mapping[str, Any], outputs: Mapping[str, Mapping[str, Any]],
                resume: Any) -> Any:
        """The referenced value; ``KeyError`` naming the reference if a key is missing."""
        if self.source == "job":
            value: Any = job_inputs
        elif self.source == "resume":
            value = resume
        else:
            value = outputs[self.step]  # type: ignore[index]
        for i, key in enumerate(self.path):
            if not isinstance(value, Mapping) or key not in value:
                head = self.step if self.source == "step" else self.source
                where = "$" + ".".join((str(head), *self.path[: i + 1]))
                raise KeyError(f"input {where!r} is missing")
            value = value[key]
        return value


def parse_input(value: Any) -> tuple[InputRef | None, Any]:
    """Read one ``inputs`` value: ``(ref, None)`` for ``"$..."``, else ``(None, literal)``.

    A string starting with ``$`` is a reference; ``$$`` escapes a literal dollar (``"$$5"`` is the
    string ``"$5"``); everything else, strings included, is a literal value.
    """
    if isinstance(value, str) and value.startswith("$"):
        if value.startswith("$$"):
            return None, value[1:]
        return InputRef.parse(value), None
    return None, value


class _NoDefault(enum.Enum):
    NO_DEFAULT = "no default"


NO_DEFAULT = _NoDefault.NO_DEFAULT
"""The ``default`` of a :class:`FlowInput` that spawn must be given."""

_INPUT_TYPES: dict[str, type] = {"str": str, "int": int, "float": float, "bool": bool,
                                 "list": list, "dict": dict, "any": object}


@attrs.frozen
class FlowInput:
    """A declared job input: its ``type`` (``str``, ``int``, ``float``, ``bool``, ``list``,
    ``dict`` or ``object`` for any) and an optional ``default`` used when spawn omits it."""

    type: type = object
    default: Any = NO_DEFAULT

    def __attrs_post_init__(self) -> None:
        if self.type not in _INPUT_TYPES.values():
            raise FlowError("inputs", f"type {self.type!r} is not one of {', '.join(_INPUT_TYPES)}")
        if self.has_default and (wrong := self.check(self.default)) is not None:
            raise FlowError("inputs", f"the default {wrong}")

    @property
    def has_default(self) -> bool:
        """Whether spawn may omit this input."""
        return self.default is not NO_DEFAULT

    @property
    def type_name(self) -> str:
        """The type's name as YAML spells it (``any`` for ``object``)."""
        return next(name for name, tp in _INPUT_TYPES.items() if tp is self.type)

    def check(self, value: Any) -> str | None:
        """``None`` if ``value`` has this input's type, else what is wrong."""
        tp = self.type
        if tp is object:
            return None
        ok = isinstance(value, tp) and not (isinstance(value, bool) and tp is not bool)
        if tp is float and isinstance(value, int) and not isinstance(value, bool):
            ok = True
        return None if ok else f"must be {self.type_name}, got {type(value).__name__} {value!r}"

    @staticmethod
    def type_named(name: str) -> type:
        """The type YAML names ``name``; ``KeyError`` if there is none."""
        return _INPUT_TYPES[name]


def _input_decls(value: Mapping[str, Any] | None) -> Mapping[str, FlowInput] | None:
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise FlowError("inputs", f"must be a mapping of input name -> type, got {type(value).__name__}")
    out = {}
    for name, decl in value.items():
        if not isinstance(name, str) or not name.isidentifier():
            raise FlowError("inputs", f"invalid input name {name!r}")
        if isinstance(decl, FlowInput):
            out[name] = decl
        elif isinstance(decl, type):
            try:
                out[name] = FlowInput(decl)
            except FlowError as exc:
                raise FlowError(f"inputs.{name}", exc.problem) from None
        else:
            raise FlowError(f"inputs.{name}", f"must be a type or a FlowInput, got {decl!r}")
    return MappingProxyType(out)


class InputError(ValueError):
    """``spawn()`` inputs that do not fit the flow: ``problems`` maps each input name to what is wrong."""

    def __init__(self, flow: str, problems: Mapping[str, str]) -> None:
        self.flow = flow
        self.problems = dict(problems)
        text = "; ".join(f"{name}: {problem}" for name, problem in self.problems.items())
        super().__init__(f"inputs of flow {flow!r}: {text}")


@attrs.frozen
class OnError:
    """How a step failure (exception, non-zero exit, timeout) is routed.

    ``retry`` runs the step again up to ``max_attempts`` attempts in all, sleeping
    ``backoff * 2 ** (attempt - 1)`` seconds before attempt ``attempt + 1`` (or ``backoff(attempt)``
    when it is a callable), then fails the job.
    """

    action: str = "fail"
    max_attempts: int = 3
    backoff: float | Callable[[int], float] = 0.1

    def __attrs_post_init__(self) -> None:
        if self.action not in ERROR_ACTIONS:
            raise FlowError("on_error.action", f"{self.action!r} is not one of {', '.join(ERROR_ACTIONS)}"
                            + _suggest(str(self.action), ERROR_ACTIONS))
        if not isinstance(self.max_attempts, int) or self.max_attempts < 1:
            raise FlowError("on_error.max_attempts", f"must be an integer >= 1, got {self.max_attempts!r}")
        if not callable(self.backoff) and (not isinstance(self.backoff, int | float) or self.backoff < 0):
            raise FlowError("on_error.backoff", f"must be seconds >= 0 or a callable, got {self.backoff!r}")

    def delay(self, attempt: int) -> float:
        """Seconds to wait after failed attempt ``attempt`` (1-based)."""
        if callable(self.backoff):
            return float(self.backoff(attempt))
        return float(self.backoff) * 2 ** (attempt - 1)


@attrs.frozen
class ExitRule:
    """Tried in order when a step completes: if ``when`` holds, ``action`` is taken.

    ``when`` is a callable over the step's outputs, a safe expression string over ``outputs``,
    ``inputs``, ``attempt`` and ``iteration`` (see :mod:`runtime.rules`), or ``None`` (always).
    """

    name: str
    when: WhenFn | str | None = None
    action: str = "advance"
    target: str | None = None
    max_iterations: int | None = None
    _expr: Expression | None = attrs.field(init=False, default=None, repr=False, eq=False)

    def __attrs_post_init__(self) -> None:
        where = f"exits[{self.name!r}]"
        if not isinstance(self.name, str) or not self.name:
            raise FlowError("exits.name", "an exit rule needs a non-empty name")
        if self.action not in ACTIONS:
            raise FlowError(f"{where}.action",
                            f"{self.action!r} is not one of {', '.join(ACTIONS)}" + _suggest(str(self.action), ACTIONS))
        if isinstance(self.when, str):
            try:
                object.__setattr__(self, "_expr", compile_when(self.when))
            except ExpressionError as exc:
                raise FlowError(f"{where}.when", str(exc)) from None
        elif self.when is not None and not callable(self.when):
            raise FlowError(f"{where}.when", f"must be a string expression or a callable, got {type(self.when).__name__}")
        if self.action == "loop":
            if not self.target:
                raise FlowError(f"{where}.target", "a loop rule needs a target step")
            if not isinstance(self.max_iterations, int) or self.max_iterations < 1:
                raise FlowError(f"{where}.max_iterations",
                                f"a loop rule needs max_iterations >= 1, got {self.max_iterations!r}")
        elif self.target is not None:
            raise FlowError(f"{where}.target", f"only a loop rule takes a target (action is {self.action!r})")

    def matches(self, outputs: Mapping[str, Any], inputs: Mapping[str, Any], attempt: int,
                iteration: int) -> bool:
        """Evaluate ``when``; raise :class:`~runtime.rules.ExpressionError` if it cannot be."""
        if self._expr is not None:
            return self._expr(outputs=outputs, inputs=inputs, attempt=attempt, iteration=iteration)
        if self.when is None:
            return True
        return bool(self.when(outputs))  # type: ignore[operator]


def _env_tuple(env: Mapping[str, str] | Iterable[tuple[str, str]] | None) -> tuple[tuple[str, str], ...]:
    items = env.items() if isinstance(env, Mapping) else (env or ())
    return tuple(sorted((str(k), str(v)) for k, v in items))


@attrs.frozen
class AgentSpec:
    """How to start an ACP agent adapter.  Equal specs within one job share one adapter process."""

    command: tuple[str, ...] = attrs.field(converter=tuple)
    env: tuple[tuple[str, str], ...] = attrs.field(factory=tuple, converter=_env_tuple)
    permissions: str = "reject"

    def __attrs_post_init__(self) -> None:
        if not self.command or not all(isinstance(c, str) for c in self.command):
            raise FlowError("agent.command", "must be a non-empty list of strings")
        if self.permissions not in PERMISSION_MODES:
            raise FlowError("agent.permissions",
                            f"{self.permissions!r} is not one of {', '.join(PERMISSION_MODES)}")


def _opt_tuple(value: Iterable[str] | None) -> tuple[str, ...] | None:
    return None if value is None else tuple(value)


@attrs.frozen
class Step:
    """One node of a flow: exactly one of ``run`` (python), ``command`` or ``agent``."""

    name: str
    run: StepFn | None = None
    command: tuple[str, ...] | None = attrs.field(default=None, converter=_opt_tuple)
    agent: AgentSpec | None = None
    prompt: str | None = None
    after: tuple[str, ...] = attrs.field(factory=tuple, converter=tuple)
    inputs: Mapping[str, Any] = attrs.field(factory=dict)
    exits: tuple[ExitRule, ...] = attrs.field(factory=tuple, converter=tuple)
    on_error: OnError = attrs.field(factory=OnError)
    timeout: float | None = attrs.field(default=None, validator=_positive_or_none("timeout"))
    _refs: Mapping[str, InputRef] = attrs.field(init=False, factory=dict, repr=False, eq=False)
    _prompt_refs: Mapping[str, InputRef] = attrs.field(init=False, factory=dict, repr=False, eq=False)
    _literals: Mapping[str, Any] = attrs.field(init=False, factory=dict, repr=False, eq=False)
    _reads_resume: bool = attrs.field(init=False, default=False, repr=False, eq=False)

    def __attrs_post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name or "." in self.name or self.name.startswith("$"):
            raise FlowError("steps.name", f"invalid step name {self.name!r} (non-empty, no '.', no leading '$')")
        here = f"steps.{self.name}"
        kinds = [k for k in ("run", "command", "agent") if getattr(self, k) is not None]
        if len(kinds) != 1:
            raise FlowError(here, "needs exactly one of run, command or agent"
                            + (f" (got {', '.join(kinds)})" if kinds else ""))
        if self.run is not None and not _is_async_callable(self.run):
            got = "a lambda" if getattr(self.run, "__name__", "") == "<lambda>" else (
                "a plain function" if callable(self.run) else type(self.run).__name__)
            raise FlowError(f"{here}.run", f"must be an async def function (ctx, inputs) -> dict, got {got}")
        if self.command is not None and (not self.command or not all(isinstance(c, str) for c in self.command)):
            raise FlowError(f"{here}.command", "must be a non-empty list of strings")
        if self.agent is not None and not isinstance(self.agent, AgentSpec):
            raise FlowError(f"{here}.agent", "must be an AgentSpec")
        if self.agent is not None and self.prompt is None:
            raise FlowError(f"{here}.prompt", "an agent step needs a prompt")
        if self.agent is None and self.prompt is not None:
            raise FlowError(f"{here}.prompt", "only an agent step takes a prompt")
        if not isinstance(self.inputs, Mapping):
            raise FlowError(f"{here}.inputs", "must be a mapping of local name -> '$reference' or literal")
        refs, literals = {}, {}
        for local, value in self.inputs.items():
            try:
                ref, literal = parse_input(value)
            except ValueError as exc:
                raise FlowError(f"{here}.inputs.{local}", str(exc)) from None
            if ref is None:
                literals[local] = literal
            else:
                refs[local] = ref
        prompt_refs = {}
        if self.prompt is not None:
            try:  # every placeholder is a lookup, so its '$' is optional: {triage.summary}
                for name in template_fields(self.prompt):
                    if name.split(".")[0] not in self.inputs:
                        prompt_refs[name] = InputRef.parse(name if name.startswith("$") else "$" + name)
            except ValueError as exc:
                raise FlowError(f"{here}.prompt", str(exc)) from None
        object.__setattr__(self, "_refs", refs)
        object.__setattr__(self, "_literals", literals)
        object.__setattr__(self, "_reads_resume", any(
            r.source == "resume" for r in (*refs.values(), *prompt_refs.values())))
        object.__setattr__(self, "_prompt_refs", prompt_refs)
        names = [r.name for r in self.exits]
        for i, rule in enumerate(self.exits):
            if not isinstance(rule, ExitRule):
                raise FlowError(f"{here}.exits[{i}]", "must be an ExitRule")
            if names.count(rule.name) > 1:
                raise FlowError(f"{here}.exits", f"duplicate exit rule name {rule.name!r}")

    @property
    def kind(self) -> str:
        """``python``, ``command`` or ``agent``."""
        return "python" if self.run is not None else "command" if self.command is not None else "agent"

    @property
    def refs(self) -> Mapping[str, InputRef]:
        """Parsed input references by local name (literal, non-string inputs are not listed)."""
        return self._refs

    @property
    def prompt_refs(self) -> Mapping[str, InputRef]:
        """Prompt placeholders that are input references (not local input names)."""
        return self._prompt_refs

    @property
    def literals(self) -> Mapping[str, Any]:
        """Literal inputs by local name, ``$$`` escapes already undone."""
        return self._literals

    @property
    def reads_resume(self) -> bool:
        """Whether an input or the prompt reads ``$resume``: the step waits for a resume."""
        return self._reads_resume

    def depends_on(self) -> frozenset[str]:
        """Steps this one waits for: ``after`` plus every step its inputs or prompt read."""
        refs = (*self._refs.values(), *self._prompt_refs.values())
        return frozenset(self.after) | {r.step for r in refs if r.step is not None}


def _is_async_callable(fn: Any) -> bool:
    if inspect.iscoroutinefunction(fn):
        return True
    call = getattr(type(fn), "__call__", None)  # noqa: B004  (an object whose __call__ is async)
    return not inspect.isfunction(fn) and not inspect.ismethod(fn) and inspect.iscoroutinefunction(call)


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
    steps: tuple[Step, ...] = attrs.field(converter=tuple)
    timeout: float | None = attrs.field(default=None, validator=_positive_or_none("timeout"))
    inputs: Mapping[str, FlowInput] | None = attrs.field(default=None, converter=_input_decls)
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
                                    f"unknown step {dep!r}" + _suggest(dep, by_name))
                if dep == step.name:
                    raise FlowError(f"steps.{step.name}.after", "a step cannot wait for itself")
            checks = [(f"steps.{step.name}.inputs.{local}", ref) for local, ref in step.refs.items()]
            checks += [(f"steps.{step.name}.prompt", ref) for ref in step.prompt_refs.values()]
            for field, ref in checks:
                if ref.step is not None and ref.step not in by_name:
                    raise FlowError(field, f"unknown step {ref.step!r} in {ref}"
                                    + _suggest(ref.step, [*by_name, "job", "resume"]))
                if ref.step == step.name:
                    raise FlowError(field, "a step cannot read its own outputs")
                if ref.source == "job" and self.inputs is not None and ref.path \
                        and ref.path[0] not in self.inputs:
                    raise FlowError(field, f"{ref} reads an undeclared input {ref.path[0]!r}"
                                    + _suggest(ref.path[0], self.inputs))
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
                    raise FlowError(field, f"unknown step {rule.target!r}" + _suggest(str(rule.target), by_name))
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
                    problems[str(name)] = "unknown input" + _suggest(str(name), self.inputs)
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
