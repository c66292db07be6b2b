"""How an ACP client answers an agent's ``session/request_permission``."""

from __future__ import annotations

from typing import Any, Literal

import attrs

__all__ = ["PermissionPolicy"]

_PREFERENCES: dict[str, tuple[str, ...]] = {
    "reject": ("reject_once", "reject_always"),
    "allow": ("allow_once",),
    "allow_always": ("allow_always", "allow_once"),
}
_REJECT_KINDS = ("reject_once", "reject_always")


@attrs.frozen
class PermissionPolicy:
    """How the client answers ``session/request_permission``.

    ``mode`` picks the first offered option of a matching kind:

    - ``"reject"`` (default): ``reject_once``, else ``reject_always``;
    - ``"allow"``: ``allow_once`` (never escalates to ``allow_always``);
    - ``"allow_always"``: ``allow_always``, else ``allow_once``.

    When no option matches, a reject option is chosen if offered, otherwise the
    outcome is ``cancelled``.
    """

    mode: Literal["reject", "allow", "allow_always"] = attrs.field(
        default="reject", validator=attrs.validators.in_(("reject", "allow", "allow_always"))
    )

    def choose(self, options: object) -> dict[str, Any]:
        """Return the ``outcome`` object answering a request that offers ``options``."""
        candidates = options if isinstance(options, list) else []
        offered = [
            option
            for option in candidates
            if isinstance(option, dict) and isinstance(option.get("optionId"), str)
        ]
        for kinds in (_PREFERENCES[self.mode], _REJECT_KINDS):
            for kind in kinds:
                for option in offered:
                    if option.get("kind") == kind:
                        return {"outcome": "selected", "optionId": option["optionId"]}
        return {"outcome": "cancelled"}
