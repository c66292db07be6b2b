"""A process group's stdout as its owner reads it: EOF, never an error, once the group is gone."""

from __future__ import annotations

import fcntl
import struct
import termios

import trio

__all__ = ["GroupStdout"]


class GroupStdout(trio.abc.ReceiveStream):
    """The command's stdout as the owner sees it.

    Once the group has ended and closed the pipe, reading gives EOF (``b""``)
    instead of ``ClosedResourceError``: no more data can ever arrive.
    """

    def __init__(self, stream: trio.lowlevel.FdStream) -> None:
        self._stream = stream
        self._ended = trio.Event()  # set by end(), possibly while a reader waits
        self._received = trio.Event()

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        if self._ended.is_set():
            await trio.lowlevel.checkpoint()
            return b""
        try:
            data = await self._stream.receive_some(max_bytes)
        except trio.ClosedResourceError:
            if self._ended.is_set():
                return b""
            raise
        self._received.set()
        self._received = trio.Event()
        return bytes(data)

    async def aclose(self) -> None:
        await self._stream.aclose()

    def _pending(self) -> int:
        """Bytes written by the tree but not yet read by the owner."""
        try:
            raw = fcntl.ioctl(self._stream.fileno(), termios.FIONREAD, b"\0" * 4)
        except (OSError, ValueError):
            return 0
        return int(struct.unpack("i", raw)[0])

    async def wait_consumed(self) -> None:
        """Park until the owner has read everything the (dead) tree wrote."""
        while True:
            event = self._received
            if self._ended.is_set() or self._pending() == 0:
                return
            await event.wait()

    async def end(self) -> None:
        """Close the pipe for good; readers see EOF from now on."""
        self._ended.set()
        await self._stream.aclose()
