"""How a flow travels to its host, and how errors travel back.

A flow goes to its host as one cloudpickled object (Ray's own ``ray.cloudpickle``), the way Ray
ships any function: a step defined in the driver script (``__main__``), a closure, a lambda in
``when`` or a callable object runs on a host as it runs embedded.  :func:`pack` pickles it on the
controller, before anything is placed, and names the step (or the input) that cannot be pickled;
:func:`unpack` rebuilds it on the host.

A **durable** job's record must be resumable by a later process, which can rebuild its flow only
from the stored definition (python steps by ``module:function``): :func:`durable_problem` names
the first step that could not be rebuilt there.

:func:`plain` is what an error looks like when it comes back from a host: the exception's type
and message and the host it happened on, without Ray's wrapper text or ANSI escape codes, at most
:data:`MAX_ERROR` characters.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable, Mapping
from typing import Any

from runtime import Flow, Step

__all__ = ["MAX_ERROR", "durable_problem", "error_text", "pack", "plain", "unpack"]

#: The longest error text a host's failure comes back as.
MAX_ERROR = 600

_ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]")


def _dumps() -> Callable[[Any], bytes]:
    from ray import cloudpickle

    dumps: Callable[[Any], bytes] = cloudpickle.dumps
    return dumps


def pack(flow: Flow, inputs: Mapping[str, Any]) -> bytes:
    """``flow`` and its bound ``inputs`` pickled for the host; :class:`TypeError` naming the step
    or input that cannot be pickled."""
    dumps = _dumps()
    try:
        return dumps((flow, dict(inputs)))
    except Exception as exc:
        error = exc
    for step in flow.steps:
        _check(dumps, step, f"flow {flow.name!r}, step {step.name!r}")
    for name, value in inputs.items():
        _check(dumps, value, f"flow {flow.name!r}, input {name!r}")
    raise TypeError(f"flow {flow.name!r} cannot be sent to a host: {type(error).__name__}: {error}")


def _check(dumps: Callable[[Any], bytes], value: Any, what: str) -> None:
    try:
        dumps(value)
    except Exception as exc:
        raise TypeError(f"{what} cannot be sent to a host: {type(exc).__name__}: {exc}") from None


def unpack(data: bytes) -> tuple[Flow, dict[str, Any]]:
    """The flow and inputs :func:`pack` pickled (on the host)."""
    from ray import cloudpickle

    flow, inputs = cloudpickle.loads(data)
    if not isinstance(flow, Flow) or not isinstance(inputs, dict):
        raise TypeError(f"expected a pickled (Flow, dict), got {type(flow).__name__}")
    return flow, inputs


def _importable(fn: Any) -> str | None:
    """Why another process could not import ``fn`` by ``module:qualname``, or ``None`` if it can."""
    module, qualname = getattr(fn, "__module__", None), getattr(fn, "__qualname__", None)
    if not isinstance(module, str) or not isinstance(qualname, str):
        return f"{type(fn).__name__} object (not a function importable by module:function)"
    if "<lambda>" in qualname:
        return "a lambda"
    if "<locals>" in qualname:
        return f"{qualname.replace('.<locals>', '')}, a nested function (a closure)"
    if module == "__main__":
        return f"{qualname}, defined in the script itself (__main__)"
    try:
        obj: Any = importlib.import_module(module)
        for part in qualname.split("."):
            obj = getattr(obj, part)
    except Exception:
        return f"{module}:{qualname}, which cannot be imported"
    return None if obj is fn else f"{module}:{qualname}, which imports as another object"


def _step_problem(step: Step) -> str | None:
    if step.run is not None and (why := _importable(step.run)) is not None:
        return f"its run function is {why}"
    for rule in step.exits:
        if callable(rule.when):
            return f"exit rule {rule.name!r} has a callable when (use an expression string)"
    if callable(step.on_error.backoff):
        return "its on_error backoff is a callable (use a number of seconds)"
    return None


def durable_problem(flow: Flow) -> str | None:
    """Why a later process could not rebuild ``flow`` from its stored definition, naming the step;
    ``None`` when it can (every python step importable by name, every rule a string)."""
    for step in flow.steps:
        why = _step_problem(step)
        if why is not None:
            return (f"record='durable' on a cluster needs steps a later process can import by "
                    f"module:function; step {step.name!r}: {why}")
    return None


def plain(text: str, where: str) -> str:
    """An error from a host as one short plain text: no ANSI codes, ending with where it happened."""
    text = _ANSI.sub("", text).strip()
    suffix = f" (on {where})"
    room = MAX_ERROR - len(suffix)
    if len(text) > room:
        text = text[: room - 15].rstrip() + " ...(truncated)"
    return text + suffix


def error_text(exc: BaseException) -> str:
    """``Type: message`` of the user's exception inside a Ray error (its ``cause``), else of ``exc``."""
    cause = getattr(exc, "cause", None)
    inner = cause if isinstance(cause, BaseException) else exc
    message = str(inner).strip().splitlines()
    return f"{type(inner).__name__}: {message[0] if message else ''}".rstrip(": ")
