"""Steps: what runs (a python function, a command, an agent prompt), after what, with which
inputs, how its failures are routed (:class:`OnError`) and where it goes next (:class:`ExitRule`).

Every invalid definition raises :class:`~runtime.flow.FlowError` at construction.
"""

from __future__ import annotations

import inspect
import math
import typing
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any, Literal

import attrs

from .errors import FlowError, suggest
from .inputs import InputRef, parse_input
from .mcp import McpServer
from .rules import Expression, ExpressionError, compile_when
from .templates import template_fields

__all__ = ["ACTIONS", "ERROR_ACTIONS", "PERMISSION_MODES", "TIMEOUT_ACTIONS", "AgentSpec", "ErrorAction",
           "ExitAction", "ExitRule", "OnError", "PermissionMode", "Step", "StepFn", "TimeoutAction", "WhenFn",
           "positive_seconds_or_none"]

ExitAction = Literal["advance", "loop", "escalate", "abandon"]
"""What an exit rule does when its ``when`` holds."""
ErrorAction = Literal["fail", "retry", "abandon", "continue"]
"""How a step failure is routed (``on_error``)."""
TimeoutAction = Literal["abandon", "fail", "advance"]
"""What an escalate rule's ``on_timeout`` does when no resume came within its ``timeout``."""
ACTIONS: tuple[ExitAction, ...] = typing.get_args(ExitAction)
TIMEOUT_ACTIONS: tuple[TimeoutAction, ...] = typing.get_args(TimeoutAction)
ERROR_ACTIONS: tuple[ErrorAction, ...] = typing.get_args(ErrorAction)
PermissionMode = Literal["reject", "allow", "allow_always"]
PERMISSION_MODES: tuple[PermissionMode, ...] = typing.get_args(PermissionMode)

StepFn = Callable[[Any, dict[str, Any]], Awaitable[Mapping[str, Any] | None]]
WhenFn = Callable[[Mapping[str, Any]], Any]


def positive_seconds_or_none(field: str) -> Callable[[Any, Any, Any], None]:
    def check(inst: Any, _attr: Any, value: Any) -> None:
        _check_seconds(f"steps.{inst.name}.{field}" if isinstance(inst, Step) else field, value)

    return check


def _check_seconds(where: str, value: Any) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise FlowError(where, f"must be a number of seconds, got {type(value).__name__} {value!r}")
    if not math.isfinite(value) or value <= 0:
        raise FlowError(where, f"must be a positive, finite number of seconds, got {value!r}")


def _permission_mode(value: str) -> PermissionMode:
    for mode in PERMISSION_MODES:
        if value == mode:
            return mode
    raise FlowError("agent.permissions", f"{value!r} is not one of {', '.join(PERMISSION_MODES)}")


def _str_tuple(value: Iterable[str]) -> tuple[str, ...]:
    return tuple(value)


def _rule_tuple(value: Iterable[ExitRule]) -> tuple[ExitRule, ...]:
    return tuple(value)


@attrs.frozen
class OnError:
    """How a step failure (exception, non-zero exit, timeout) is routed.

    ``retry`` runs the step again up to ``max_attempts`` attempts in all, sleeping
    ``backoff * 2 ** (attempt - 1)`` seconds before attempt ``attempt + 1`` (or ``backoff(attempt)``
    when it is a callable), then fails the job.
    """

    action: ErrorAction = "fail"
    max_attempts: int = 3
    backoff: float | Callable[[int], float] = 0.1

    def __attrs_post_init__(self) -> None:
        if self.action not in ERROR_ACTIONS:
            raise FlowError("on_error.action", f"{self.action!r} is not one of {', '.join(ERROR_ACTIONS)}"
                            + suggest(str(self.action), ERROR_ACTIONS))
        if not isinstance(self.max_attempts, int) or self.max_attempts < 1:
            raise FlowError("on_error.max_attempts", f"must be an integer >= 1, got {self.max_attempts!r}")
        if not callable(self.backoff) and (not isinstance(self.backoff, int | float) or self.backoff < 0):
            raise FlowError("on_error.backoff", f"must be seconds >= 0 or a callable, got {self.backoff!r}")

    def delay(self, attempt: int) -> float:
        """Seconds to wait after failed attempt ``attempt`` (1-based)."""
        if callable(self.backoff):
            return float(self.backoff(attempt))
        return float(self.backoff * 2 ** (attempt - 1))


@attrs.frozen
class ExitRule:
    """Tried in order when a step completes: if ``when`` holds, ``action`` is taken.

    ``when`` is a callable over the step's outputs, a safe expression string over ``outputs``,
    ``inputs``, ``attempt`` and ``iteration`` (see :mod:`runtime.rules`), or ``None`` (always).

    An ``escalate`` rule may give the pause a deadline: ``timeout`` seconds after it paused the
    job, if nobody resumed it, ``on_timeout`` decides -- ``abandon`` (the default once ``timeout``
    is set, filled in at construction), ``fail``, or ``advance`` (resume with payload ``None``).
    """

    name: str
    when: WhenFn | str | None = None
    action: ExitAction = "advance"
    target: str | None = None
    max_iterations: int | None = None
    timeout: float | None = None
    on_timeout: TimeoutAction | None = None
    _expr: Expression | None = attrs.field(init=False, default=None, repr=False, eq=False)

    def __attrs_post_init__(self) -> None:
        where = f"exits[{self.name!r}]"
        if not isinstance(self.name, str) or not self.name:
            raise FlowError("exits.name", "an exit rule needs a non-empty name")
        if self.action not in ACTIONS:
            raise FlowError(f"{where}.action",
                            f"{self.action!r} is not one of {', '.join(ACTIONS)}" + suggest(str(self.action), ACTIONS))
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
        self._check_deadline(where)

    def _check_deadline(self, where: str) -> None:
        for field in ("timeout", "on_timeout"):
            if getattr(self, field) is not None and self.action != "escalate":
                raise FlowError(f"{where}.{field}",
                                f"only an escalate rule takes {field} (action is {self.action!r})")
        _check_seconds(f"{where}.timeout", self.timeout)
        if self.on_timeout is not None and self.on_timeout not in TIMEOUT_ACTIONS:
            raise FlowError(f"{where}.on_timeout", f"{self.on_timeout!r} is not one of {', '.join(TIMEOUT_ACTIONS)}"
                            + suggest(str(self.on_timeout), TIMEOUT_ACTIONS))
        if self.on_timeout is not None and self.timeout is None:
            raise FlowError(f"{where}.on_timeout", "needs a timeout (seconds) to act on")
        if self.timeout is not None and self.on_timeout is None:
            object.__setattr__(self, "on_timeout", "abandon")

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


def _names(value: Iterable[str]) -> tuple[str, ...]:
    if isinstance(value, str):
        raise FlowError("agent.env_from", f"must be a list of variable names, got the string {value!r}")
    return tuple(value)


def _servers(value: Iterable[McpServer]) -> tuple[McpServer, ...]:
    return tuple(value)


def _redacted(env: tuple[tuple[str, str], ...]) -> str:
    return repr({name: "***" for name, _ in env})


def _check_env_from(spec: AgentSpec) -> None:
    given = {name for name, _ in spec.env}
    for name in spec.env_from:
        if not isinstance(name, str) or not name or "=" in name:
            raise FlowError("agent.env_from", f"{name!r} is not a variable name")
        if name in given:
            raise FlowError("agent.env_from", f"{name} is also given a value in env")
    if len(set(spec.env_from)) != len(spec.env_from):
        raise FlowError("agent.env_from", "names a variable twice")


@attrs.frozen
class AgentSpec:
    """How to start an ACP agent adapter.  Equal specs within one job share one adapter process.

    ``env`` gives variables by value, ``env_from`` names variables copied from the runtime's
    environment when the adapter starts.  Values stay in memory: the store keeps only the names
    (a resumed job reads them all from its runtime's environment, see :mod:`runtime.flow.secrets`),
    and ``repr`` shows ``env`` redacted.  ``mcp_servers`` (:class:`~runtime.flow.McpServer`) are
    kept the same way.  ``mode`` is set with ``session/set_mode`` in every session; a mode the
    agent does not advertise fails the step naming it and the agent's modes.
    """

    command: tuple[str, ...] = attrs.field(converter=_str_tuple)
    env: tuple[tuple[str, str], ...] = attrs.field(factory=tuple, converter=_env_tuple, repr=_redacted)
    permissions: PermissionMode = attrs.field(default="reject", converter=_permission_mode)
    env_from: tuple[str, ...] = attrs.field(factory=tuple, converter=_names)
    #: An ``authMethods`` id of the agent: ``authenticate`` with it before ``session/new``.
    auth: str | None = None
    #: Seconds for initialize (+ authenticate) and each session/new; ``None``: the runtime's default.
    start_timeout: float | None = attrs.field(default=None, validator=positive_seconds_or_none("agent.start_timeout"))
    #: Serve the agent's ``terminal/*``: commands in contained process groups, cwd in the workspace.
    terminals: bool = False
    #: A mode id of the agent: ``session/set_mode`` to it after each ``session/new``.
    mode: str | None = None
    #: MCP servers passed in each ``session/new`` (values of their env are secrets, like ``env``).
    mcp_servers: tuple[McpServer, ...] = attrs.field(factory=tuple, converter=_servers)

    def __attrs_post_init__(self) -> None:
        if not self.command or not all(isinstance(c, str) for c in self.command):
            raise FlowError("agent.command", "must be a non-empty list of strings")
        if not isinstance(self.terminals, bool):
            raise FlowError("agent.terminals", f"must be true or false, got {self.terminals!r}")
        _check_env_from(self)
        if self.auth is not None and (not isinstance(self.auth, str) or not self.auth):
            raise FlowError("agent.auth", f"must be an authMethods id (a non-empty string), got {self.auth!r}")
        if self.mode is not None and (not isinstance(self.mode, str) or not self.mode):
            raise FlowError("agent.mode", f"must be a mode id (a non-empty string), got {self.mode!r}")
        names = [s.name for s in self.mcp_servers if isinstance(s, McpServer)]
        if len(names) != len(self.mcp_servers):
            raise FlowError("agent.mcp_servers", "must be a list of McpServer")
        if len(set(names)) != len(names):
            raise FlowError("agent.mcp_servers", f"names an MCP server twice: {sorted(names)}")


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
    after: tuple[str, ...] = attrs.field(factory=tuple, converter=_str_tuple)
    inputs: Mapping[str, Any] = attrs.field(factory=dict)
    exits: tuple[ExitRule, ...] = attrs.field(factory=tuple, converter=_rule_tuple)
    on_error: OnError = attrs.field(factory=OnError)
    timeout: float | None = attrs.field(default=None, validator=positive_seconds_or_none("timeout"))
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
