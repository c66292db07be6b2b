"""Exception-group helpers shared by the actors."""

from __future__ import annotations

__all__ = ["lone_exception"]


def lone_exception(group: BaseExceptionGroup[BaseException]) -> BaseException | None:
    """The single leaf of a group of nested one-element groups, else ``None``."""
    exc: BaseException = group
    while isinstance(exc, BaseExceptionGroup):
        if len(exc.exceptions) != 1:
            return None
        exc = exc.exceptions[0]
    return exc
