"""Flows to and from plain data: the kernel's codec (no YAML here).

:func:`flow_from_data` builds a :class:`~runtime.flow.Flow` from a flow document (parsed YAML,
JSON, a dict), raising :class:`~runtime.flow.document.FlowDataError` at the first problem with
its path and field; :func:`flow_to_dict` / :func:`flow_from_dict` are what the store keeps.  A
python step names its function as ``module:function``; in an agent or command step a first word
``python`` means the interpreter running corral.
"""

from __future__ import annotations

import importlib
import sys
import traceback
from collections.abc import Mapping
from typing import Any, NoReturn, cast

from .document import (
    RULE_FIELD,
    AgentDoc,
    DataPath,
    ExitDoc,
    Fail,
    FlowDataError,
    FlowDoc,
    McpServerDoc,
    OnErrorDoc,
    StepDoc,
    document_of,
    field_name,
    unstructure,
)
from .errors import FlowError
from .inputs import NO_DEFAULT, FlowInput
from .mcp import McpServer, McpTransport
from .model import Flow
from .step import AgentSpec, ErrorAction, ExitAction, ExitRule, OnError, Step, TimeoutAction

__all__ = ["DataPath", "FlowDataError", "field_name", "flow_from_data", "flow_from_dict", "flow_to_dict"]


# -- building the Flow -------------------------------------------------------------------------


def _import(ref: str) -> Any:
    module, _, name = ref.partition(":")
    if not module or not name:
        raise ValueError(f"{ref!r} is not of the form 'module:function'")
    try:
        obj: Any = importlib.import_module(module)
    except SyntaxError as exc:  # the module's own file and line, not a traceback
        where = f"{exc.filename}:{exc.lineno}" if exc.filename else f"line {exc.lineno}"
        raise ValueError(f"cannot import module {module!r}: syntax error at {where}: {exc.msg}") from None
    except ImportError as exc:
        raise ValueError(f"cannot import module {module!r}: {exc}") from None
    except Exception as exc:  # the module raised while it was imported
        frames = traceback.extract_tb(exc.__traceback__)
        where = f" at {frames[-1].filename}:{frames[-1].lineno}" if frames else ""
        raise ValueError(f"importing module {module!r} raised {type(exc).__name__}{where}: {exc}") from None
    for part in name.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise ValueError(f"module {module!r} has no attribute {name!r}") from None
    if not callable(obj):
        raise ValueError(f"{ref!r} is not callable")
    return obj


def _argv(words: list[str]) -> list[str]:
    return [sys.executable, *words[1:]] if words and words[0] == "python" else words


def _input_decls(doc: FlowDoc, fail: Fail) -> dict[str, FlowInput] | None:
    if doc.inputs is None:
        return None
    types = ", ".join(_INPUT_TYPE_NAMES)
    decls = {}
    for name, spec in doc.inputs.items():
        default = NO_DEFAULT
        if isinstance(spec, str):
            type_name = spec
        elif isinstance(spec, Mapping) and set(spec) <= {"type", "default"}:
            type_name = spec.get("type", "any")
            default = spec.get("default", NO_DEFAULT)
        else:
            fail(("inputs", name), f"must be a type name ({types}) or {{type: ..., default: ...}}")
        try:
            tp = FlowInput.type_named(type_name)
        except (KeyError, TypeError):
            fail(("inputs", name), f"unknown type {type_name!r} (one of {types})")
        try:
            decls[str(name)] = FlowInput(tp, default)
        except FlowError as exc:
            fail(("inputs", name, "default"), exc.problem)
    return decls


_INPUT_TYPE_NAMES = ("str", "int", "float", "bool", "list", "dict", "any")


def _build(doc: FlowDoc, fail: Fail) -> Flow:
    inputs = _input_decls(doc, fail)
    steps = [_build_step(sd, ("steps", i), fail) for i, sd in enumerate(doc.steps)]
    try:
        return Flow(doc.name, steps, timeout=doc.timeout, inputs=inputs)
    except FlowError as exc:
        fail(_path_of(doc, exc), exc.problem)


def _build_step(sd: StepDoc, base: DataPath, fail: Fail) -> Step:
    if not sd.name:
        fail((*base, "name"), "a step needs a name")
    exits = []
    for j, ed in enumerate(sd.exits):
        try:
            # the document holds any string; ExitRule and OnError refuse one that is not an action
            exits.append(ExitRule(ed.name or f"exit{j}", when=ed.when, action=cast(ExitAction, ed.action),
                                  target=ed.target, max_iterations=ed.max_iterations, timeout=ed.timeout,
                                  on_timeout=cast(TimeoutAction | None, ed.on_timeout)))
        except FlowError as exc:
            fail((*base, "exits", j, exc.field.rsplit(".", 1)[-1]), exc.problem)
    on_error = OnError()
    if sd.on_error is not None:
        try:
            on_error = OnError(cast(ErrorAction, sd.on_error.action), sd.on_error.max_attempts,
                               sd.on_error.backoff)
        except FlowError as exc:
            fail((*base, "on_error", exc.field.rsplit(".", 1)[-1]), exc.problem)
    run = None
    if sd.run is not None:
        try:
            run = _import(sd.run)
        except ValueError as exc:
            fail((*base, "run"), str(exc))
    agent = None
    if sd.agent is not None:
        servers = [_mcp_server(md, (*base, "agent", "mcp_servers", i), fail)
                   for i, md in enumerate(sd.agent.mcp_servers)]
        try:
            agent = AgentSpec(_argv(sd.agent.command), sd.agent.env, sd.agent.permissions, sd.agent.env_from,
                              auth=sd.agent.auth, start_timeout=sd.agent.start_timeout,
                              terminals=sd.agent.terminals, mode=sd.agent.mode, mcp_servers=servers)
        except FlowError as exc:
            fail((*base, "agent", exc.field.rsplit(".", 1)[-1]), exc.problem)
    try:
        return Step(sd.name, run=run, command=_argv(sd.command) if sd.command is not None else None,
                    agent=agent, prompt=sd.prompt, after=sd.after, inputs=sd.inputs, exits=exits,
                    on_error=on_error, timeout=sd.timeout)
    except FlowError as exc:
        rest = exc.field.split(".")[2:] if exc.field.startswith("steps.") else [exc.field]
        fail((*base, *rest), exc.problem)


def _mcp_server(md: McpServerDoc, base: DataPath, fail: Fail) -> McpServer:
    command = md.command
    if command == "python":
        command = sys.executable
    try:
        return McpServer(md.name, command, md.args, md.env, md.env_from, md.url,
                         cast(McpTransport | None, md.transport), md.headers_from)
    except FlowError as exc:
        fail((*base, exc.field.rsplit(".", 1)[-1]), exc.problem)


def _path_of(doc: FlowDoc, exc: FlowError) -> DataPath:
    """Where in the document a :class:`FlowError` of the whole flow lies (``steps.fix.after``
    names the step; the data path needs its position)."""
    parts = exc.field.split(".")
    if exc.field == "steps" and exc.problem.startswith("cycle: "):
        parts = ["steps", exc.problem.removeprefix("cycle: ").split(" -> ")[0]]  # where it starts
    if parts[0] != "steps" or len(parts) == 1:
        return tuple(parts)
    index = next((i for i, s in enumerate(doc.steps) if s.name == parts[1]), None)
    if index is None:
        return ("steps",)
    rule = RULE_FIELD.fullmatch(parts[2]) if len(parts) > 2 else None
    if rule is None:
        return ("steps", index, *parts[2:])
    # exits['name'] -> exits, position of the rule named 'name'
    j = next((j for j, e in enumerate(doc.steps[index].exits) if (e.name or f"exit{j}") == rule.group(1)), None)
    return ("steps", index, "exits", j, *parts[3:]) if j is not None else ("steps", index)


def flow_from_data(data: Any) -> Flow:
    """Build a :class:`Flow` from a flow document (parsed YAML, JSON, or a dict); python steps
    are imported by reference.  Raises :class:`FlowDataError` naming the first problem."""

    def fail(path: DataPath, problem: str) -> NoReturn:
        raise FlowDataError(path, field_name(path, data), problem)

    if not isinstance(data, Mapping):
        fail((), f"a flow must be a mapping with 'name' and 'steps', got {type(data).__name__}")
    return _build(document_of(data, fail), fail)


def flow_from_dict(data: Mapping[str, Any]) -> Flow:
    """Rebuild a flow from :func:`flow_to_dict` (python steps are re-imported by reference)."""
    data = dict(data)
    if not data.pop("portable", True):
        raise FlowError("flow", f"flow {data.get('name')!r} uses a lambda, a nested function or a callable "
                                "'when' and cannot be rebuilt from its stored definition")
    return flow_from_data(data)


def _ref(fn: Any) -> str | None:
    module = getattr(fn, "__module__", None)
    qualname = getattr(fn, "__qualname__", None)
    if not module or not qualname or "<" in qualname:
        return None
    return f"{module}:{qualname}"


def _mcp_doc(server: McpServer) -> McpServerDoc:
    return McpServerDoc(server.name, server.command, list(server.args), dict(server.env),
                        list(server.env_from), server.url, server.transport, dict(server.headers_from))


def _agent_doc(spec: AgentSpec, env_values: bool) -> AgentDoc:
    if env_values:
        return AgentDoc(list(spec.command), dict(spec.env), spec.permissions, list(spec.env_from),
                        spec.auth, spec.start_timeout, spec.terminals, spec.mode,
                        [_mcp_doc(s) for s in spec.mcp_servers])
    # the store keeps names only: a rebuilt flow reads every one from its runtime's environment
    names = sorted({*(name for name, _ in spec.env), *spec.env_from})
    return AgentDoc(list(spec.command), {}, spec.permissions, names, spec.auth, spec.start_timeout, spec.terminals,
                    spec.mode, [_mcp_doc(s.stored()) for s in spec.mcp_servers])


def flow_to_dict(flow: Flow, *, env_values: bool = False) -> dict[str, Any]:
    """A JSON-ready definition of ``flow``.  Python steps become ``module:function`` references;
    a lambda or nested function is stored as ``None`` (such a flow cannot be resumed).

    Secrets stay out: an agent's ``env`` values (and its MCP servers') are dropped and their names
    join ``env_from``,
    so the rebuilt flow reads them from the environment of the runtime that rebuilds it
    (:mod:`runtime.flow.secrets`).  ``env_values=True`` keeps the values, for handing a flow to
    another process in memory (the cluster backend), never for storing it.
    """
    steps = []
    portable = True
    for s in flow.steps:
        if (s.run is not None and _ref(s.run) is None) or any(callable(r.when) for r in s.exits) \
                or callable(s.on_error.backoff):
            portable = False
        doc = StepDoc(
            name=s.name, run=_ref(s.run) if s.run is not None else None,
            command=list(s.command) if s.command is not None else None,
            agent=_agent_doc(s.agent, env_values) if s.agent else None,
            prompt=s.prompt, after=list(s.after), inputs=dict(s.inputs),
            exits=[ExitDoc(r.name, r.when if isinstance(r.when, str) else None, r.action, r.target,
                           r.max_iterations, r.timeout, r.on_timeout) for r in s.exits],
            on_error=OnErrorDoc(s.on_error.action, s.on_error.max_attempts,
                                float(s.on_error.backoff) if not callable(s.on_error.backoff) else 0.1),
            timeout=s.timeout,
        )
        steps.append(doc)
    decls = None if flow.inputs is None else {
        name: {"type": d.type_name, **({"default": d.default} if d.has_default else {})}
        for name, d in flow.inputs.items()}
    out = unstructure(FlowDoc(flow.name, steps, flow.timeout, inputs=decls))
    out.pop("description", None)
    if decls is None:
        out.pop("inputs", None)
    out["portable"] = portable
    return out
