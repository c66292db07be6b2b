"""The workspace: the only directory an agent may read and write through ``fs/*`` requests.

A path that leaves it (``..``, an absolute path elsewhere, a symlink pointing out) is refused with
an error that says so; files are opened with ``O_NOFOLLOW``, so a symlink swapped in after the
check is not followed either. Blocking: the client calls these through ``trio.to_thread``.
"""

from __future__ import annotations

import itertools
import os
from pathlib import Path
from typing import Any

from ..log import EventLogger
from .errors import INTERNAL_ERROR, INVALID_PARAMS, RemoteError

__all__ = ["RESOURCE_NOT_FOUND", "Workspace"]

#: ACP error code for a missing resource (a file that does not exist).
RESOURCE_NOT_FOUND = -32002


class Workspace:
    """``fs/read_text_file`` and ``fs/write_text_file``, confined to ``root``."""

    def __init__(self, root: Path, log: EventLogger) -> None:
        self.root = Path(root).resolve()
        self._log = log

    def confine(self, params: dict[str, Any]) -> Path:
        """Resolve the request's path; refuse anything outside the workspace."""
        raw = params.get("path")
        if not isinstance(raw, str) or not raw or "\x00" in raw:
            raise RemoteError(INVALID_PARAMS, f"path must be a non-empty string, got {raw!r}")
        candidate = Path(raw)
        if not candidate.is_absolute():
            candidate = self.root / candidate
        try:
            resolved = candidate.resolve()
        except (OSError, RuntimeError) as exc:
            raise RemoteError(INVALID_PARAMS, f"refused: cannot resolve {raw!r}: {exc}") from None
        if not resolved.is_relative_to(self.root):
            self._log.warning("fs request outside the workspace refused", path=raw)
            raise RemoteError(
                INVALID_PARAMS,
                f"refused: {raw!r} is outside the workspace {str(self.root)!r}",
                {"path": raw, "workspace": str(self.root)},
            )
        return resolved

    def read_text_file(self, params: dict[str, Any]) -> dict[str, Any]:
        path = self.confine(params)
        line = _optional_count(params, "line")
        limit = _optional_count(params, "limit")
        try:
            # O_NOFOLLOW: a symlink swapped in after the check is not followed
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
            with open(fd, encoding="utf-8", newline="") as file:
                if line is None and limit is None:
                    content = file.read()
                else:
                    first = max(line or 1, 1) - 1
                    stop = None if limit is None else first + limit
                    content = "".join(itertools.islice(file, first, stop))
        except FileNotFoundError:
            raise RemoteError(
                RESOURCE_NOT_FOUND, f"file not found: {params['path']!r}", {"path": params["path"]}
            ) from None
        except UnicodeDecodeError:
            raise RemoteError(
                INTERNAL_ERROR, f"cannot read {params['path']!r}: not UTF-8 text"
            ) from None
        except OSError as exc:
            raise RemoteError(
                INTERNAL_ERROR, f"cannot read {params['path']!r}: {exc.strerror}"
            ) from None
        return {"content": content}

    def write_text_file(self, params: dict[str, Any]) -> dict[str, Any]:
        path = self.confine(params)
        content = params.get("content")
        if not isinstance(content, str):
            raise RemoteError(
                INVALID_PARAMS, f"content must be a string, got {type(content).__name__}"
            )
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o644)
            with open(fd, "w", encoding="utf-8", newline="") as file:
                file.write(content)
        except OSError as exc:
            raise RemoteError(
                INTERNAL_ERROR, f"cannot write {params['path']!r}: {exc.strerror}"
            ) from None
        return {}




def _optional_count(params: dict[str, Any], key: str) -> int | None:
    value = params.get(key)
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise RemoteError(INVALID_PARAMS, f"{key} must be a non-negative integer, got {value!r}")
    return value
