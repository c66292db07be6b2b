"""The stream data model: the delta channels and the updates of a streamed message.

A streamed message is published as ``Start``, any number of ``Delta`` updates, then exactly one
terminal update, ``Full`` or ``Done``. A delta carries one piece of one *channel*: text, JSON data,
a tool request's arguments, a tool response, a reasoning summary or reasoning content.

Every delta class is described by three class attributes instead of code of its own: the field
holding the piece of text (``_CHUNK``), the field telling its channels apart (``_CHANNEL``, none
for a class with one channel) and the field naming the channel, given on its first piece only
(``_NAME``). The buffer merges, and the stream accumulates, any delta through that description.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Mapping
from typing import Any, ClassVar, Self, TypeAlias

import attrs
import trio

__all__ = [
    "DataDelta",
    "Delta",
    "DeltaPart",
    "Done",
    "Full",
    "ReasoningContentDelta",
    "ReasoningSummaryDelta",
    "Start",
    "StreamClosed",
    "TextDelta",
    "ToolRequestDelta",
    "ToolResponseDelta",
    "Update",
]


class StreamClosed(trio.ClosedResourceError):
    """A delta or terminal was offered to a stream whose terminal update is already published."""


# --------------------------------------------------------------------------------------------
# Delta channels
# --------------------------------------------------------------------------------------------


@attrs.frozen
class Part:
    """The base of the delta channel classes: merge key, payload and rebuild, from the fields
    each class names in ``_CHUNK``, ``_CHANNEL`` and ``_NAME``.

    A delta class declares its fields in the order channel, name, chunk (each only if it has
    one), so that a merged piece is rebuilt by position.
    """

    _CHUNK: ClassVar[str]
    """The field holding this piece of the channel's text."""
    _CHANNEL: ClassVar[str | None] = None
    """The field telling the channels of the class apart (``None``: one channel per class)."""
    _NAME: ClassVar[str | None] = None
    """The field naming the channel, which may be given on its first piece only."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        field = getattr(cls, "_CHUNK", None)
        if field is not None:  # the buffer reads a part's chunk for every delta: a C getter
            cls.chunk = property(operator.attrgetter(field))  # type: ignore[assignment]  # narrows the declared property

    @property
    def chunk(self) -> str:
        """This piece's text (the field ``_CHUNK`` names)."""
        chunk: str = getattr(self, self._CHUNK)
        return chunk

    def _chunk(self) -> str:
        return self.chunk

    def _channel(self) -> object:
        field = self._CHANNEL
        return None if field is None else getattr(self, field)

    def _name(self) -> str | None:
        field = self._NAME
        name: str | None = None if field is None else getattr(self, field)
        return name

    def _rebuilt(self, chunk: str, name: str | None) -> Self:
        """This piece with ``chunk`` for its text and ``name`` for its channel's name."""
        make: Callable[..., Self] = type(self)  # fields in the order channel, name, chunk
        if self._CHANNEL is None:
            return make(chunk)
        if self._NAME is None:
            return make(self._channel(), chunk)
        return make(self._channel(), name, chunk)


@attrs.frozen
class TextDelta(Part):
    """A piece of plain text."""

    _CHUNK: ClassVar[str] = "text"
    text: str


@attrs.frozen
class DataDelta(Part):
    """A piece of a JSON document, as text; the pieces concatenated parse as JSON."""

    _CHUNK: ClassVar[str] = "data"
    data: str


@attrs.frozen
class _ToolPart(Part):
    """A piece of one tool call's channel: its id, and its name (on the first piece only)."""

    _CHANNEL: ClassVar[str | None] = "tool_call_id"
    _NAME: ClassVar[str | None] = "name"
    tool_call_id: str
    name: str | None


@attrs.frozen
class ToolRequestDelta(_ToolPart):
    """A piece of a tool call's JSON arguments. ``name`` may be given on the first piece only."""

    _CHUNK: ClassVar[str] = "arguments_delta"
    arguments_delta: str


@attrs.frozen
class ToolResponseDelta(_ToolPart):
    """A piece of a tool call's response content."""

    _CHUNK: ClassVar[str] = "content_delta"
    content_delta: str


@attrs.frozen
class ReasoningSummaryDelta(Part):
    """A piece of the reasoning summary part ``summary_index``."""

    _CHUNK: ClassVar[str] = "text"
    _CHANNEL: ClassVar[str | None] = "summary_index"
    summary_index: int
    text: str


@attrs.frozen
class ReasoningContentDelta(Part):
    """A piece of the reasoning content part ``content_index``."""

    _CHUNK: ClassVar[str] = "text"
    _CHANNEL: ClassVar[str | None] = "content_index"
    content_index: int
    text: str


DeltaPart: TypeAlias = (
    TextDelta
    | DataDelta
    | ToolRequestDelta
    | ToolResponseDelta
    | ReasoningSummaryDelta
    | ReasoningContentDelta
)
"""One piece of one delta channel."""


# --------------------------------------------------------------------------------------------
# Message updates
# --------------------------------------------------------------------------------------------


@attrs.frozen
class Start:
    """A message begins. ``content`` is its initial content, if any."""

    content: Any = None
    index: int | None = None
    metadata: Mapping[str, Any] | None = None


@attrs.frozen
class Delta:
    """One (possibly merged) piece of a message."""

    delta: DeltaPart
    index: int | None = None
    metadata: Mapping[str, Any] | None = None


@attrs.frozen
class Full:
    """Terminal update: the message's complete content. No delta follows it."""

    content: Any
    index: int | None = None
    metadata: Mapping[str, Any] | None = None


@attrs.frozen
class Done:
    """Terminal update: the message is complete. No delta follows it."""

    index: int | None = None
    metadata: Mapping[str, Any] | None = None


Update: TypeAlias = Start | Delta | Full | Done
"""Any update of a streamed message."""
