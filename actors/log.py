"""corral's loggers: structlog events on top of the standard library, quiet like any library.

``get_logger(name)`` returns a small immutable logger with structlog's calling convention
(``log.bind(job_id=...)``, ``log.info("event", key=value)``).  Each call goes:

- to the app's structlog pipeline when the app configured structlog (``structlog.is_configured()``),
  as every structlog user expects;
- otherwise to the standard library logger ``name`` (``corral.*`` / ``actors.*``): nothing below
  WARNING unless the app configured :mod:`logging`, and never to stdout (Python's last-resort
  handler writes WARNING and above to stderr).  The event and its bound fields (``job_id``,
  ``step``, ...) are rendered as ``key=value`` text by :mod:`structlog.stdlib`.

corral itself never configures structlog or the root logger; only its CLI does.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any, Protocol

import structlog

__all__ = ["EventLogger", "Logger", "get_logger"]


def _stdlib_processors() -> list[Any]:
    return [
        structlog.contextvars.merge_contextvars,
        structlog.processors.format_exc_info,
        structlog.processors.KeyValueRenderer(key_order=["event"], drop_missing=True),
    ]


class EventLogger(Protocol):
    """What corral logs through: a :class:`Logger`, or any structlog bound logger."""

    def debug(self, event: str, **fields: Any) -> object: ...
    def info(self, event: str, **fields: Any) -> object: ...
    def warning(self, event: str, **fields: Any) -> object: ...
    def error(self, event: str, **fields: Any) -> object: ...


class Logger:
    """A structlog-style logger that resolves its destination on every call (cheap when disabled)."""

    __slots__ = ("_context", "_name")

    def __init__(self, name: str, context: Mapping[str, Any] | None = None) -> None:
        self._name = name
        self._context: Mapping[str, Any] = dict(context or {})

    @property
    def name(self) -> str:
        """The standard library logger's name."""
        return self._name

    def bind(self, **fields: Any) -> Logger:
        """A logger with ``fields`` added to every event."""
        return Logger(self._name, {**self._context, **fields})

    def debug(self, event: str, **fields: Any) -> None:
        """Log ``event`` at DEBUG."""
        self._log(logging.DEBUG, "debug", event, fields)

    def info(self, event: str, **fields: Any) -> None:
        """Log ``event`` at INFO."""
        self._log(logging.INFO, "info", event, fields)

    def warning(self, event: str, **fields: Any) -> None:
        """Log ``event`` at WARNING."""
        self._log(logging.WARNING, "warning", event, fields)

    def error(self, event: str, **fields: Any) -> None:
        """Log ``event`` at ERROR."""
        self._log(logging.ERROR, "error", event, fields)

    def exception(self, event: str, **fields: Any) -> None:
        """Log ``event`` at ERROR with the exception being handled."""
        fields.setdefault("exc_info", True)
        self._log(logging.ERROR, "error", event, fields)

    def _log(self, level: int, method: str, event: str, fields: dict[str, Any]) -> None:
        if structlog.is_configured():
            target = structlog.get_logger(self._name).bind(**self._context)
        else:
            std = logging.getLogger(self._name)
            if not std.isEnabledFor(level):
                return
            target = structlog.wrap_logger(std, processors=_stdlib_processors(),
                                           wrapper_class=structlog.stdlib.BoundLogger, **self._context)
        getattr(target, method)(event, **fields)


def get_logger(name: str) -> Logger:
    """The logger ``name`` (``corral.job``, ``actors.process``, ...)."""
    return Logger(name)
