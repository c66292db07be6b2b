"""What a stream's deltas add up to: its content by kind, and what a plain ``str`` delta means.

Every delta is kept by channel (its class and the value of its ``_CHANNEL`` field), in order of
first appearance, through the description each delta class gives of itself in
:mod:`actors.stream.parts`; the stream's ``kind`` decides which channels its content shows.
"""

from __future__ import annotations

import json
from typing import Any, Literal, TypeAlias

from .parts import (
    DataDelta,
    DeltaPart,
    Part,
    ReasoningContentDelta,
    ReasoningSummaryDelta,
    TextDelta,
    ToolRequestDelta,
    ToolResponseDelta,
)

__all__ = ["KINDS", "Content", "StreamKind"]

StreamKind: TypeAlias = Literal["text", "data", "reasoning", "tool"]
"""The channel a plain ``str`` passed to :meth:`Stream.delta` belongs to."""

KINDS = frozenset({"text", "data", "reasoning", "tool"})

_PART_TYPES = frozenset(
    {
        TextDelta,
        DataDelta,
        ToolRequestDelta,
        ToolResponseDelta,
        ReasoningSummaryDelta,
        ReasoningContentDelta,
    }
)


_ONE_CHANNEL = frozenset({TextDelta, DataDelta})
"""The delta classes (exactly) whose pieces all go to one channel, named by no piece."""


def _part_type(part: Part) -> type[Part]:
    """The delta class ``part`` is an instance of (the one it derives from, for a subclass)."""
    cls = type(part)
    if cls in _PART_TYPES:
        return cls
    return next(base for base in cls.__mro__ if base in _PART_TYPES)


class _Channel:
    """The pieces of one channel, and its name (the first one given)."""

    __slots__ = ("name", "pieces")

    def __init__(self, name: str | None) -> None:
        self.name = name
        self.pieces: list[str] = []

    def text(self) -> str:
        return "".join(self.pieces)


class Content:
    """The deltas of one stream, by channel."""

    __slots__ = ("_channels", "_last_class", "_last_pieces", "_last_reasoning", "_last_tool")

    def __init__(self) -> None:
        self._channels: dict[tuple[type[Part], object], _Channel] = {}
        self._last_tool: ToolRequestDelta | None = None
        self._last_reasoning: ReasoningSummaryDelta | ReasoningContentDelta | None = None
        # the pieces of the last part's channel when its class has one channel (text, data): the
        # next part of that class goes straight there (a reply is mostly such parts in a row)
        self._last_class: type[Part] | None = None
        self._last_pieces: list[str] = []

    def add(self, part: DeltaPart) -> None:
        """Keep ``part``'s piece on its channel."""
        cls = part.__class__
        if cls is self._last_class:
            self._last_pieces.append(part.chunk)
            return
        key = (_part_type(part), part._channel())
        channel = self._channels.get(key)
        if channel is None:
            channel = self._channels[key] = _Channel(part._name())
        elif channel.name is None:
            channel.name = part._name()
        channel.pieces.append(part.chunk)
        one_channel = cls in _ONE_CHANNEL
        self._last_class, self._last_pieces = (cls, channel.pieces) if one_channel else (None, [])
        if isinstance(part, ToolRequestDelta):
            self._last_tool = part
        elif isinstance(part, ReasoningSummaryDelta | ReasoningContentDelta):
            self._last_reasoning = part

    def part_for(self, kind: StreamKind, text: str) -> DeltaPart:
        """The delta a plain ``str`` stands for in a stream of ``kind``.

        ``text`` / ``data``: a ``TextDelta`` / ``DataDelta``; ``reasoning``: the next piece of the
        last reasoning part (default ``ReasoningContentDelta(0, ...)``); ``tool``: the next piece
        of the last ``ToolRequestDelta``'s arguments.
        """
        if kind == "text":
            return TextDelta(text)
        if kind == "data":
            return DataDelta(text)
        if kind == "reasoning":
            last = self._last_reasoning
            if isinstance(last, ReasoningSummaryDelta):
                return ReasoningSummaryDelta(last.summary_index, text)
            return ReasoningContentDelta(last.content_index if last else 0, text)
        last_tool = self._last_tool
        if last_tool is None:
            raise ValueError("a str tool delta needs a ToolRequestDelta first (its id and name)")
        return ToolRequestDelta(last_tool.tool_call_id, None, text)

    def value(self, kind: StreamKind, *, strict: bool) -> Any:
        """The content of a stream of ``kind`` (see :attr:`Stream.content`).

        With ``strict``, data or tool arguments that are not valid JSON raise ``ValueError``;
        without, they come back as their raw text.
        """
        if kind == "text":
            return self._joined(TextDelta)
        if kind == "data":
            return _parse_json(self._joined(DataDelta), strict=strict)
        if kind == "reasoning":
            return {
                "summary": self._by_index(ReasoningSummaryDelta),
                "content": self._by_index(ReasoningContentDelta),
            }
        return self._tool_calls(strict=strict)

    def _of(self, cls: type[Part]) -> list[tuple[Any, _Channel]]:
        """``(channel value, channel)`` of every channel of ``cls``, in order of first appearance."""
        return [(key, channel) for (owner, key), channel in self._channels.items() if owner is cls]

    def _joined(self, cls: type[Part]) -> str:
        return "".join(channel.text() for _, channel in self._of(cls))

    def _by_index(self, cls: type[Part]) -> list[str]:
        return [channel.text() for _, channel in sorted(self._of(cls), key=lambda kc: kc[0])]

    def _tool_calls(self, *, strict: bool) -> list[dict[str, Any]]:
        calls: dict[Any, dict[str, Any]] = {}
        for call_id, channel in self._of(ToolRequestDelta):
            calls[call_id] = {
                "tool_call_id": call_id,
                "name": channel.name,
                "arguments": _parse_json(channel.text(), strict=strict),
                "response": None,
            }
        for call_id, channel in self._of(ToolResponseDelta):
            call = calls.get(call_id)
            if call is None:
                call = calls[call_id] = {
                    "tool_call_id": call_id, "name": channel.name, "arguments": None,
                    "response": None,
                }
            call["response"] = channel.text()
        return list(calls.values())


def _parse_json(raw: str, *, strict: bool) -> Any:
    if not raw:
        return None
    try:
        return json.loads(raw)
    except ValueError:
        if strict:
            raise
        return raw
