"""Small importable python steps for cluster smoke tests and benchmarks (importable, so durable jobs may use them)."""

from __future__ import annotations

from typing import Any

from runtime import StepContext


async def noop(ctx: StepContext, inputs: dict[str, Any]) -> dict[str, Any]:
    """A no-op step: ``{"ok": True}``."""
    return {"ok": True}


async def echo(ctx: StepContext, inputs: dict[str, Any]) -> dict[str, Any]:
    """Return the step's inputs as ``{"echo": inputs}``."""
    return {"echo": dict(inputs)}
