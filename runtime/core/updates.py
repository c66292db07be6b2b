"""An agent step's ACP ``session/update`` notifications, mapped to stream deltas and job events.

Every kind of ACP v1's ``SessionUpdate`` is handled:

- ``agent_message_chunk`` -> a text delta (and the step's ``text`` output); ``agent_thought_chunk``
  -> a reasoning delta.  A text block is its text; any other content block becomes a short
  placeholder and never its payload: ``[image image/png]``, ``[audio audio/wav]``,
  ``[resource_link NAME URI]``, ``[resource URI]``.
- ``tool_call`` / ``tool_call_update`` -> a tool-request delta with ``rawInput`` as JSON and a
  tool-response delta with the content as text (ACP's ``{type: "content", content: {...}}``
  unwrapped, a ``diff`` as a unified diff of its path -- a new file as its path and text --, a
  ``terminal`` named by its id; ``rawOutput`` as JSON when there is no content); the call's
  ``status`` (with its ``title`` and ``kind``) is an :class:`~runtime.core.events.AgentUpdate`.
- ``plan``, ``available_commands_update``, ``current_mode_update``, ``config_option_update``,
  ``session_info_update``, ``usage_update``, ``notice``, ``compaction_update`` and
  ``compaction_summary_chunk`` (its content as text) -> an ``AgentUpdate`` whose ``data`` is the
  update's fields, bounded (strings cut at 2000 characters, lists and objects at 100 items, at
  most 8 levels and about 16 000 characters in all -- what is cut is marked ``…`` --; ``_meta``
  dropped).
- ``user_message_chunk`` is ignored: it replays our own prompt.
- An unknown kind, or an update missing a field its kind requires, is ignored with a DEBUG log.

Stream deltas are coalesced by the step's stream buffer while ``AgentUpdate`` events are
published at once, so an ``AgentUpdate`` may come before text the agent sent ahead of it.
"""

from __future__ import annotations

import difflib
import json
import math
from collections.abc import Callable, Mapping
from typing import Any

from actors.log import Logger
from actors.stream import (
    ReasoningContentDelta,
    Stream,
    TextDelta,
    ToolRequestDelta,
    ToolResponseDelta,
)

__all__ = ["UpdateMapper", "bounded", "content_text"]

MAX_STRING = 2000
MAX_ITEMS = 100
MAX_DEPTH = 8
MAX_CHARS = 16_000

# the kinds published as AgentUpdate events, with the fields each one requires
_EVENT_KINDS: Mapping[str, tuple[tuple[str, type], ...]] = {
    "plan": (("entries", list),),
    "available_commands_update": (("availableCommands", list),),
    "current_mode_update": (("currentModeId", str),),
    "config_option_update": (("configOptions", list),),
    "session_info_update": (),
    "usage_update": (("used", int), ("size", int)),
    "notice": (("severity", str), ("title", str)),
    "compaction_update": (("compactionId", str), ("status", str)),
    "compaction_summary_chunk": (("compactionId", str), ("content", dict)),
}
_TOOL_FIELDS = ("toolCallId", "title", "kind", "status")


def _block_text(block: Mapping[str, Any]) -> str:
    kind = block.get("type", "text")
    if kind == "text":
        text = block.get("text", "")
        return text if isinstance(text, str) else ""
    if kind in ("image", "audio"):
        return f"[{kind} {block.get('mimeType', '')}]".replace(" ]", "]")
    if kind == "resource_link":
        return f"[resource_link {block.get('name', '')} {block.get('uri', '')}]"
    if kind == "resource":
        resource = block.get("resource")
        uri = resource.get("uri", "") if isinstance(resource, Mapping) else ""
        return f"[resource {uri}]"
    return ""


def _diff_text(item: Mapping[str, Any]) -> str:
    path, old, new = str(item.get("path", "")), item.get("oldText"), item.get("newText")
    new = new if isinstance(new, str) else ""
    if not isinstance(old, str):
        return f"new file {path}\n{new}"
    lines = difflib.unified_diff(old.splitlines(), new.splitlines(), fromfile=path, tofile=path, lineterm="")
    return "\n".join(lines) or f"{path}: unchanged"


def content_text(content: Any) -> str:
    """The readable text of ACP content: a content block, a tool-call content item (``content``,
    ``diff``, ``terminal``) or a list of them (items joined by newlines)."""
    if isinstance(content, list):
        return "\n".join(t for t in (content_text(c) for c in content) if t)
    if not isinstance(content, Mapping):
        return ""
    kind = content.get("type")
    if kind == "content":
        return content_text(content.get("content"))
    if kind == "diff":
        return _diff_text(content)
    if kind == "terminal":
        return f"[terminal {content.get('terminalId', '')}]"
    return _block_text(content)


class _Budget:
    """What is left of :data:`MAX_CHARS` while one update's data is bounded."""

    def __init__(self) -> None:
        self.left = MAX_CHARS

    def text(self, value: str) -> str:
        cut = value[: max(0, min(MAX_STRING, self.left))]
        self.left -= len(cut)
        return cut if len(cut) == len(value) else cut + "…"

    def value(self, value: Any, depth: int) -> Any:
        if value is None or isinstance(value, bool | int):
            return value
        if isinstance(value, float):
            return value if math.isfinite(value) else None
        if isinstance(value, str):
            return self.text(value)
        if depth >= MAX_DEPTH or self.left <= 0:
            return "…"
        if isinstance(value, Mapping):
            out: dict[str, Any] = {}
            for i, (k, v) in enumerate(value.items()):
                if i == MAX_ITEMS or self.left <= 0:
                    out["…"] = "truncated"
                    break
                if k != "_meta":
                    key = str(k)[:MAX_STRING]
                    self.left -= len(key)
                    out[key] = self.value(v, depth + 1)
            return out
        if isinstance(value, list | tuple):
            items = []
            for i, v in enumerate(value):
                if i == MAX_ITEMS or self.left <= 0:
                    items.append("…")
                    break
                items.append(self.value(v, depth + 1))
            return items
        return self.text(repr(value))


def bounded(data: Mapping[str, Any]) -> dict[str, Any]:
    """``data`` as JSON-ready values, bounded (see the module docstring)."""
    out: dict[str, Any] = _Budget().value(data, 0)
    return out


def _malformed(kind: str, update: Mapping[str, Any]) -> str | None:
    for field, tp in _EVENT_KINDS.get(kind, ()):
        value = update.get(field)
        if not isinstance(value, tp) or isinstance(value, bool):
            return f"{field} is missing or not of type {tp.__name__}"
    return None


class UpdateMapper:
    """The ``on_update`` callback of one agent prompt turn: deltas to ``stream``, other kinds to
    ``emit(kind, data)``; ``text`` collects the agent's message."""

    def __init__(self, stream: Stream, emit: Callable[[str, Mapping[str, Any]], None], log: Logger) -> None:
        self.stream, self.emit, self.log = stream, emit, log
        self.text: list[str] = []
        self._tools: dict[str, str] = {}

    async def __call__(self, update: Mapping[str, Any]) -> None:
        kind = update.get("sessionUpdate")
        if not isinstance(kind, str):
            self.log.debug("agent_update_ignored", why="no sessionUpdate kind", got=repr(kind)[:100])
            return
        if kind in ("agent_message_chunk", "agent_thought_chunk"):
            await self._chunk(kind, update)
        elif kind in ("tool_call", "tool_call_update"):
            await self._tool(kind, update)
        elif kind in _EVENT_KINDS:
            problem = _malformed(kind, update)
            if problem is not None:
                self.log.debug("agent_update_ignored", kind=kind, why=problem)
                return
            data = {k: v for k, v in update.items() if k != "sessionUpdate"}
            if kind == "compaction_summary_chunk":
                data["content"] = content_text(data["content"])
            self.emit(kind, bounded(data))
        elif kind != "user_message_chunk":  # our own prompt, replayed
            self.log.debug("agent_update_ignored", kind=kind[:100], why="unknown kind")

    async def _chunk(self, kind: str, update: Mapping[str, Any]) -> None:
        content = update.get("content")
        if not isinstance(content, Mapping):
            self.log.debug("agent_update_ignored", kind=kind, why="content is not an object")
            return
        text = content_text(content)
        if not text:
            return
        if kind == "agent_message_chunk":
            self.text.append(text)
            await self.stream.delta(TextDelta(text))
        else:
            await self.stream.delta(ReasoningContentDelta(0, text))

    async def _tool(self, kind: str, update: Mapping[str, Any]) -> None:
        call_id = update.get("toolCallId")
        if not isinstance(call_id, str) or not call_id:
            self.log.debug("agent_update_ignored", kind=kind, why="toolCallId is missing")
            return
        title = update.get("title")
        if isinstance(title, str) and title:
            self._tools[call_id] = title
        name = self._tools.get(call_id)
        raw_in = update.get("rawInput")
        if raw_in is not None:
            await self.stream.delta(ToolRequestDelta(call_id, name, json.dumps(raw_in)))
        text = content_text(update.get("content"))
        raw_out = update.get("rawOutput")
        if text or raw_out is not None:
            out = text or json.dumps(raw_out)
            await self.stream.delta(ToolResponseDelta(call_id, name, out))
        elif raw_in is None and kind == "tool_call":
            await self.stream.delta(ToolRequestDelta(call_id, name, ""))
        if kind == "tool_call" or update.get("status") is not None:
            self.emit(kind, bounded({k: update[k] for k in _TOOL_FIELDS if update.get(k) is not None}))
