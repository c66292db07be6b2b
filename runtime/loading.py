"""Flows from YAML (and to/from plain dicts for the store), through cattrs.

The document model mirrors the Python API field for field (``steps`` as a mapping or a list,
``run``/``command``/``agent``/``prompt``, ``after``, ``inputs``, ``exits`` with ``when``,
``action``, ``target``, ``max_iterations``, ``on_error`` and ``timeout``).  YAML is composed into
nodes so that every error can name the file, the line and the field::

    flows/bad.yaml:12: steps.fix.after: unknown step 'triag' (did you mean 'triage'?)

A python step names its function as ``module:function``.  In an agent or command step, a first
word ``python`` means the interpreter running corral.  Nothing runs when a file is invalid.
"""

from __future__ import annotations

import contextlib
import difflib
import gc
import importlib
import os
import re
import stat
import sys
import traceback
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import attrs
import cattrs
import yaml
from cattrs.errors import ClassValidationError, ForbiddenExtraKeysError, IterableValidationError

from .flow import NO_DEFAULT, AgentSpec, ExitRule, Flow, FlowError, FlowInput, OnError, Step

__all__ = ["DEFAULT_MAX_FLOW_BYTES", "FlowLoadError", "flow_from_dict", "flow_to_dict", "load_flow",
           "load_flow_text"]

Path_ = tuple[str | int, ...]

_RULE_FIELD = re.compile(r"exits\[['\"](.*)['\"]\]")

DEFAULT_MAX_FLOW_BYTES = 1 << 20
"""The largest flow file :func:`load_flow` reads (1 MiB); bigger files are refused before parsing."""

MAX_DEPTH = 100
"""How deeply a flow document may nest mappings and sequences (aliases included)."""

MAX_ALIAS_NODES = 100_000
"""How many nodes aliases may add to a document beyond those written in it (billion laughs)."""

FILE_FIELD = "(file)"  # the field of a problem with the whole file: left out of the message

# the C parser when PyYAML was built with libyaml (about 10x faster), else the pure-python one
_Loader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class FlowLoadError(FlowError):
    """An invalid flow file: ``file``, ``line`` and ``field`` say where."""

    def __init__(self, file: str, line: int | None, field: str, problem: str) -> None:
        # a problem of the whole file (missing, empty, too big, not text) has no line or field
        where = file if line is None else f"{file}:{line}"
        ValueError.__init__(self, f"{where}: {problem}" if field in ("", FILE_FIELD) else f"{where}: {field}: {problem}")
        self.file = file
        self.line = line
        self.field = field
        self.problem = problem


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


def _walk(exc: BaseException, path: Path_, out: list[tuple[Path_, str]]) -> None:
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


def _field_name(path: Path_, data: Any = None) -> str:
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


class _Lines:
    """Line numbers of every node of a composed YAML document, by path."""

    def __init__(self, node: yaml.Node | None, *, from_text: bool = False) -> None:
        self.lines: dict[Path_, int] = {}
        self.default = 1 if from_text else None  # an empty file still has a line 1
        self.duplicate: tuple[Path_, int] | None = None  # the first key repeated in a mapping
        if node is not None:
            self._visit(node, ())

    def _visit(self, node: yaml.Node, path: Path_) -> None:
        # a field's line is the line of its key, not of its value (a block value starts below it)
        self.lines.setdefault(path, node.start_mark.line + 1)
        if isinstance(node, yaml.MappingNode):
            seen: set[Any] = set()
            for i, (k, v) in enumerate(node.value):
                key = k.value
                if key in seen and self.duplicate is None:
                    self.duplicate = ((*path, key), k.start_mark.line + 1)
                seen.add(key)
                self.lines[(*path, key)] = k.start_mark.line + 1
                self._visit(v, (*path, key))
                # a mapping of named items (steps/exits) is also reachable by position
                self.lines.setdefault((*path, i), k.start_mark.line + 1)
                self._alias(v, (*path, i), path)
        elif isinstance(node, yaml.SequenceNode):
            for i, v in enumerate(node.value):
                self._visit(v, (*path, i))

    def _alias(self, node: yaml.Node, path: Path_, parent: Path_) -> None:
        if parent and parent[-1] in ("steps", "exits"):
            self._visit(node, path)

    def line(self, path: Path_) -> int | None:
        while path:
            if path in self.lines:
                return self.lines[path]
            path = path[:-1]
        return self.lines.get((), self.default)


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
        base: Path_ = ("steps", i)
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
            path: Path_ = ("steps", index, *parts[2:]) if index is not None else ("steps",)
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


def _from_data(data: Any, file: str, lines: _Lines) -> Flow:
    def fail(path: Path_, problem: str) -> None:
        raise FlowLoadError(file, lines.line(path), _field_name(path, data), problem)

    if not isinstance(data, Mapping):
        fail((), f"a flow file must be a mapping with 'name' and 'steps', got {type(data).__name__}")
    try:
        doc = _CONVERTER.structure(data, FlowDoc)
    except Exception as exc:
        problems: list[tuple[Path_, str]] = []
        _walk(exc, (), problems)
        # a misspelt key also makes a required one go missing: name the misspelling first
        problems.sort(key=lambda item: not item[1].startswith("unknown field"))
        path, problem = problems[0] if problems else ((), str(exc))
        fail(path, problem)
    return _build(doc, fail)


# -- reading and parsing ------------------------------------------------------------------------


class _YamlRefused(Exception):
    """A document refused while it is composed: ``line`` (1-based) and ``problem``."""

    def __init__(self, line: int | None, problem: str) -> None:
        super().__init__(problem)
        self.line = line
        self.problem = problem


def _compose(loader: Any) -> yaml.Node | None:
    """The single document of ``loader``'s stream as a node tree, or ``None`` for no document.

    One pass over the parser's events (libyaml's parser keeps its own stack, it does not recurse),
    composed here without recursion so that nesting and alias expansion are checked as they come:
    deeper than :data:`MAX_DEPTH` (the C composer overflows the C stack near 500k levels), an alias
    to a collection that contains it, or aliases adding more than :data:`MAX_ALIAS_NODES` nodes,
    and the document is refused before any of it is constructed.  (This is also about twice as
    fast as PyYAML's C composer, which calls back into Python for every node.)
    """
    ev = yaml.events
    get, resolve = loader.get_event, loader.resolve
    get()  # StreamStart
    if loader.check_event(ev.StreamEndEvent):
        get()
        return None
    get()  # DocumentStart
    anchors: dict[str, yaml.Node] = {}
    sizes: dict[int, tuple[int, int]] = {}  # id(collection) -> (nodes, depth) once it has ended
    # per open collection: [node, its value list, pending mapping key or None, nodes, depth below]
    stack: list[list[Any]] = []
    root: list[yaml.Node] = []
    added = 0  # nodes aliases add beyond the written ones
    scalar_node, sequence_node, mapping_node = yaml.ScalarNode, yaml.SequenceNode, yaml.MappingNode

    def place(node: yaml.Node, nodes: int, depth: int) -> None:
        if not stack:
            root.append(node)
            return
        top = stack[-1]
        top[3] += nodes
        if depth >= top[4]:
            top[4] = depth + 1
        if top[0].__class__ is sequence_node:
            top[1].append(node)
        elif top[2] is None:
            top[2] = node
        else:
            top[1].append((top[2], node))
            top[2] = None

    while True:
        event = get()
        kind = event.__class__
        if kind is ev.ScalarEvent:
            tag = event.tag
            if tag is None or tag == "!":
                tag = resolve(scalar_node, event.value, event.implicit)
            node: yaml.Node = scalar_node(tag, event.value, event.start_mark, event.end_mark, style=event.style)
            if event.anchor is not None:
                anchors[event.anchor] = node
            place(node, 1, 0)
        elif kind is ev.MappingStartEvent or kind is ev.SequenceStartEvent:
            cls = mapping_node if kind is ev.MappingStartEvent else sequence_node
            tag = event.tag
            if tag is None or tag == "!":
                tag = resolve(cls, None, event.implicit)
            node = cls(tag, [], event.start_mark, None, flow_style=event.flow_style)
            if event.anchor is not None:
                anchors[event.anchor] = node
            if len(stack) >= MAX_DEPTH:
                raise _YamlRefused(event.start_mark.line + 1, f"nested deeper than {MAX_DEPTH} levels")
            stack.append([node, node.value, None, 1, 1])
        elif kind is ev.MappingEndEvent or kind is ev.SequenceEndEvent:
            done, _value, _key, nodes, depth = stack.pop()
            done.end_mark = event.end_mark
            sizes[id(done)] = (nodes, depth)
            place(done, nodes, depth)
        elif kind is ev.AliasEvent:
            line = event.start_mark.line + 1
            target = anchors.get(event.anchor)
            if target is None:
                raise _YamlRefused(line, f"found undefined alias {event.anchor!r}")
            if target.__class__ is scalar_node:
                nodes, depth = 1, 0
            elif id(target) in sizes:
                nodes, depth = sizes[id(target)]
            else:
                raise _YamlRefused(line, f"alias {event.anchor!r} refers to a collection that contains it")
            added += nodes
            if added > MAX_ALIAS_NODES:
                raise _YamlRefused(line, f"aliases expand the document by more than {MAX_ALIAS_NODES} nodes "
                                         "(refused: an alias bomb?)")
            if len(stack) + depth > MAX_DEPTH:
                raise _YamlRefused(line, f"nested deeper than {MAX_DEPTH} levels")
            place(target, nodes, depth)
        elif kind is ev.DocumentEndEvent:
            break
        else:  # pragma: no cover - the parser emits nothing else inside a document
            raise _YamlRefused(event.start_mark.line + 1, f"unexpected {kind.__name__}")
    if not loader.check_event(ev.StreamEndEvent):
        mark = loader.peek_event().start_mark
        raise _YamlRefused(mark.line + 1, "expected a single YAML document, found another")
    get()
    return root[0]


def _parse(text: str, file: str) -> tuple[_Lines | None, Any]:
    """Compose ``text`` once (libyaml when present), note its lines, construct its data from the nodes.

    The lines come first: constructing merges ``<<`` keys into the nodes themselves.
    """
    loader = _Loader(text)
    try:
        node = _compose(loader)
        if node is None:
            return None, None
        lines = _Lines(node, from_text=True)
        data = loader.construct_document(node)
    except _YamlRefused as exc:
        raise FlowLoadError(file, exc.line, "(yaml)", exc.problem) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        problem = getattr(exc, "problem", None) or str(exc)
        raise FlowLoadError(file, line, "(yaml)", f"invalid YAML: {problem}") from None
    except ValueError as exc:  # a scalar the constructor cannot convert (an int of 10k digits, say)
        raise FlowLoadError(file, None, "(yaml)", f"invalid YAML: {exc}") from None
    finally:
        loader.dispose()
    return lines, data


@contextlib.contextmanager
def _gc_paused() -> Iterator[None]:
    """The cyclic GC off while a document's (acyclic) objects are made, as it was after.

    A big file makes millions of small objects; each GC pass walks all those made so far, which
    made parsing a 10 MB file four times slower than the parsing itself."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def load_flow_text(text: str, file: str = "<string>") -> Flow:
    """Parse a YAML flow; raise :class:`FlowLoadError` naming file, line and field.

    The text is parsed once.  A document nested deeper than :data:`MAX_DEPTH`, or whose aliases
    would add more than :data:`MAX_ALIAS_NODES` nodes (or refer to a collection containing them),
    is refused; so is a mapping with a duplicate key.
    """
    if "\x00" in text:
        raise FlowLoadError(file, None, FILE_FIELD, "not UTF-8 text (it contains NUL bytes: a binary file?)")
    with _gc_paused():
        lines, data = _parse(text, file)
        if lines is None:
            raise FlowLoadError(file, None, FILE_FIELD,
                                "empty file (no YAML document; a flow needs 'name' and 'steps')")
        if lines.duplicate is not None:
            path, line = lines.duplicate
            raise FlowLoadError(file, line, _field_name(path, data), f"duplicate key {path[-1]!r}")
        return _from_data(data, file, lines)


def _read_bounded(p: Path, max_bytes: int | None) -> bytes:
    """The bytes of ``p``, refused (before reading them) when there are more than ``max_bytes``."""
    file = str(p)

    def refuse(problem: str) -> FlowLoadError:
        return FlowLoadError(file, None, FILE_FIELD, problem)

    try:
        st = p.stat()
    except FileNotFoundError:
        raise refuse("cannot read: no such file") from None
    except NotADirectoryError:
        raise refuse("cannot read: no such file (a parent is not a directory)") from None
    except OSError as exc:
        raise refuse(f"cannot read: {exc.strerror or exc}") from None
    if stat.S_ISDIR(st.st_mode):
        raise refuse("cannot read: is a directory, not a flow file")
    too_big = (f"is larger than the flow file limit of {max_bytes} bytes (refused before parsing; "
               "raise it with --max-flow-bytes or CORRAL_MAX_FLOW_BYTES)")
    if max_bytes is not None and stat.S_ISREG(st.st_mode) and st.st_size > max_bytes:
        raise refuse(f"{st.st_size} bytes {too_big}")
    try:
        with p.open("rb") as f:
            # bounded even if the file grows, or is a pipe or a device that never ends
            raw = f.read(max_bytes + 1) if max_bytes is not None else f.read()
    except IsADirectoryError:
        raise refuse("cannot read: is a directory, not a flow file") from None
    except OSError as exc:
        raise refuse(f"cannot read: {exc.strerror or exc}") from None
    if max_bytes is not None and len(raw) > max_bytes:
        raise refuse(f"it {too_big}")
    return raw


def load_flow(path: str | os.PathLike[str], *, max_bytes: int | None = DEFAULT_MAX_FLOW_BYTES) -> Flow:
    """Load a flow from a YAML file (UTF-8 text of at most ``max_bytes``; ``None``: no limit).

    Whatever is wrong with the file — missing, a directory, empty, binary, too big, invalid —
    raises :class:`FlowLoadError` naming it.
    """
    if max_bytes is not None and max_bytes < 0:
        raise ValueError("max_bytes must be >= 0 (or None for no limit)")
    p = Path(path)
    file = str(p)
    raw = _read_bounded(p, max_bytes)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise FlowLoadError(file, line, FILE_FIELD,
                            f"not UTF-8 text (byte 0x{raw[exc.start]:02x} at offset {exc.start}: "
                            "a binary file?)") from None
    if not text.strip():
        raise FlowLoadError(file, None, FILE_FIELD, "empty file (a flow needs 'name' and 'steps')")
    return load_flow_text(text.removeprefix("\ufeff"), file)

def flow_from_dict(data: Mapping[str, Any]) -> Flow:
    """Rebuild a flow from :func:`flow_to_dict` (python steps are re-imported by reference)."""
    data = dict(data)
    if not data.pop("portable", True):
        raise FlowError("flow", f"flow {data.get('name')!r} uses a lambda, a nested function or a callable "
                                "'when' and cannot be rebuilt from its stored definition")
    return _from_data(data, "<stored flow>", _Lines(None))


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
