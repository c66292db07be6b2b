"""Streamed message updates: a coalescing buffer that parks when idle, and the stream context.

A streamed message is published as ``Start``, any number of ``Delta`` updates, then exactly one
terminal update, ``Full`` or ``Done``. A delta carries one piece of one *channel*: text, JSON data,
a tool request's arguments, a tool response, a reasoning summary or reasoning content.

:class:`StreamBuffer` sits between a fast producer and the job's event hub (``publish``, a plain
synchronous non-blocking callable). The first delta is published at once; after that, consecutive
deltas of the same channel are merged and published when the buffer holds ``max_buffered_chars``
characters or when ``flush_interval`` has passed since the first buffered delta, whichever comes
first. Channels are never reordered. The buffer's ticker task (``buffer.run``, started in the
job's nursery) holds a timer only while something is buffered; otherwise it parks on an event, so
any number of idle buffers cost zero scheduler wakeups. The ticker exits as soon as the terminal
update is published.

:func:`open_stream` wraps a buffer in an async context manager that publishes ``Start`` on entry
and exactly one terminal update on exit, after every delta. Leaving the context never swallows an
exception or a cancellation.
"""

from __future__ import annotations

import json
import math
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any, Literal, TypeAlias

import attrs
import trio

from ._groups import is_cancellation
from .log import get_logger

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

log = get_logger(__name__)

CLOSE_GRACE: float = 1.0
"""Seconds a close waits (shielded) for the buffer's ticker task to exit.

The ticker exits within one scheduling round once closed, so this bound only guards teardown."""

StreamKind: TypeAlias = Literal["text", "data", "reasoning", "tool"]
"""The channel a plain ``str`` passed to :meth:`Stream.delta` belongs to."""

StreamMode: TypeAlias = Literal["coalesced", "per_token", "off"]
"""How a stream publishes deltas: coalesced by a :class:`StreamBuffer`, one by one, or not at all."""

_KINDS = frozenset({"text", "data", "reasoning", "tool"})
_MODES = frozenset({"coalesced", "per_token", "off"})


class StreamClosed(trio.ClosedResourceError):
    """A delta or terminal was offered to a stream whose terminal update is already published."""


# --------------------------------------------------------------------------------------------
# Delta channels
# --------------------------------------------------------------------------------------------


class _Part:
    """Internal protocol of the delta channel classes (merge key, payload, rebuild)."""

    __slots__ = ()

    def _chunk(self) -> str:
        raise NotImplementedError

    def _channel(self) -> object:
        return None

    def _name(self) -> str | None:
        return None

    def _rebuilt(self, chunk: str, name: str | None) -> DeltaPart:
        raise NotImplementedError


@attrs.frozen
class TextDelta(_Part):
    """A piece of plain text."""

    text: str

    def _chunk(self) -> str:
        return self.text

    def _rebuilt(self, chunk: str, name: str | None) -> TextDelta:
        return TextDelta(chunk)


@attrs.frozen
class DataDelta(_Part):
    """A piece of a JSON document, as text; the pieces concatenated parse as JSON."""

    data: str

    def _chunk(self) -> str:
        return self.data

    def _rebuilt(self, chunk: str, name: str | None) -> DataDelta:
        return DataDelta(chunk)


@attrs.frozen
class ToolRequestDelta(_Part):
    """A piece of a tool call's JSON arguments. ``name`` may be given on the first piece only."""

    tool_call_id: str
    name: str | None
    arguments_delta: str

    def _chunk(self) -> str:
        return self.arguments_delta

    def _channel(self) -> object:
        return self.tool_call_id

    def _name(self) -> str | None:
        return self.name

    def _rebuilt(self, chunk: str, name: str | None) -> ToolRequestDelta:
        return ToolRequestDelta(self.tool_call_id, name, chunk)


@attrs.frozen
class ToolResponseDelta(_Part):
    """A piece of a tool call's response content."""

    tool_call_id: str
    name: str | None
    content_delta: str

    def _chunk(self) -> str:
        return self.content_delta

    def _channel(self) -> object:
        return self.tool_call_id

    def _name(self) -> str | None:
        return self.name

    def _rebuilt(self, chunk: str, name: str | None) -> ToolResponseDelta:
        return ToolResponseDelta(self.tool_call_id, name, chunk)


@attrs.frozen
class ReasoningSummaryDelta(_Part):
    """A piece of the reasoning summary part ``summary_index``."""

    summary_index: int
    text: str

    def _chunk(self) -> str:
        return self.text

    def _channel(self) -> object:
        return self.summary_index

    def _rebuilt(self, chunk: str, name: str | None) -> ReasoningSummaryDelta:
        return ReasoningSummaryDelta(self.summary_index, chunk)


@attrs.frozen
class ReasoningContentDelta(_Part):
    """A piece of the reasoning content part ``content_index``."""

    content_index: int
    text: str

    def _chunk(self) -> str:
        return self.text

    def _channel(self) -> object:
        return self.content_index

    def _rebuilt(self, chunk: str, name: str | None) -> ReasoningContentDelta:
        return ReasoningContentDelta(self.content_index, chunk)


DeltaPart: TypeAlias = (
    TextDelta
    | DataDelta
    | ToolRequestDelta
    | ToolResponseDelta
    | ReasoningSummaryDelta
    | ReasoningContentDelta
)
"""One piece of one delta channel."""

_PART_TYPES = (
    TextDelta,
    DataDelta,
    ToolRequestDelta,
    ToolResponseDelta,
    ReasoningSummaryDelta,
    ReasoningContentDelta,
)
_PART_TYPE_SET = frozenset(_PART_TYPES)
_PLAIN_TYPES = frozenset({TextDelta, DataDelta})


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


# --------------------------------------------------------------------------------------------
# StreamBuffer
# --------------------------------------------------------------------------------------------


class _Run:
    """Consecutive buffered deltas of one channel, merged into one ``Delta`` when published."""

    __slots__ = ("channel", "chars", "cls", "first", "index", "metadata", "name", "pieces", "plain")

    def __init__(
        self, first: DeltaPart, index: int | None, metadata: Mapping[str, Any] | None, chunk: str
    ) -> None:
        self.first = first
        self.cls = type(first)
        self.channel = first._channel()
        self.index = index
        self.metadata = metadata
        self.name = first._name()
        self.pieces = [chunk]
        self.chars = len(chunk)
        self.plain = self.cls in _PLAIN_TYPES  # one channel per class, no names

    def joins(self, part: DeltaPart) -> bool:
        """Whether ``part`` (same class, index and metadata) continues this run's channel."""
        if part._channel() != self.channel:
            return False
        name = part._name()
        if name is not None:
            if self.name is None:
                self.name = name
            elif name != self.name:
                return False
        return True

    def update(self) -> Delta:
        """The merged ``Delta``; it keeps its index and metadata."""
        first = self.first
        if len(self.pieces) == 1 and self.name == first._name():
            part = first
        else:
            part = first._rebuilt("".join(self.pieces), self.name)
        return Delta(part, index=self.index, metadata=self.metadata)


class StreamBuffer:
    """Coalesces the deltas of one message and publishes them in order, then one terminal.

    Start the ticker in the job's nursery with ``await nursery.start(buffer.run)``; it lives until
    the terminal update is published (by :meth:`close_nowait` / :meth:`aclose`), or until the
    nursery is cancelled, in which case the buffered deltas are published, then
    ``Done(metadata={"cancelled": True})``.

    Args:
        publish: called synchronously with each :data:`Update`; must not block.
        max_buffered_chars: publish the buffer as soon as it holds this many characters
            (``0`` publishes every delta at once).
        flush_interval: seconds after the first buffered delta at which the buffer is published.
        index: the ``index`` given to published ``Delta`` updates and the synthesized ``Done``.
    """

    def __init__(
        self,
        publish: Callable[[Update], None],
        *,
        max_buffered_chars: int = 128,
        flush_interval: float = 0.05,
        index: int | None = None,
    ) -> None:
        if max_buffered_chars < 0:
            raise ValueError(f"max_buffered_chars must be >= 0, got {max_buffered_chars!r}")
        if not flush_interval >= 0:
            raise ValueError(f"flush_interval must be >= 0, got {flush_interval!r}")
        self._publish = publish
        self._max_chars = max_buffered_chars
        self._interval = flush_interval
        self._index = index
        self._runs: deque[_Run] = deque()
        self._chars = 0
        self._first_sent = False
        self._closing = False
        self._deadline = math.inf
        self._timer: trio.CancelScope | None = None
        self._wake = trio.Event()
        self._started = False
        self._finished = trio.Event()

    @property
    def index(self) -> int | None:
        """The index given to published deltas and to the synthesized ``Done``."""
        return self._index

    @property
    def closed(self) -> bool:
        """True once closing has begun: no delta is accepted any more."""
        return self._closing

    @property
    def buffered_chars(self) -> int:
        """Characters buffered and not yet published."""
        return self._chars

    @property
    def running(self) -> bool:
        """True while the ticker task (:meth:`run`) is alive."""
        return self._started and not self._finished.is_set()

    def add(self, delta: DeltaPart | Delta) -> None:
        """Buffer one delta; never blocks. The very first delta is published at once.

        A bare channel delta is published as ``Delta(delta, index=buffer.index)``; a ``Delta``
        keeps its own index and metadata and merges only with deltas that share them.

        Raises:
            StreamClosed: the buffer is closing or closed.
            TypeError: ``delta`` is not a delta.
        """
        if self._closing:
            raise StreamClosed("delta after the stream's terminal update")
        cls = type(delta)
        if cls in _PART_TYPE_SET or isinstance(delta, _PART_TYPES):
            part, index, metadata = delta, self._index, None
        elif isinstance(delta, Delta):
            part, index, metadata = delta.delta, delta.index, delta.metadata
            cls = type(part)
            if not isinstance(part, _PART_TYPES):
                raise TypeError(f"expected a delta part, got {cls.__name__}")
        else:
            raise TypeError(f"expected a delta, got {cls.__name__}")
        if not self._first_sent:
            self._first_sent = True
            self._publish(delta if isinstance(delta, Delta) else Delta(part, index=index))
            return
        chunk = part._chunk()
        runs = self._runs
        if runs:
            run = runs[-1]
            if (
                cls is run.cls
                and index == run.index
                and metadata == run.metadata
                and (run.plain or run.joins(part))
            ):
                run.pieces.append(chunk)
                run.chars += len(chunk)
            else:
                runs.append(_Run(part, index, metadata, chunk))
            self._chars += len(chunk)
            if self._chars >= self._max_chars:
                self._flush()
            return
        runs.append(_Run(part, index, metadata, chunk))
        self._chars += len(chunk)
        if self._chars >= self._max_chars:
            self._flush()
        else:
            self._arm()  # the window starts at the first buffered delta

    def close_nowait(self, terminal: Full | Done | None = None) -> bool:
        """Publish every buffered delta, then ``terminal`` (default ``Done(index=buffer.index)``).

        The closing flag is set before the drain, so a delta offered from now on (even from inside
        ``publish``) raises :class:`StreamClosed` instead of being published late. The ticker is
        woken to exit. Returns True if this call published the terminal, False if the buffer was
        already closed and ``terminal`` is None.

        Raises:
            StreamClosed: the buffer is already closed and a ``terminal`` was given.
        """
        if terminal is not None and not isinstance(terminal, Full | Done):
            raise TypeError(f"a terminal update is Full or Done, got {type(terminal).__name__}")
        if self._closing:
            if terminal is not None:
                raise StreamClosed("the stream's terminal update is already published")
            return False
        self._closing = True
        try:
            self._flush()
            self._publish(terminal if terminal is not None else Done(index=self._index))
        finally:
            self._disarm()
            self._wake.set()
        return True

    async def aclose(self, terminal: Full | Done | None = None) -> None:
        """:meth:`close_nowait`, then wait (shielded, bounded) until the ticker task has exited.

        The terminal is published before the first checkpoint, so even a cancelled close publishes
        the buffered deltas and the terminal. The ticker is reaped even when the buffer was
        already closed.
        """
        try:
            self.close_nowait(terminal)
        finally:
            await self._reap()
        await trio.lowlevel.checkpoint_if_cancelled()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """The ticker: publish the buffer when its window ends; exit after the terminal.

        Parks on an event while the buffer is empty (no deadline is armed). When the surrounding
        nursery is cancelled before the stream closed, it publishes the buffered deltas and then
        ``Done(index=buffer.index, metadata={"cancelled": True})``.
        """
        if self._started:
            raise RuntimeError("StreamBuffer.run was already started")
        self._started = True
        try:
            task_status.started()
            while not self._closing:
                with trio.CancelScope(deadline=self._deadline) as timer:
                    self._timer = timer
                    try:
                        await self._wake.wait()
                    finally:
                        self._timer = None
                if (
                    timer.cancelled_caught
                    and not self._closing
                    and trio.current_time() >= self._deadline
                ):
                    self._flush()
        except trio.Cancelled:
            if not self._closing:
                log.debug("stream buffer cancelled before its terminal", index=self._index)
                self.close_nowait(Done(index=self._index, metadata={"cancelled": True}))
            raise
        finally:
            self._finished.set()

    def _arm(self) -> None:
        self._deadline = trio.current_time() + self._interval
        if self._timer is not None:
            self._timer.deadline = self._deadline

    def _disarm(self) -> None:
        self._deadline = math.inf
        if self._timer is not None:
            self._timer.deadline = math.inf

    def _flush(self) -> None:
        # Pop one run at a time: a reentrant close (from inside publish) drains the same deque,
        # so every run is published exactly once and the terminal comes after all of them.
        runs = self._runs
        while runs:
            run = runs.popleft()
            self._chars -= run.chars
            self._publish(run.update())
        self._disarm()

    async def _reap(self) -> None:
        if self.running:
            with trio.move_on_after(CLOSE_GRACE, shield=True):
                await self._finished.wait()


# --------------------------------------------------------------------------------------------
# Stream context
# --------------------------------------------------------------------------------------------

_STREAM_INDEX: Any = object()


class Stream:
    """One streamed message, as an async context manager (made by :func:`open_stream`).

    Entering publishes ``Start``. Inside, :meth:`delta` adds deltas and :meth:`full` or
    :meth:`done` publishes the terminal update; after the terminal, :meth:`delta` raises
    :class:`StreamClosed`. Exiting publishes a terminal if none was published yet:
    ``Done(index)`` on a clean exit, ``Done(index, metadata={"cancelled": True})`` when leaving by
    cancellation, ``Done(index, metadata={"error": "<ExceptionType>"})`` when leaving by an
    exception. The exception or cancellation always propagates.

    Modes: ``coalesced`` runs a :class:`StreamBuffer` ticker in the nursery for the stream's
    lifetime; ``per_token`` publishes each delta at once; ``off`` publishes no delta, and its
    terminal is always a ``Full`` carrying :attr:`content` (a caller's ``Full`` is published as
    given; a caller's or synthesized ``Done`` becomes ``Full(content, index, metadata)``; if the
    data or tool arguments are not valid JSON, that ``Full`` carries the raw text instead).
    ``per_token`` and ``off`` start no task.
    """

    def __init__(
        self,
        nursery: trio.Nursery,
        publish: Callable[[Update], None],
        *,
        kind: StreamKind = "text",
        index: int | None = None,
        mode: StreamMode = "coalesced",
        max_buffered_chars: int = 128,
        flush_interval: float = 0.05,
        metadata: Mapping[str, Any] | None = None,
    ) -> None:
        if kind not in _KINDS:
            raise ValueError(f"kind must be one of {sorted(_KINDS)}, got {kind!r}")
        if mode not in _MODES:
            raise ValueError(f"mode must be one of {sorted(_MODES)}, got {mode!r}")
        self._nursery = nursery
        self._publish = publish
        self._kind: StreamKind = kind
        self._index = index
        self._mode: StreamMode = mode
        self._metadata = metadata
        self._buffer: StreamBuffer | None = None
        if mode == "coalesced":
            self._buffer = StreamBuffer(
                publish,
                max_buffered_chars=max_buffered_chars,
                flush_interval=flush_interval,
                index=index,
            )
        self._entered = False
        self._closed = False
        self._text: list[str] = []
        self._data: list[str] = []
        self._tool_requests: dict[str, list[Any]] = {}
        self._tool_responses: dict[str, list[Any]] = {}
        self._summary: dict[int, list[str]] = {}
        self._reasoning: dict[int, list[str]] = {}
        self._last_tool: ToolRequestDelta | None = None
        self._last_reasoning: ReasoningSummaryDelta | ReasoningContentDelta | None = None

    # -- properties ---------------------------------------------------------------------------

    @property
    def kind(self) -> StreamKind:
        """The channel a plain ``str`` delta belongs to."""
        return self._kind

    @property
    def mode(self) -> StreamMode:
        """``coalesced``, ``per_token`` or ``off``."""
        return self._mode

    @property
    def index(self) -> int | None:
        """The index of this message's updates."""
        return self._index

    @property
    def buffer(self) -> StreamBuffer | None:
        """The coalescing buffer (``coalesced`` mode only)."""
        return self._buffer

    @property
    def closed(self) -> bool:
        """True once the terminal update is published (or being published)."""
        if self._buffer is not None:
            return self._buffer.closed
        return self._closed

    @property
    def content(self) -> Any:
        """The content accumulated from the deltas added so far, by the stream's ``kind``.

        - ``text``: the text deltas concatenated (``str``).
        - ``data``: the data deltas concatenated and parsed as JSON (``None`` if there are none).
        - ``tool``: a list, in order of first appearance, of ``{"tool_call_id", "name",
          "arguments", "response"}`` with the arguments parsed as JSON (``None`` if empty) and the
          response text (``None`` if there is none).
        - ``reasoning``: ``{"summary": [...], "content": [...]}``, each part's text in order of
          its index.

        Raises:
            ValueError: the data or tool arguments received so far are not valid JSON.
        """
        return self._content(strict=True)

    # -- deltas and terminals -----------------------------------------------------------------

    def delta_nowait(self, delta: DeltaPart | Delta | str) -> None:
        """Add one delta without a checkpoint; see :meth:`delta`."""
        if not self._entered:
            raise RuntimeError("the stream is not entered; use `async with open_stream(...)`")
        part = self._coerce(delta)
        if self.closed:
            raise StreamClosed("delta after the stream's terminal update")
        if self._buffer is not None:
            self._buffer.add(delta if isinstance(delta, Delta) else part)
        elif self._mode == "per_token":
            self._publish(delta if isinstance(delta, Delta) else Delta(part, index=self._index))
        self._accumulate(part)

    async def delta(self, delta: DeltaPart | Delta | str) -> None:
        """Add one delta: a delta object, or a ``str`` for the stream's ``kind`` channel.

        A ``str`` is a ``TextDelta`` or ``DataDelta`` for ``text`` / ``data``; for ``reasoning``
        it continues the last reasoning part (default ``ReasoningContentDelta(0, ...)``); for
        ``tool`` it continues the arguments of the last ``ToolRequestDelta``.

        If this raises ``Cancelled``, the delta was not added.

        Raises:
            StreamClosed: the terminal update is already published.
        """
        await trio.lowlevel.checkpoint_if_cancelled()
        self.delta_nowait(delta)
        await trio.lowlevel.cancel_shielded_checkpoint()

    async def full(
        self,
        content: Any,
        *,
        index: int | None = _STREAM_INDEX,
        metadata: Mapping[str, Any] | None = None,
    ) -> None:
        """Publish every pending delta, then ``Full(content, index, metadata)``; stop the ticker.

        ``index`` defaults to the stream's index. If this raises ``Cancelled`` before publishing,
        nothing was published (leaving the context then publishes the cancelled ``Done``).

        Raises:
            StreamClosed: the terminal update is already published.
        """
        await self._terminate(
            Full(content, index=self._index if index is _STREAM_INDEX else index, metadata=metadata)
        )

    async def done(
        self,
        *,
        index: int | None = _STREAM_INDEX,
        metadata: Mapping[str, Any] | None = None,
    ) -> None:
        """Publish every pending delta, then ``Done(index, metadata)``; stop the ticker.

        ``index`` defaults to the stream's index. In ``off`` mode the terminal is a ``Full`` with
        :attr:`content`, this index and this metadata.

        Raises:
            StreamClosed: the terminal update is already published.
        """
        await self._terminate(
            Done(index=self._index if index is _STREAM_INDEX else index, metadata=metadata)
        )

    # -- context manager ----------------------------------------------------------------------

    async def __aenter__(self) -> Stream:
        if self._entered:
            raise RuntimeError("a stream can be entered only once")
        await trio.lowlevel.checkpoint_if_cancelled()
        self._entered = True
        self._publish(Start(index=self._index, metadata=self._metadata))
        if self._buffer is None:
            await trio.lowlevel.cancel_shielded_checkpoint()
            return self
        try:
            await self._nursery.start(self._buffer.run)
        except BaseException as exc:
            if not self.closed:
                self._close_nowait(self._synthesized(exc))
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: object,
    ) -> None:
        try:
            if not self.closed:
                self._close_nowait(self._synthesized(exc))
        finally:
            if self._buffer is not None:
                await self._buffer._reap()
        if exc is None:
            await trio.lowlevel.checkpoint_if_cancelled()

    # -- internals ----------------------------------------------------------------------------

    async def _terminate(self, terminal: Full | Done) -> None:
        if not self._entered:
            raise RuntimeError("the stream is not entered; use `async with open_stream(...)`")
        await trio.lowlevel.checkpoint_if_cancelled()
        try:
            self._close_nowait(terminal)
        finally:
            if self._buffer is not None:
                await self._buffer._reap()

    def _close_nowait(self, terminal: Full | Done) -> None:
        if self._mode == "off" and isinstance(terminal, Done):
            terminal = Full(
                self._content(strict=False), index=terminal.index, metadata=terminal.metadata
            )
        if self._buffer is not None:
            self._buffer.close_nowait(terminal)
            return
        if self._closed:
            raise StreamClosed("the stream's terminal update is already published")
        self._closed = True
        self._publish(terminal)

    def _synthesized(self, exc: BaseException | None) -> Done:
        if exc is None:
            return Done(index=self._index)
        if is_cancellation(exc):
            return Done(index=self._index, metadata={"cancelled": True})
        return Done(index=self._index, metadata={"error": type(exc).__name__})

    def _coerce(self, delta: DeltaPart | Delta | str) -> DeltaPart:
        if isinstance(delta, Delta):
            delta = delta.delta
        if isinstance(delta, _PART_TYPES):
            return delta
        if not isinstance(delta, str):
            raise TypeError(f"expected a delta or a str, got {type(delta).__name__}")
        kind = self._kind
        if kind == "text":
            return TextDelta(delta)
        if kind == "data":
            return DataDelta(delta)
        if kind == "reasoning":
            last = self._last_reasoning
            if isinstance(last, ReasoningSummaryDelta):
                return ReasoningSummaryDelta(last.summary_index, delta)
            return ReasoningContentDelta(last.content_index if last else 0, delta)
        last_tool = self._last_tool
        if last_tool is None:
            raise ValueError("a str tool delta needs a ToolRequestDelta first (its id and name)")
        return ToolRequestDelta(last_tool.tool_call_id, None, delta)

    def _accumulate(self, part: DeltaPart) -> None:
        match part:
            case TextDelta(text=text):
                self._text.append(text)
            case DataDelta(data=data):
                self._data.append(data)
            case ToolRequestDelta():
                entry = self._tool_requests.setdefault(part.tool_call_id, [None, []])
                if entry[0] is None:
                    entry[0] = part.name
                entry[1].append(part.arguments_delta)
                self._last_tool = part
            case ToolResponseDelta():
                entry = self._tool_responses.setdefault(part.tool_call_id, [None, []])
                if entry[0] is None:
                    entry[0] = part.name
                entry[1].append(part.content_delta)
            case ReasoningSummaryDelta():
                self._summary.setdefault(part.summary_index, []).append(part.text)
                self._last_reasoning = part
            case ReasoningContentDelta():
                self._reasoning.setdefault(part.content_index, []).append(part.text)
                self._last_reasoning = part

    def _content(self, *, strict: bool) -> Any:
        kind = self._kind
        if kind == "text":
            return "".join(self._text)
        if kind == "data":
            return _parse_json("".join(self._data), strict=strict)
        if kind == "reasoning":
            return {
                "summary": ["".join(v) for _, v in sorted(self._summary.items())],
                "content": ["".join(v) for _, v in sorted(self._reasoning.items())],
            }
        calls: list[dict[str, Any]] = []
        for call_id, (name, pieces) in self._tool_requests.items():
            calls.append(
                {
                    "tool_call_id": call_id,
                    "name": name,
                    "arguments": _parse_json("".join(pieces), strict=strict),
                    "response": None,
                }
            )
        by_id = {call["tool_call_id"]: call for call in calls}
        for call_id, (name, pieces) in self._tool_responses.items():
            call = by_id.get(call_id)
            if call is None:
                call = {"tool_call_id": call_id, "name": name, "arguments": None, "response": None}
                calls.append(call)
            call["response"] = "".join(pieces)
        return calls


def _parse_json(raw: str, *, strict: bool) -> Any:
    if not raw:
        return None
    try:
        return json.loads(raw)
    except ValueError:
        if strict:
            raise
        return raw


def open_stream(
    nursery: trio.Nursery,
    publish: Callable[[Update], None],
    *,
    kind: StreamKind = "text",
    index: int | None = None,
    mode: StreamMode = "coalesced",
    max_buffered_chars: int = 128,
    flush_interval: float = 0.05,
    metadata: Mapping[str, Any] | None = None,
) -> Stream:
    """An async context manager for one streamed message; ``async with`` yields the :class:`Stream`.

    Args:
        nursery: the job's nursery; in ``coalesced`` mode the buffer's ticker runs there for the
            stream's lifetime (if the nursery is cancelled first, the ticker publishes the
            buffered deltas and a cancelled ``Done``).
        publish: synchronous, non-blocking sink for every :data:`Update`.
        kind: the channel of plain ``str`` deltas: ``text``, ``data``, ``reasoning`` or ``tool``.
        index: the index of every update of this message.
        mode: ``coalesced`` (default), ``per_token`` or ``off``; see :class:`Stream`.
        max_buffered_chars: coalesced mode: publish when this many characters are buffered.
        flush_interval: coalesced mode: publish this many seconds after the first buffered delta.
        metadata: carried by the ``Start`` update.
    """
    return Stream(
        nursery,
        publish,
        kind=kind,
        index=index,
        mode=mode,
        max_buffered_chars=max_buffered_chars,
        flush_interval=flush_interval,
        metadata=metadata,
    )
