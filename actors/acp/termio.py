"""What an ACP terminal gives back: its bounded output and its exit status.

:class:`OutputBuffer` keeps the last ``limit`` bytes of a command's output (stdout and stderr
merged), cutting from the beginning at a UTF-8 character boundary; the reader keeps draining into
it, so a command that writes forever holds at most ``limit`` bytes.  :func:`exit_status` turns a
process group's exit code into ACP's ``{exitCode, signal}``.
"""

from __future__ import annotations

import signal
from typing import Any

__all__ = ["OutputBuffer", "exit_status"]

_CONTINUATION = 0xC0  # mask: a byte b with b & 0xC0 == 0x80 continues a UTF-8 sequence
_SIGNALS = {int(s) for s in signal.Signals}


def _sequence_length(lead: int) -> int:
    """How many bytes the UTF-8 sequence that ``lead`` starts takes (1 for a stray byte)."""
    if lead >= 0xF0:
        return 4
    if lead >= 0xE0:
        return 3
    if lead >= 0xC0:
        return 2
    return 1


def _complete(data: bytes | bytearray) -> int:
    """Length of ``data`` without an incomplete UTF-8 sequence at its very end."""
    end = len(data)
    for back in range(1, min(4, end) + 1):
        byte = data[end - back]
        if byte & _CONTINUATION != 0x80:  # ASCII or a lead byte
            return end if back >= _sequence_length(byte) else end - back
    return end


class OutputBuffer:
    """The last ``limit`` bytes of a terminal's output, cut at a character boundary.

    ``truncated`` turns true the first time bytes are dropped from the beginning.  The text
    (:meth:`text`) leaves out a multi-byte character whose last bytes have not arrived yet, and
    shows bytes that are not UTF-8 as U+FFFD.
    """

    __slots__ = ("_data", "limit", "received", "truncated")

    def __init__(self, limit: int) -> None:
        if limit < 0:
            raise ValueError(f"limit must be >= 0, got {limit}")
        self.limit = limit
        self._data = bytearray()
        self.truncated = False
        self.received = 0
        """Bytes the command wrote in all (kept or dropped)."""

    def __len__(self) -> int:
        """Bytes held now (never more than ``limit``)."""
        return len(self._data)

    def append(self, chunk: bytes | bytearray) -> None:
        """Add ``chunk``; drop from the beginning what exceeds ``limit``."""
        self.received += len(chunk)
        data = self._data
        data += chunk
        excess = len(data) - self.limit
        if excess <= 0:
            if self.truncated:  # the rest of a character whose head an earlier cut dropped
                self._drop_orphans()
            return
        start = excess
        while start < len(data) and data[start] & _CONTINUATION == 0x80 and start - excess < 3:
            start += 1  # never keep the tail of a character whose head is dropped
        del data[:start]
        self.truncated = True

    def _drop_orphans(self) -> None:
        data = self._data
        start = 0
        while start < len(data) and start < 3 and data[start] & _CONTINUATION == 0x80:
            start += 1
        del data[:start]

    def text(self, *, final: bool = False) -> str:
        """The output as text; ``final`` (the command has exited) decodes an incomplete end too."""
        data = self._data
        end = len(data) if final else _complete(data)
        return data[:end].decode("utf-8", errors="replace")


def exit_status(code: int | None) -> dict[str, Any]:
    """ACP's ``{exitCode, signal}`` for a process group's exit code.

    A negative code is a signal; so is ``128 + N`` for a signal N, the keeper's (and a shell's)
    convention for a command killed by a signal.  ``None`` (never started) gives both ``None``.
    """
    if code is None:
        return {"exitCode": None, "signal": None}
    number = -code if code < 0 else code - 128 if code > 128 else 0
    if number in _SIGNALS:
        return {"exitCode": None, "signal": signal.Signals(number).name}
    return {"exitCode": code, "signal": None}
