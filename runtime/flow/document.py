"""The flow document: the plain-data model of a flow (what YAML and stored flows hold), how data
is structured into it by cattrs, and where in the data each problem lies.

The model mirrors the Python API field for field (``steps`` as a mapping or a list,
``run``/``command``/``agent``/``prompt``, ``after``, ``inputs``, ``exits`` with ``when``,
``action``, ``target``, ``max_iterations``, ``timeout`` and ``on_timeout``, ``on_error`` and
``timeout``; an agent's ``mode`` and ``mcp_servers``, a list).  A problem is located by a :data:`DataPath` (``("steps", 1, "after")``) and named
by :func:`field_name` (``steps.fix.after``).
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Mapping
from typing import Any, NoReturn

import attrs
import cattrs
from cattrs.errors import ClassValidationError, ForbiddenExtraKeysError, IterableValidationError

from .errors import FlowError

__all__ = ["DataPath", "Fail", "FlowDataError", "FlowDoc", "McpServerDoc", "StepDoc", "document_of", "field_name"]

DataPath = tuple[str | int, ...]
"""Where a node sits in a flow document: keys and list positions from the root."""

RULE_FIELD = re.compile(r"exits\[['\"](.*)['\"]\]")


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
    timeout: float | None = None
    on_timeout: str | None = None


@attrs.define
class OnErrorDoc:
    action: str = "fail"
    max_attempts: int = 3
    backoff: float = 0.1


@attrs.define
class McpServerDoc:
    name: str
    command: str | None = None
    args: list[str] = attrs.Factory(list)
    env: dict[str, str] = attrs.Factory(dict)
    env_from: list[str] = attrs.Factory(list)
    url: str | None = None
    transport: str | None = None
    headers_from: dict[str, str] = attrs.Factory(dict)


@attrs.define
class AgentDoc:
    command: list[str]
    env: dict[str, str] = attrs.Factory(dict)
    permissions: str = "reject"
    env_from: list[str] = attrs.Factory(list)
    auth: str | None = None
    start_timeout: float | None = None
    terminals: bool = False
    mode: str | None = None
    mcp_servers: list[McpServerDoc] = attrs.Factory(list)


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


def _bool(value: Any, _type: Any) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"expected true or false, got {type(value).__name__} {value!r}")
    return value


def _int(value: Any, _type: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"expected an integer, got {type(value).__name__}")
    return value


def _items(hook: Any, what: str) -> Any:
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

def _list_of(hook: Any, what: str) -> Any:
    def structure(value: Any, _t: Any) -> Any:
        if not isinstance(value, list):
            raise TypeError(f"expected a list of {what}s, got {type(value).__name__}")
        return _items(hook, what)(value, _t)

    return structure


def _mapping_of(hook: Any, what: str) -> Any:
    def structure(value: Any, _t: Any) -> Any:
        if not isinstance(value, Mapping):
            raise TypeError(f"expected a mapping for {what}, got {type(value).__name__}")
        return hook(value, None)

    return structure


def _make_converter() -> cattrs.Converter:
    conv = cattrs.Converter(forbid_extra_keys=True)

    def on(tp: Any, hook: Any) -> None:
        conv.register_structure_hook_func(lambda t: t == tp, hook)

    # str, int and float have class hooks in cattrs' single dispatch, which wins over predicate
    # hooks: register these as class hooks too, or '5' would pass as a number and 5 as a string
    conv.register_structure_hook(str, _strict(str))
    conv.register_structure_hook(int, _int)
    conv.register_structure_hook(float, _number)
    conv.register_structure_hook(bool, _bool)
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
    mcp_hook = attrs_hook(McpServerDoc)

    on(list[StepDoc], _items(steps_hook, "step"))
    on(list[ExitDoc], _items(exits_hook, "exit rule"))
    on(list[McpServerDoc], _list_of(mcp_hook, "MCP server"))
    on(OnErrorDoc, lambda v, t: _mapping_of(on_error_hook, "on_error")({"action": v} if isinstance(v, str) else v, t))
    on(AgentDoc, lambda v, t: _mapping_of(agent_hook, "agent")({"command": v} if isinstance(v, str | list) else v, t))
    on(dict[str, Any], lambda v, t: dict(_mapping_of(lambda x, _: x, "inputs")(v, t)))
    on(dict[str, str], lambda v, t: {str(k): str(x) for k, x in _mapping_of(lambda x, _: x, "env")(v, t).items()})
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
        for noted, note in with_notes[0]:
            where: str | int | None = getattr(note, "name", None)
            if where is None:
                where = getattr(note, "index", None)
            _walk(noted, (*path, where) if where is not None else path, out)
        for plain in with_notes[1]:
            _walk(plain, path, out)
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


Fail = Callable[[DataPath, str], NoReturn]
"""Raise the problem at a path (as a :class:`FlowDataError`)."""


def document_of(data: Mapping[str, Any], fail: Fail) -> FlowDoc:
    """Structure ``data`` into a :class:`FlowDoc`; the first problem goes to ``fail``."""
    try:
        doc: FlowDoc = _CONVERTER.structure(data, FlowDoc)
    except Exception as exc:
        problems: list[tuple[DataPath, str]] = []
        _walk(exc, (), problems)
        # a misspelt key also makes a required one go missing: name the misspelling first
        problems.sort(key=lambda item: not item[1].startswith("unknown field"))
        path, problem = problems[0] if problems else ((), str(exc))
        fail(path, problem)
    return doc


def unstructure(doc: FlowDoc) -> dict[str, Any]:
    """``doc`` as plain data."""
    out: dict[str, Any] = _CONVERTER.unstructure(doc)
    return out
