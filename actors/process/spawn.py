"""Starting a command in a session of its own, headed by the keeper when it has a lifeline."""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

import trio

__all__ = ["spawn_in_session"]

KEEPER = Path(__file__).parent.parent / "keeper.py"
"""The keeper script (:mod:`actors.keeper`), run by path with ``python -I -S``."""


def _resolve(executable: str, env: Mapping[str, str], cwd: str | None) -> None:
    """Raise ``FileNotFoundError`` unless ``executable`` can be started."""
    if os.sep in executable:
        path = os.path.join(cwd or os.getcwd(), executable)
        if os.path.isfile(path) and os.access(path, os.X_OK):
            return
    elif shutil.which(executable, path=env.get("PATH", os.defpath)) is not None:
        return
    raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), executable)


def _keeper_argv(command: Sequence[str], lifeline_r: int, term_grace: float) -> list[str]:
    return [
        sys.executable or "python3",
        "-I",
        "-S",
        str(KEEPER),
        str(lifeline_r),
        repr(term_grace),  # the keeper caps it once the runtime is gone
        str(os.getpid()),
        "--",
        *command,
    ]


async def spawn_in_session(
    command: Sequence[str],
    *,
    env: Mapping[str, str],
    cwd: str | None,
    lifeline: bool,
    term_grace: float,
) -> tuple[trio.Process, int | None]:
    """Start ``command`` in a new session with piped stdio; return it and the lifeline's write end.

    With ``lifeline`` the group is headed by the keeper, which holds the lifeline's read end; the
    caller owns the write end (``None`` without a lifeline) and closes it once the group is gone.
    Raises ``FileNotFoundError`` before forking when ``command[0]`` cannot be started.
    """
    _resolve(command[0], env, cwd)
    argv: list[str] = list(command)
    pass_fds: tuple[int, ...] = ()
    lifeline_r: int | None = None
    lifeline_w: int | None = None
    if lifeline:
        lifeline_r, lifeline_w = os.pipe()  # both ends O_CLOEXEC
        argv = _keeper_argv(command, lifeline_r, term_grace)
        pass_fds = (lifeline_r,)
    try:
        proc = await trio.lowlevel.open_process(
            argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
            env=env,
            cwd=cwd,
            pass_fds=pass_fds,
        )
    except BaseException:
        if lifeline_w is not None:
            os.close(lifeline_w)
        raise
    finally:
        if lifeline_r is not None:
            os.close(lifeline_r)
    return proc, lifeline_w
