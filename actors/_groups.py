"""Exception-group helpers shared by the actors (and by the runtime above them).

A trio nursery wraps whatever escapes it in an exception group, so each owner that hands back
"the" exception of a body, or that tells a cancellation from a failure, unwraps a group. These
are the only unwraps: every one in ``actors`` goes through them.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import trio

__all__ = ["innermost", "is_cancellation", "lone_exception", "raise_lone", "split_cancelled"]


def innermost(exc: BaseException) -> BaseException:
    """``exc`` stripped of one-exception groups: a leaf, or a group of two or more."""
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc


def lone_exception(group: BaseExceptionGroup[BaseException]) -> BaseException | None:
    """The single leaf of a group of nested one-element groups, else ``None``."""
    leaf = innermost(group)
    return None if isinstance(leaf, BaseExceptionGroup) else leaf


@contextmanager
def raise_lone() -> Iterator[None]:
    """Re-raise a group escaping the body as its lone leaf (``from None``); any other group as is.

    For an owner whose internal nursery must not change what its caller sees: one failure (or one
    cancellation) comes out as itself, never wrapped.
    """
    try:
        yield
    except BaseExceptionGroup as group:
        lone = lone_exception(group)
        if lone is None:
            raise
        raise lone from None


def split_cancelled(
    exc: BaseException,
) -> tuple[BaseException | None, BaseExceptionGroup[BaseException] | None]:
    """``(the trio.Cancelled part of exc, the rest)``, either ``None`` when empty.

    A bare ``Cancelled`` is its own cancelled part; any other bare exception comes back as the
    rest, wrapped in a ``BaseExceptionGroup``.
    """
    if isinstance(exc, trio.Cancelled):
        return exc, None
    if isinstance(exc, BaseExceptionGroup):
        return exc.split(trio.Cancelled)
    return None, BaseExceptionGroup("not a cancellation", [exc])


def is_cancellation(exc: BaseException) -> bool:
    """True when ``exc`` is ``trio.Cancelled``, or a group holding nothing else."""
    cancelled, rest = split_cancelled(exc)
    return cancelled is not None and rest is None
