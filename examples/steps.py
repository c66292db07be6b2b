"""Python steps used by the example flows (``run: examples.steps:<function>``).

A python step is ``async def step(ctx, inputs) -> dict``: ``inputs`` are the step's resolved
inputs, ``ctx`` its :class:`~runtime.StepContext` (``attempt``, ``iteration``, ``resume``, ``log``
with ``job_id`` and ``step`` bound, ``start_soon`` / ``open_process`` / ``stream`` for anything that
must live and die with the job).  The returned dict becomes the step's outputs.
"""

from __future__ import annotations

from typing import Any

import trio


async def triage(ctx: Any, inputs: dict[str, Any]) -> dict[str, Any]:
    """Score a ticket: ``severity`` 0 means "won't fix"."""
    await trio.sleep(0.01)
    title = str(inputs.get("title", ""))
    severity = 0 if "typo" in title.lower() else 3 if "crash" in title.lower() else 2
    ctx.log.info("triaged", severity=severity)
    return {"severity": severity, "summary": f"#{inputs['ticket']}: {title}"}


async def fix(ctx: Any, inputs: dict[str, Any]) -> dict[str, Any]:
    """Write a patch; a ``flaky`` ticket fails its first attempt (the flow retries it)."""
    await trio.sleep(0.01)
    if inputs.get("flaky") and ctx.attempt == 1:
        raise ConnectionError("the build server hung up")
    return {"patch": f"patch for {inputs['summary']} (attempt {ctx.attempt}, pass {ctx.iteration + 1})"}


async def review(ctx: Any, inputs: dict[str, Any]) -> dict[str, Any]:
    """Approve the second pass of a severe ticket's patch, any other patch at once."""
    await trio.sleep(0.01)
    approved = inputs["severity"] < 3 or ctx.iteration >= 1
    return {"approved": approved, "comment": "LGTM" if approved else "please add a test"}


async def draft(ctx: Any, inputs: dict[str, Any]) -> dict[str, Any]:
    """Draft a release note (the approval flow pauses after this step for a human)."""
    await trio.sleep(0.01)
    return {"note": f"Release {inputs['version']}: {inputs.get('summary', 'bug fixes')}"}


async def publish(ctx: Any, inputs: dict[str, Any]) -> dict[str, Any]:
    """Publish the note if the human approved it (the resume payload is ``$resume``)."""
    await trio.sleep(0.01)
    if not inputs.get("approved"):
        return {"published": False, "why": inputs.get("comment", "not approved")}
    return {"published": True, "note": inputs["note"]}
