"""One streamed message as an async context manager: :func:`open_stream` and :class:`Stream`.

Entering publishes ``Start``; leaving publishes exactly one terminal update, after every delta,
and never swallows an exception or a cancellation. In ``coalesced`` mode the deltas go through a
:class:`~actors.stream.StreamBuffer` whose ticker lives in the job's nursery for the stream's
lifetime.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from typing import Any, Final, Literal, TypeAlias, TypedDict, Unpack

import trio

from .._groups import is_cancellation
from .buffer import StreamBuffer
from .content import KINDS, Content, StreamKind
from .parts import Delta, DeltaPart, Done, Full, Part, Start, StreamClosed, Update

__all__ = ["Stream", "StreamKind", "StreamMode", "StreamOptions", "open_stream"]

StreamMode: TypeAlias = Literal["coalesced", "per_token", "off"]
"""How a stream publishes deltas: coalesced by a :class:`StreamBuffer`, one by one, or not at all."""

_MODES = frozenset({"coalesced", "per_token", "off"})


class _Default(enum.Enum):
    INDEX = enum.auto()


_STREAM_INDEX: Final = _Default.INDEX
"""The default ``index`` of :meth:`Stream.full` and :meth:`Stream.done`: the stream's own."""


class StreamOptions(TypedDict, total=False):
    """The keywords of :class:`Stream` (for :func:`open_stream`); defaults as there."""

    kind: StreamKind
    index: int | None
    mode: StreamMode
    max_buffered_chars: int
    flush_interval: float
    metadata: Mapping[str, Any] | None


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
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {sorted(KINDS)}, got {kind!r}")
        if mode not in _MODES:
            raise ValueError(f"mode must be one of {sorted(_MODES)}, got {mode!r}")
        self._nursery = nursery
        self._publish = publish
        self._kind: StreamKind = kind
        self._index = index
        self._mode: StreamMode = mode
        self._per_token = mode == "per_token"
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
        self._content = Content()

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
        return self._content.value(self._kind, strict=True)

    # -- deltas and terminals -----------------------------------------------------------------

    def delta_nowait(self, delta: DeltaPart | Delta | str) -> None:
        """Add one delta without a checkpoint; see :meth:`delta`."""
        if not self._entered:
            raise RuntimeError("the stream is not entered; use `async with open_stream(...)`")
        # (every token of a reply passes here: the common case, a part, is checked first)
        given: Delta | None = None
        if isinstance(delta, Part):
            part = delta
        else:
            part = self._coerce(delta)
            if isinstance(delta, Delta):
                given = delta
        buffer = self._buffer
        if buffer is not None:
            if buffer.closed:
                raise StreamClosed("delta after the stream's terminal update")
            buffer.add(part if given is None else given)
        elif self._closed:
            raise StreamClosed("delta after the stream's terminal update")
        elif self._per_token:
            self._publish(Delta(part, self._index) if given is None else given)
        self._content.add(part)

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
        index: int | Literal[_Default.INDEX] | None = _STREAM_INDEX,
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
        index: int | Literal[_Default.INDEX] | None = _STREAM_INDEX,
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
                self._content.value(self._kind, strict=False), index=terminal.index, metadata=terminal.metadata
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
        if isinstance(delta, Part):
            return delta
        if not isinstance(delta, str):
            raise TypeError(f"expected a delta or a str, got {type(delta).__name__}")
        return self._content.part_for(self._kind, delta)


def open_stream(
    nursery: trio.Nursery, publish: Callable[[Update], None], **options: Unpack[StreamOptions]
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
    return Stream(nursery, publish, **options)
