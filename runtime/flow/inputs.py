"""Job inputs: references a step reads (``$job.x``, ``$resume.x``, ``$step.x``) and declared inputs."""

from __future__ import annotations

import builtins
import enum
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, Literal

import attrs

from .errors import FlowError

__all__ = ["NO_DEFAULT", "FlowInput", "InputError", "InputRef", "input_decls", "parse_input"]


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
    def type_named(name: str) -> builtins.type:
        """The type YAML names ``name``; ``KeyError`` if there is none."""
        return _INPUT_TYPES[name]


def input_decls(value: Mapping[str, Any] | None) -> Mapping[str, FlowInput] | None:
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
