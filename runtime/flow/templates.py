"""Prompt templates: ``{name}`` placeholders, looked up, never evaluated."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

__all__ = ["fill_template", "template_fields"]

_PLACEHOLDER = re.compile(r"\{\{|\}\}|\{([^{}]*)\}")


def template_fields(template: str) -> list[str]:
    """The placeholders of a prompt template: ``"{triage.summary}"`` -> ``["triage.summary"]``.

    ``{{`` and ``}}`` stand for literal braces.  Nothing is evaluated: a placeholder is a name or a
    dotted path, looked up in the step's inputs or, failing that, read as an input reference.
    """
    fields = []
    for match in _PLACEHOLDER.finditer(template):
        if match.group(1) is not None:
            name = match.group(1).strip()
            if not name or not all(part.strip() and part.replace("_", "a").replace("$", "a").isalnum()
                                   for part in name.split(".")):
                raise ValueError(f"placeholder {{{match.group(1)}}} is not a name or dotted path")
            fields.append(name)
    return fields


def fill_template(template: str, lookup: Callable[[str], Any]) -> str:
    """Replace every placeholder with ``str(lookup(name))``; ``{{``/``}}`` become braces."""

    def sub(match: re.Match[str]) -> str:
        token = match.group(0)
        if token == "{{":
            return "{"
        if token == "}}":
            return "}"
        value = lookup(match.group(1).strip())
        return value if isinstance(value, str) else str(value)

    return _PLACEHOLDER.sub(sub, template)
