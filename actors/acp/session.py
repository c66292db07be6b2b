"""What an agent answered to ``session/new``: the session id and the modes it advertised."""

from __future__ import annotations

from typing import Any

import attrs

__all__ = ["Session"]


@attrs.frozen
class Session:
    """An open ACP session.

    ``modes`` holds the ids of the agent's ``modes.availableModes`` (``None`` when it advertised
    no modes) and ``current_mode`` its ``modes.currentModeId``.
    """

    session_id: str
    modes: tuple[str, ...] | None = None
    current_mode: str | None = None

    @classmethod
    def from_answer(cls, session_id: str, answer: Any) -> Session:
        """The session of a ``session/new`` answer (malformed ``modes`` count as none)."""
        modes = answer.get("modes") if isinstance(answer, dict) else None
        if not isinstance(modes, dict) or not isinstance(modes.get("availableModes"), list):
            return cls(session_id)
        ids = tuple(str(m["id"]) for m in modes["availableModes"] if isinstance(m, dict) and "id" in m)
        current = modes.get("currentModeId")
        return cls(session_id, ids, current if isinstance(current, str) else None)
