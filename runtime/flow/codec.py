"""Flows to and from plain data (the YAML document model, and the dicts the store keeps), by cattrs.

The document model mirrors the Python API field for field (``steps`` as a mapping or a list,
``run``/``command``/``agent``/``prompt``, ``after``, ``inputs``, ``exits`` with ``when``,
``action``, ``target``, ``max_iterations``, ``on_error`` and ``timeout``).  Every problem is a
:class:`FlowDataError` whose ``path`` locates the offending node in the data (``("steps", 1,
"after")``) and whose ``field`` names it (``steps.fix.after``); the CLI's YAML loader maps the
path to a file and line.  A python step names its function as ``module:function``; in an agent or
command step a first word ``python`` means the interpreter running corral.

No YAML here: this is the kernel's codec.
"""

from __future__ import annotations

import difflib
import importlib
import re
import sys
import traceback
from collections.abc import Mapping
from typing import Any, NoReturn

import attrs
import cattrs
from cattrs.errors import ClassValidationError, ForbiddenExtraKeysError, IterableValidationError

from .errors import FlowError
from .inputs import NO_DEFAULT, FlowInput
from .model import AgentSpec, ExitRule, Flow, OnError, Step

__all__ = ["DataPath", "FlowDataError", "field_name", "flow_from_data", "flow_from_dict", "flow_to_dict"]

DataPath = tuple[str | int, ...]
"""Where a node sits in a flow document: keys and list positions from the root."""

_RULE_FIELD = re.compile(r"exits\[['\"](.*)['\"]\]")


class FlowDataError(FlowError):
    """Flow data that does not describe a valid flow; ``path`` locates the node, ``field`` names it."""

    def __init__(self, path: DataPath, field: str, problem: str) -> None:
        super().__init__(field, problem)
        self.path = path


# -- the document model ------------------------------------------------------------------------


@attrs.define
class ExitDoc:
    name: str | None = None
    when: str | None = None
    action: str = "advance"
    target: str | None = None
    max_iterations: int | None = None


@attrs.define
class OnErrorDoc:
    action: str = "fail"
    max_attempts: int = 3
    backoff: float = 0.1


@attrs.define
class AgentDoc:
    command: list[str]
    env: dict[str, str] = attrs.Factory(dict)
    permissions: str = "reject"


@attrs.define
class StepDoc:
    name: str | None = None
    run: str | None = None
    command: list[str] | None = None
    agent: AgentDoc | None = None
    prompt: str | None = None
    after: list[str] = attrs.Factory(list)
    inputs: dict[str, Any] = attrs.Factory(dict)
    exits: list[ExitDoc] = attrs.Factory(list)
    on_error: OnErrorDoc | None = None
    timeout: float | None = None


@attrs.define
class FlowDoc:
    name: str
    steps: list[StepDoc]
    timeout: float | None = None
    description: str | None = None
    inputs: dict[str, Any] | None = None  # name -> type name, or {type: ..., default: ...}


def _named_items(value: Any, what: str) -> Any:
    """``{name: {...}}`` -> ``[{name: name, ...}]``; lists pass through."""
    if isinstance(value, Mapping):
        out = []
        for name, body in value.items():
            if body is None:
                body = {}
            if not isinstance(body, Mapping):
                raise cattrs.errors.BaseValidationError(
                    f"{what} {name!r} must be a mapping", [TypeError(f"{what} {name!r} must be a mapping")], dict)
            out.append({"name": name, **body})
        return out
    return value


def _str_list(value: Any, _type: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if not isinstance(value, list) or not all(isinstance(v, str | int | float) for v in value):
        raise TypeError(f"expected a string or a list of strings, got {type(value).__name__}")
    return [str(v) for v in value]


def _strict(cls: type) -> Any:
    def hook(value: Any, _type: Any) -> Any:
        if not isinstance(value, cls):
            raise TypeError(f"expected {cls.__name__}, got {type(value).__name__}")
        return value

    return hook


# YAML 1.1 (PyYAML) reads `1e3` as a string: it wants a dot and a signed exponent (`1.0e+3`)
_EXPONENT_FLOAT = re.compile(r"[-+]?[0-9]+(\.[0-9]*)?[eE][-+]?[0-9]+")


def _number(value: Any, _type: Any) -> float:
    if isinstance(value, str) and _EXPONENT_FLOAT.fullmatch(value):
        return float(value)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"expected a number, got {type(value).__name__}")
    return float(value)


def _make_converter() -> cattrs.Converter:
    conv = cattrs.Converter(forbid_extra_keys=True)

    def on(tp: Any, hook: Any) -> None:
        conv.register_structure_hook_func(lambda t: t == tp, hook)

    def int_hook(value: Any, _t: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"expected an integer, got {type(value).__name__}")
        return value

    # str, int and float have class hooks in cattrs' single dispatch, which wins over predicate
    # hooks: register these as class hooks too, or '5' would pass as a number and 5 as a string
    conv.register_structure_hook(str, _strict(str))
    conv.register_structure_hook(int, int_hook)
    conv.register_structure_hook(float, _number)
    on(list[str], _str_list)
    generated: dict[type, Any] = {}

    def attrs_hook(cls: type) -> Any:
        # generated on first use, once every hook below is registered
        def hook(value: Any, _t: Any) -> Any:
            if cls not in generated:
                generated[cls] = conv.gen_structure_attrs_fromdict(cls)
            return generated[cls](value, cls)

        return hook

    steps_hook, exits_hook = attrs_hook(StepDoc), attrs_hook(ExitDoc)
    on_error_hook, agent_hook = attrs_hook(OnErrorDoc), attrs_hook(AgentDoc)

    def items(hook: Any, what: str) -> Any:
        def structure(value: Any, _t: Any) -> list[Any]:
            value = _named_items(value, what)
            if not isinstance(value, list):
                raise TypeError(f"expected a mapping or a list of {what}s, got {type(value).__name__}")
            errors, out = [], []
            for i, item in enumerate(value):
                try:
                    if not isinstance(item, Mapping):
                        raise TypeError(f"a {what} must be a mapping, got {type(item).__name__}")
                    out.append(hook(item, None))
                except Exception as exc:
                    exc.__notes__ = [*getattr(exc, "__notes__", []),
                                     cattrs.IterableValidationNote(f"@ index {i}", i, Any)]
                    errors.append(exc)
            if errors:
                raise IterableValidationError(f"invalid {what}s", errors, list)
            return out

        return structure

    def mapping_of(hook: Any, what: str) -> Any:
        def structure(value: Any, _t: Any) -> Any:
            if not isinstance(value, Mapping):
                raise TypeError(f"expected a mapping for {what}, got {type(value).__name__}")
            return hook(value, None)

        return structure

    on(list[StepDoc], items(steps_hook, "step"))
    on(list[ExitDoc], items(exits_hook, "exit rule"))
    on(OnErrorDoc, lambda v, t: mapping_of(on_error_hook, "on_error")({"action": v} if isinstance(v, str) else v, t))
    on(AgentDoc, lambda v, t: mapping_of(agent_hook, "agent")({"command": v} if isinstance(v, str | list) else v, t))
    on(dict[str, Any], lambda v, t: dict(mapping_of(lambda x, _: x, "inputs")(v, t)))
    on(dict[str, str], lambda v, t: {str(k): str(x) for k, x in mapping_of(lambda x, _: x, "env")(v, t).items()})
    return conv


_CONVERTER = _make_converter()


# -- errors: from cattrs' exception tree to (path, message) -------------------------------------


def _walk(exc: BaseException, path: DataPath, out: list[tuple[DataPath, str]]) -> None:
    if isinstance(exc, ForbiddenExtraKeysError):
        known = [f.name for f in attrs.fields(exc.cl)] if attrs.has(exc.cl) else []
        for key in sorted(exc.extra_fields):
            close = difflib.get_close_matches(str(key), known, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else f" (known: {', '.join(known)})"
            out.append(((*path, key), f"unknown field {key!r}" + hint))
        return
    if isinstance(exc, ClassValidationError | IterableValidationError):
        with_notes = exc.group_exceptions() if hasattr(exc, "group_exceptions") else ([], [])
        for sub, note in with_notes[0]:
            key = getattr(note, "name", None)
            if key is None:
                key = getattr(note, "index", None)
            _walk(sub, (*path, key) if key is not None else path, out)
        for sub in with_notes[1]:
            _walk(sub, path, out)
        return
    if isinstance(exc, KeyError):
        out.append((path, f"missing required field {exc.args[0]!r}" if exc.args else "missing field"))
        return
    if isinstance(exc, BaseExceptionGroup):
        for sub in exc.exceptions:
            _walk(sub, path, out)
        return
    out.append((path, str(exc) or type(exc).__name__))


def field_name(path: DataPath, data: Any = None) -> str:
    """``("steps", 1, "after")`` -> ``steps.fix.after`` (named items by name where known)."""
    text = ""
    node = data
    for i, part in enumerate(path):
        if isinstance(part, int) and i and path[i - 1] in ("steps", "exits"):
            items = _named_items(node, "item") if isinstance(node, Mapping | list) else None
            item = items[part] if isinstance(items, list) and part < len(items) else None
            name = item.get("name") if isinstance(item, Mapping) else None
            text += f".{name}" if isinstance(name, str) else f"[{part}]"
            node = item
            continue
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
        node = node.get(part) if isinstance(node, Mapping) else (
            node[part] if isinstance(node, list) and isinstance(part, int) and part < len(node) else None)
    return text or "(document)"


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


def _input_decls(doc: FlowDoc, fail: Any) -> dict[str, FlowInput] | None:
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


def _build(doc: FlowDoc, fail: Any) -> Flow:
    inputs = _input_decls(doc, fail)
    steps = []
    for i, sd in enumerate(doc.steps):
        base: DataPath = ("steps", i)
        if not sd.name:
            fail((*base, "name"), "a step needs a name")
        exits = []
        for j, ed in enumerate(sd.exits):
            try:
                exits.append(ExitRule(ed.name or f"exit{j}", when=ed.when, action=ed.action, target=ed.target,
                                      max_iterations=ed.max_iterations))
            except FlowError as exc:
                fail((*base, "exits", j, exc.field.rsplit(".", 1)[-1]), exc.problem)
        on_error = OnError()
        if sd.on_error is not None:
            try:
                on_error = OnError(sd.on_error.action, sd.on_error.max_attempts, sd.on_error.backoff)
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
            try:
                agent = AgentSpec(_argv(sd.agent.command), sd.agent.env, sd.agent.permissions)
            except FlowError as exc:
                fail((*base, "agent", exc.field.rsplit(".", 1)[-1]), exc.problem)
        try:
            steps.append(Step(
                sd.name, run=run, command=_argv(sd.command) if sd.command is not None else None, agent=agent,
                prompt=sd.prompt, after=sd.after, inputs=sd.inputs, exits=exits, on_error=on_error,
                timeout=sd.timeout))
        except FlowError as exc:
            rest = exc.field.split(".")[2:] if exc.field.startswith("steps.") else [exc.field]
            fail((*base, *rest), exc.problem)
    try:
        return Flow(doc.name, steps, timeout=doc.timeout, inputs=inputs)
    except FlowError as exc:
        parts = exc.field.split(".")
        if exc.field == "steps" and exc.problem.startswith("cycle: "):
            parts = ["steps", exc.problem.removeprefix("cycle: ").split(" -> ")[0]]  # where it starts
        if parts[0] == "steps" and len(parts) > 1:
            index = next((i for i, s in enumerate(doc.steps) if s.name == parts[1]), None)
            path: DataPath = ("steps", index, *parts[2:]) if index is not None else ("steps",)
            rule = _RULE_FIELD.fullmatch(parts[2]) if index is not None and len(parts) > 2 else None
            if rule is not None:  # exits['name'] -> exits, position of the rule named 'name'
                name = rule.group(1)
                j = next((j for j, e in enumerate(doc.steps[index].exits)
                          if (e.name or f"exit{j}") == name), None)
                path = ("steps", index, "exits", j, *parts[3:]) if j is not None else path[:2]
        else:
            path = tuple(parts)
        fail(path, exc.problem)
    raise AssertionError("unreachable")


def flow_from_data(data: Any) -> Flow:
    """Build a :class:`Flow` from a flow document (parsed YAML, JSON, or a dict); python steps
    are imported by reference.  Raises :class:`FlowDataError` naming the first problem."""

    def fail(path: DataPath, problem: str) -> NoReturn:
        raise FlowDataError(path, field_name(path, data), problem)

    if not isinstance(data, Mapping):
        fail((), f"a flow must be a mapping with 'name' and 'steps', got {type(data).__name__}")
    try:
        doc = _CONVERTER.structure(data, FlowDoc)
    except Exception as exc:
        problems: list[tuple[DataPath, str]] = []
        _walk(exc, (), problems)
        # a misspelt key also makes a required one go missing: name the misspelling first
        problems.sort(key=lambda item: not item[1].startswith("unknown field"))
        path, problem = problems[0] if problems else ((), str(exc))
        fail(path, problem)
    return _build(doc, fail)


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


def flow_to_dict(flow: Flow) -> dict[str, Any]:
    """A JSON-ready definition of ``flow``.  Python steps become ``module:function`` references;
    a lambda or nested function is stored as ``None`` (such a flow cannot be resumed)."""
    steps = []
    portable = True
    for s in flow.steps:
        if (s.run is not None and _ref(s.run) is None) or any(callable(r.when) for r in s.exits) \
                or callable(s.on_error.backoff):
            portable = False
        doc = StepDoc(
            name=s.name, run=_ref(s.run) if s.run is not None else None,
            command=list(s.command) if s.command is not None else None,
            agent=AgentDoc(list(s.agent.command), dict(s.agent.env), s.agent.permissions) if s.agent else None,
            prompt=s.prompt, after=list(s.after), inputs=dict(s.inputs),
            exits=[ExitDoc(r.name, r.when if isinstance(r.when, str) else None, r.action, r.target,
                           r.max_iterations) for r in s.exits],
            on_error=OnErrorDoc(s.on_error.action, s.on_error.max_attempts,
                                float(s.on_error.backoff) if not callable(s.on_error.backoff) else 0.1),
            timeout=s.timeout,
        )
        steps.append(doc)
    decls = None if flow.inputs is None else {
        name: {"type": d.type_name, **({"default": d.default} if d.has_default else {})}
        for name, d in flow.inputs.items()}
    out: dict[str, Any] = _CONVERTER.unstructure(FlowDoc(flow.name, steps, flow.timeout, inputs=decls))
    out.pop("description", None)
    if decls is None:
        out.pop("inputs", None)
    out["portable"] = portable
    return out
