"""Step executors: how a python, command or agent step runs inside its job.

- python: ``await step.run(ctx, inputs)``.
- command: a contained process group; the inputs go to its stdin as one JSON object; stdout
  parsed as a JSON object becomes the outputs, otherwise ``{"stdout": text}``; a non-zero exit
  fails the step with the tail of stderr.
- agent: the job's adapter for the step's :class:`~runtime.flow.AgentSpec` (started on demand,
  shared by the job's agent steps with an equal spec, never by two jobs, released once no step
  still able to run needs it: see :mod:`runtime.core.resources`) runs one prompt turn in a new
  session; the message streams as job events, the agent's other updates (plan, tool status,
  usage, ...) become :class:`~runtime.core.events.AgentUpdate` events (see
  :mod:`runtime.core.updates`); outputs are ``{"text", "stop_reason"}``.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import trio

from ..flow import Step, fill_template
from .context import StepContext
from .states import StepTimeout
from .updates import UpdateMapper

__all__ = ["CommandFailed", "execute", "executor_for", "run_agent", "run_command", "run_python"]

Executor = Callable[[StepContext, Step, dict[str, Any]], Awaitable[Mapping[str, Any] | None]]

MAX_STDOUT = 16 << 20


class CommandFailed(Exception):
    """A command step exited non-zero; the message carries the tail of its stderr."""


async def run_python(ctx: StepContext, step: Step, inputs: dict[str, Any]) -> Mapping[str, Any] | None:
    """A python step: ``await step.run(ctx, inputs)``.

    If it raises, its event carries the error line; the traceback goes to the step's log at INFO
    (``corral -v`` shows it).
    """
    assert step.run is not None
    try:
        return await step.run(ctx, inputs)
    except Exception:
        ctx.log.info("python_step_raised", exc_info=True)
        raise


async def run_command(ctx: StepContext, step: Step, inputs: dict[str, Any]) -> Mapping[str, Any]:
    assert step.command is not None
    payload = json.dumps(inputs, default=str).encode() + b"\n"
    chunks: list[bytes | bytearray] = []
    size = 0
    async with ctx.open_process(step.command) as group:
        async with trio.open_nursery() as nursery:

            async def feed() -> None:
                try:
                    await group.stdin.send_all(payload)
                    await group.stdin.aclose()
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    pass  # the command does not read its stdin

            nursery.start_soon(feed)
            while data := await group.stdout.receive_some():
                size += len(data)
                if size > MAX_STDOUT:
                    raise CommandFailed(f"command {step.command[0]!r} wrote more than {MAX_STDOUT} bytes")
                chunks.append(data)
        code = await group.wait()
        tail = group.stderr_tail
    if code != 0:
        raise CommandFailed(f"command {list(step.command)!r} exited with status {code}"
                            + (f": {tail.strip()[-2000:]}" if tail.strip() else ""))
    text = b"".join(chunks).decode("utf-8", errors="replace")
    try:
        parsed = json.loads(text)
    except ValueError:
        parsed = None
    return parsed if isinstance(parsed, dict) else {"stdout": text}


async def run_agent(ctx: StepContext, step: Step, inputs: dict[str, Any]) -> Mapping[str, Any]:
    assert step.agent is not None and step.prompt is not None
    prompt = fill_template(step.prompt, ctx.template_lookup(step, inputs))
    await ctx.agent(step.agent)  # the adapter is up before the message opens
    async with ctx.stream(kind="text") as stream:
        updates = UpdateMapper(stream, ctx.agent_update, ctx.log)
        stop_reason = await ctx.prompt_agent(step.agent, prompt, updates)
    return {"text": "".join(updates.text), "stop_reason": stop_reason}


_EXECUTORS: Mapping[str, Executor] = {"python": run_python, "command": run_command, "agent": run_agent}


def executor_for(step: Step) -> Executor:
    """The executor for ``step``'s kind."""
    return _EXECUTORS[step.kind]


async def execute(ctx: StepContext, step: Step, inputs: dict[str, Any]) -> dict[str, Any]:
    """Run one attempt of ``step`` within its ``timeout``; its outputs, checked to be a dict."""
    executor = executor_for(step)
    if step.timeout is None:
        outputs = await executor(ctx, step, inputs)
    else:
        with trio.move_on_after(step.timeout) as scope:
            outputs = await executor(ctx, step, inputs)
        if scope.cancelled_caught:
            raise StepTimeout(f"step {step.name!r} timed out after {step.timeout}s")
    if outputs is None:
        return {}
    if not isinstance(outputs, Mapping):
        raise TypeError(f"step {step.name!r} returned {type(outputs).__name__}, expected a dict")
    return dict(outputs)
