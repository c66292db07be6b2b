"""Flows from YAML files, on top of the kernel's codec (:mod:`runtime.flow.codec`).

The document is the codec's (the Python API field for field).  YAML is composed into nodes so
that every error can name the file, the line and the field::

    flows/bad.yaml:12: steps.fix.after: unknown step 'triag' (did you mean 'triage'?)

A python step names its function as ``module:function``.  In an agent or command step, a first
word ``python`` means the interpreter running corral.  Nothing runs when a file is invalid.
"""

from __future__ import annotations

import contextlib
import gc
import os
import stat
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import yaml

from ..flow import Flow, FlowError
from ..flow.codec import DataPath, FlowDataError, field_name, flow_from_data

__all__ = ["DEFAULT_MAX_FLOW_BYTES", "FlowLoadError", "load_flow", "load_flow_text"]

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


class _Lines:
    """Line numbers of every node of a composed YAML document, by path."""

    def __init__(self, node: yaml.Node | None, *, from_text: bool = False) -> None:
        self.lines: dict[DataPath, int] = {}
        self.default = 1 if from_text else None  # an empty file still has a line 1
        self.duplicate: tuple[DataPath, int] | None = None  # the first key repeated in a mapping
        if node is not None:
            self._visit(node, ())

    def _visit(self, node: yaml.Node, path: DataPath) -> None:
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

    def _alias(self, node: yaml.Node, path: DataPath, parent: DataPath) -> None:
        if parent and parent[-1] in ("steps", "exits"):
            self._visit(node, path)

    def line(self, path: DataPath) -> int | None:
        while path:
            if path in self.lines:
                return self.lines[path]
            path = path[:-1]
        return self.lines.get((), self.default)


def _from_data(data: Any, file: str, lines: _Lines) -> Flow:
    if not isinstance(data, Mapping):
        raise FlowLoadError(file, lines.line(()), field_name((), data),
                            f"a flow file must be a mapping with 'name' and 'steps', got {type(data).__name__}")
    try:
        return flow_from_data(data)
    except FlowDataError as exc:
        raise FlowLoadError(file, lines.line(exc.path), exc.field, exc.problem) from None


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
    get = loader.get_event
    get()  # StreamStart
    if loader.check_event(ev.StreamEndEvent):
        get()
        return None
    get()  # DocumentStart
    composer = _Composer(loader.resolve)
    while True:
        event = get()
        kind = event.__class__
        if kind is ev.ScalarEvent:
            composer.scalar(event)
        elif kind is ev.MappingStartEvent:
            composer.start(event, yaml.MappingNode)
        elif kind is ev.SequenceStartEvent:
            composer.start(event, yaml.SequenceNode)
        elif kind is ev.MappingEndEvent or kind is ev.SequenceEndEvent:
            composer.end(event)
        elif kind is ev.AliasEvent:
            composer.alias(event)
        elif kind is ev.DocumentEndEvent:
            break
        else:  # pragma: no cover - the parser emits nothing else inside a document
            raise _YamlRefused(event.start_mark.line + 1, f"unexpected {kind.__name__}")
    if not loader.check_event(ev.StreamEndEvent):
        mark = loader.peek_event().start_mark
        raise _YamlRefused(mark.line + 1, "expected a single YAML document, found another")
    get()
    return composer.root[0]


class _Composer:
    """Nodes from parser events, with the document's nesting depth and alias growth bounded."""

    __slots__ = ("added", "anchors", "resolve", "root", "sizes", "stack")

    def __init__(self, resolve: Any) -> None:
        self.resolve = resolve
        self.anchors: dict[str, yaml.Node] = {}
        self.sizes: dict[int, tuple[int, int]] = {}  # id(collection) -> (nodes, depth) once it has ended
        # per open collection: [node, its value list, pending mapping key or None, nodes, depth below]
        self.stack: list[list[Any]] = []
        self.root: list[yaml.Node] = []
        self.added = 0  # nodes aliases add beyond the written ones

    def scalar(self, event: Any) -> None:
        tag = event.tag
        if tag is None or tag == "!":
            tag = self.resolve(yaml.ScalarNode, event.value, event.implicit)
        node = yaml.ScalarNode(tag, event.value, event.start_mark, event.end_mark, style=event.style)
        if event.anchor is not None:
            self.anchors[event.anchor] = node
        self._place(node, 1, 0)

    def start(self, event: Any, cls: type[yaml.MappingNode] | type[yaml.SequenceNode]) -> None:
        tag = event.tag
        if tag is None or tag == "!":
            tag = self.resolve(cls, None, event.implicit)
        node = cls(tag, [], event.start_mark, None, flow_style=event.flow_style)
        if event.anchor is not None:
            self.anchors[event.anchor] = node
        if len(self.stack) >= MAX_DEPTH:
            raise _YamlRefused(event.start_mark.line + 1, f"nested deeper than {MAX_DEPTH} levels")
        self.stack.append([node, node.value, None, 1, 1])

    def end(self, event: Any) -> None:
        done, _value, _key, nodes, depth = self.stack.pop()
        done.end_mark = event.end_mark
        self.sizes[id(done)] = (nodes, depth)
        self._place(done, nodes, depth)

    def alias(self, event: Any) -> None:
        line = event.start_mark.line + 1
        target = self.anchors.get(event.anchor)
        if target is None:
            raise _YamlRefused(line, f"found undefined alias {event.anchor!r}")
        if target.__class__ is yaml.ScalarNode:
            nodes, depth = 1, 0
        elif id(target) in self.sizes:
            nodes, depth = self.sizes[id(target)]
        else:
            raise _YamlRefused(line, f"alias {event.anchor!r} refers to a collection that contains it")
        self.added += nodes
        if self.added > MAX_ALIAS_NODES:
            raise _YamlRefused(line, f"aliases expand the document by more than {MAX_ALIAS_NODES} nodes "
                                     "(refused: an alias bomb?)")
        if len(self.stack) + depth > MAX_DEPTH:
            raise _YamlRefused(line, f"nested deeper than {MAX_DEPTH} levels")
        self._place(target, nodes, depth)

    def _place(self, node: yaml.Node, nodes: int, depth: int) -> None:
        if not self.stack:
            self.root.append(node)
            return
        top = self.stack[-1]
        top[3] += nodes
        if depth >= top[4]:
            top[4] = depth + 1
        if top[0].__class__ is yaml.SequenceNode:
            top[1].append(node)
        elif top[2] is None:
            top[2] = node
        else:
            top[1].append((top[2], node))
            top[2] = None


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
        if "maximum nesting depth" in problem:
            # libyaml 0.2.6+ (PyYAML 6.0.4 wheels) has a nesting limit of its own, which its parser
            # may reach before the composer sees level MAX_DEPTH: the same refusal, in our words
            raise FlowLoadError(file, line, "(yaml)", f"nested deeper than {MAX_DEPTH} levels") from None
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
            raise FlowLoadError(file, line, field_name(path, data), f"duplicate key {path[-1]!r}")
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

