"""Python steps for the crash-and-resume tests (importable by module:function, as resume needs)."""

from __future__ import annotations

import os
from pathlib import Path


async def count(ctx, inputs):
    """A side effect that must happen once: append a line to the counter file."""
    path = Path(inputs["counter"])
    with path.open("a") as f:
        f.write(f"{ctx.job_id}\n")
    return {"runs": len(path.read_text().splitlines())}


async def finish(ctx, inputs):
    return {"done": True, "text": inputs["text"]}


async def approve(ctx, inputs):
    return {"approved_by": inputs["who"]}


async def noop(ctx, inputs):
    return {"pid": os.getpid()}
