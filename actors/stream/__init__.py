"""Streamed message updates: a coalescing buffer that parks when idle, and the stream context.

A streamed message is published as ``Start``, any number of ``Delta`` updates, then exactly one
terminal update, ``Full`` or ``Done``. A delta carries one piece of one *channel*: text, JSON data,
a tool request's arguments, a tool response, a reasoning summary or reasoning content.

Layers, each importing only those before it::

    parts     the data model: the six delta channels, Start / Delta / Full / Done, StreamClosed
    buffer    StreamBuffer: merges same-channel deltas, publishes by size or window, parks idle
    content   what a stream's deltas add up to, by its kind
    message   Stream and open_stream: Start, deltas, exactly one terminal, never a swallowed error
"""

from .buffer import CLOSE_GRACE as CLOSE_GRACE
from .buffer import StreamBuffer as StreamBuffer
from .content import StreamKind as StreamKind
from .message import Stream as Stream
from .message import StreamMode as StreamMode
from .message import open_stream as open_stream
from .parts import DataDelta as DataDelta
from .parts import Delta as Delta
from .parts import DeltaPart as DeltaPart
from .parts import Done as Done
from .parts import Full as Full
from .parts import ReasoningContentDelta as ReasoningContentDelta
from .parts import ReasoningSummaryDelta as ReasoningSummaryDelta
from .parts import Start as Start
from .parts import StreamClosed as StreamClosed
from .parts import TextDelta as TextDelta
from .parts import ToolRequestDelta as ToolRequestDelta
from .parts import ToolResponseDelta as ToolResponseDelta
from .parts import Update as Update

__all__ = [
    "CLOSE_GRACE",
    "DataDelta",
    "Delta",
    "DeltaPart",
    "Done",
    "Full",
    "ReasoningContentDelta",
    "ReasoningSummaryDelta",
    "Start",
    "Stream",
    "StreamBuffer",
    "StreamClosed",
    "StreamKind",
    "StreamMode",
    "TextDelta",
    "ToolRequestDelta",
    "ToolResponseDelta",
    "Update",
    "open_stream",
]
