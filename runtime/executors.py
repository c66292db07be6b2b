"""Step executors: how a python, command or agent step runs inside its job."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from .context import StepContext
from .flow import Step

__all__ = ["executor_for", "run_python"]

Executor = Callable[[StepContext, Step, dict[str, Any]], Awaitable[Mapping[str, Any] | None]]


async def run_python(ctx: StepContext, step: Step, inputs: dict[str, Any]) -> Mapping[str, Any] | None:
    """A python step: ``await step.run(ctx, inputs)``."""
    assert step.run is not None
    return await step.run(ctx, inputs)


def executor_for(step: Step) -> Executor:
    """The executor for ``step``'s kind."""
    if step.kind == "python":
        return run_python
    raise NotImplementedError(f"{step.kind} steps are not available yet")
