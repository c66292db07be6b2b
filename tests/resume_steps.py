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


async def count_or_hold(ctx, inputs):
    """:func:`count`, then, on loop iteration 1 while the ``flag`` file exists, hold forever."""
    import trio

    out = await count(ctx, inputs)
    if ctx.iteration == 1 and Path(inputs["flag"]).exists():
        await trio.sleep_forever()
    return out


async def tag(ctx, inputs):
    """Outputs that say which run of which step made them."""
    return {"step": ctx.step, "iteration": ctx.iteration, **inputs}


async def finish(ctx, inputs):
    return {"done": True, "text": inputs["text"]}


async def approve(ctx, inputs):
    return {"approved_by": inputs["who"]}


async def noop(ctx, inputs):
    return {"pid": os.getpid()}


async def forever(ctx, inputs):
    """A step that never ends by itself."""
    import trio

    await trio.sleep_forever()
