"""An ACP agent written with the official Python SDK (``acp``), for interop tests.

It echoes each prompt back in 5-character agent_message_chunk updates. A prompt
containing ``[[slow]]`` streams ``tick N`` chunks until ``session/cancel``
arrives, then ends the turn with stopReason ``cancelled``.

Run: ``python tests/sdk_agent.py`` (speaks ACP on stdin/stdout).
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import acp
from acp.schema import AgentCapabilities, InitializeResponse, NewSessionResponse, PromptResponse


class EchoAgent:
    """Echo prompts; stream until cancelled when asked to be slow."""

    def __init__(self) -> None:
        self._conn: Any = None
        self._sessions = 0
        self._cancel: dict[str, asyncio.Event] = {}

    def on_connect(self, conn: Any) -> None:
        self._conn = conn

    async def initialize(self, protocol_version: int, **kwargs: Any) -> InitializeResponse:
        return InitializeResponse(
            protocol_version=acp.PROTOCOL_VERSION, agent_capabilities=AgentCapabilities()
        )

    async def new_session(self, cwd: str, **kwargs: Any) -> NewSessionResponse:
        self._sessions += 1
        return NewSessionResponse(session_id=f"sdk-session-{self._sessions}")

    async def prompt(self, prompt: list[Any], session_id: str, **kwargs: Any) -> PromptResponse:
        text = "".join(getattr(block, "text", "") for block in prompt)
        cancelled = self._cancel[session_id] = asyncio.Event()
        if "[[slow]]" in text:
            tick = 0
            while not cancelled.is_set():
                await self._say(session_id, f"tick {tick} ")
                tick += 1
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(cancelled.wait(), 0.01)
            return PromptResponse(stop_reason="cancelled")
        for start in range(0, len(text), 5):
            if cancelled.is_set():
                return PromptResponse(stop_reason="cancelled")
            await self._say(session_id, text[start : start + 5])
        return PromptResponse(stop_reason="end_turn")

    async def cancel(self, session_id: str, **kwargs: Any) -> None:
        event = self._cancel.get(session_id)
        if event is not None:
            event.set()

    async def _say(self, session_id: str, text: str) -> None:
        await self._conn.session_update(
            session_id=session_id, update=acp.update_agent_message_text(text)
        )


if __name__ == "__main__":
    asyncio.run(acp.run_agent(EchoAgent()))
