"""What an invalid flow raises."""

from __future__ import annotations

import difflib
from collections.abc import Iterable

__all__ = ["FlowError", "suggest"]


class FlowError(ValueError):
    """An invalid flow definition.  ``field`` names the offending field (e.g. ``steps.fix.after``)."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.problem = problem


def suggest(name: str, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(name, list(choices), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""
