"""A contained subprocess tree: spawn, contain, terminate, kill, reap.

Every subprocess corral starts runs in its own session (so in its own process
group) with a :class:`~actors.process.Marker` in its environment naming the
runtime, the job and the group. When the owning task leaves, the whole tree is
torn down in bounded time: close stdin, wait, SIGTERM the group, wait, then
SIGKILL the group unconditionally (even if the leader already exited) and every
marked process that left the group (``setsid``, double fork), then reap. With
``lifeline=True`` a small keeper (:mod:`actors.keeper`) heads the group and
takes it down if the runtime process itself dies, even by SIGKILL. The keeper
is a child subreaper: every orphan, marked or not, reparents to it, and it
kills and reaps them all before it exits (the group's SIGKILL waits for that).
"""

from __future__ import annotations

import os
import signal
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import TypedDict, Unpack

import psutil
import trio

from ..log import get_logger
from .marker import MARKER_ENV, Marker, is_zombie, marker_value
from .reap import killpg, wait_all_exit
from .spawn import spawn_in_session
from .stdout import GroupStdout
from .sweep import KILL_WAIT

__all__ = ["GroupOptions", "ProcessGroup", "open_process_group"]

_SCAN_BOUND = 2.0  # extra time allowed for the process-table scans of the graceful stage
_DRAIN_WAIT = 0.5  # bound on reading the rest of stderr once the tree is dead
_KILL_ROUNDS = 3  # rescans for escapers that forked while being killed
_KEEPER_SLACK = 1.0  # the keeper clears its descendants within term_grace; its margin beyond
_CHUNK = 65536


class GroupOptions(TypedDict, total=False):
    """The keywords of :class:`ProcessGroup` besides ``marker`` (for :func:`open_process_group`)."""

    env: Mapping[str, str] | None
    cwd: str | os.PathLike[str] | None
    stdin_grace: float
    term_grace: float
    lifeline: bool
    capture_stderr_tail: int


class ProcessGroup:
    """One subprocess tree in its own session, owned by the task that runs it.

    ``await nursery.start(group.run)`` spawns it; leaving ``run`` for any
    reason (the leader exited, cancellation, :meth:`terminate`) tears the whole
    tree down within ``stdin_grace + term_grace`` plus a few seconds, and
    closes every pipe. :func:`open_process_group` wraps this in a context
    manager.
    """

    def __init__(
        self,
        command: Sequence[str],
        *,
        marker: Marker,
        env: Mapping[str, str] | None = None,
        cwd: str | os.PathLike[str] | None = None,
        stdin_grace: float = 0.5,
        term_grace: float = 2.0,
        lifeline: bool = True,
        capture_stderr_tail: int = 8192,
    ) -> None:
        if not command:
            raise ValueError("command: must name a program to run")
        if stdin_grace < 0 or term_grace < 0:
            raise ValueError("stdin_grace and term_grace must be >= 0")
        if capture_stderr_tail < 0:
            raise ValueError("capture_stderr_tail must be >= 0")
        self.command: tuple[str, ...] = tuple(os.fspath(part) for part in command)
        self.marker = marker
        self._env = dict(env) if env is not None else {}
        self._cwd = os.fspath(cwd) if cwd is not None else None
        self._stdin_grace = stdin_grace
        self._term_grace = term_grace
        self._lifeline = lifeline
        self._tail_size = capture_stderr_tail
        self._marker_value = marker.env_value()
        self._proc: trio.Process | None = None
        self._stdout: GroupStdout | None = None
        self._lifeline_w: int | None = None
        self._run_called = False
        self._closed = False  # terminate() was called: contain at once, never wait
        self._spawned = trio.Event()
        self._tail = bytearray()
        self._stderr_eof = trio.Event()
        self._teardown_started = False
        self._teardown_done = trio.Event()
        self._log = get_logger("actors.process").bind(
            job_id=marker.job_id, group_id=marker.group_id
        )

    # -- state -----------------------------------------------------------------

    def _process(self) -> trio.Process:
        if self._proc is None:
            raise RuntimeError("process group not started")
        return self._proc

    @property
    def pid(self) -> int:
        """Pid of the group leader (the keeper when ``lifeline=True``)."""
        return self._process().pid

    @property
    def pgid(self) -> int:
        """Process group id (equal to the leader's pid: it leads its own session)."""
        return self._process().pid

    @property
    def stdin(self) -> trio.abc.SendStream:
        """Raw pipe to the command's stdin (closed first during teardown)."""
        stream = self._process().stdin
        assert stream is not None
        return stream

    @property
    def stdout(self) -> trio.abc.ReceiveStream:
        """Raw pipe from the command's stdout.

        Readable until :meth:`run` returns. When the leader exits on its own,
        ``run`` waits (briefly) for an active reader to consume what the tree
        wrote; once the pipe is closed, reads return EOF.
        """
        self._process()
        assert self._stdout is not None
        return self._stdout

    @property
    def returncode(self) -> int | None:
        """The leader's exit code once it has been reaped, else ``None``.

        Negative for a signal without a keeper; with ``lifeline=True`` the keeper
        reports the command's code, or ``128 + signal``.
        """
        return self._proc.returncode if self._proc is not None else None

    @property
    def stderr_tail(self) -> str:
        """The last ``capture_stderr_tail`` bytes of stderr, decoded leniently."""
        return self._tail.decode("utf-8", errors="replace")

    async def wait(self) -> int:
        """Wait until the leader exits and return its exit code.

        Raises ``RuntimeError`` if spawning failed.
        """
        await self._spawned.wait()
        return await self._process().wait()

    def live_processes(self) -> int:
        """Count live (non-zombie) processes of this tree: group members and marked escapers.

        Blocking (walks the process table with psutil).
        """
        if self._proc is None:
            return 0
        return len(self._scan())

    # -- lifecycle -----------------------------------------------------------------

    async def run(
        self, *, task_status: trio.TaskStatus[ProcessGroup] = trio.TASK_STATUS_IGNORED
    ) -> int | None:
        """Spawn the tree, report ``started(self)``, wait for the leader, then tear down.

        Returns the leader's exit code when it exited on its own, ``None`` when
        the tree was torn down first (:meth:`terminate`). On cancellation the
        teardown runs (shielded, bounded) and ``Cancelled`` propagates.
        """
        if self._run_called:
            raise RuntimeError("a ProcessGroup runs once")
        self._run_called = True
        if self._closed:
            raise RuntimeError("process group terminated before it started")
        try:
            proc = await self._spawn()
        finally:
            self._spawned.set()  # on failure too: wait() and terminate() must not hang
        exited_on_own = False
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._drain_stderr)
                task_status.started(self)
                if not self._closed:  # terminate() may have raced the spawn
                    await proc.wait()
                    exited_on_own = not self._teardown_started
                await self._teardown()
                with trio.move_on_after(_DRAIN_WAIT):
                    await self._stderr_eof.wait()
                    assert self._stdout is not None
                    await self._stdout.wait_consumed()
                nursery.cancel_scope.cancel()
        finally:
            await self._teardown()
            await self._close_pipes()
        self._log.debug("process group finished", returncode=proc.returncode)
        return proc.returncode if exited_on_own else None

    async def terminate(self) -> None:
        """Tear the tree down now (idempotent); returns once it is dead and reaped."""
        await self._teardown()

    async def _spawn(self) -> trio.Process:
        env = dict(os.environ)
        env.update(self._env)
        env[MARKER_ENV] = self._marker_value
        proc, self._lifeline_w = await spawn_in_session(
            self.command, env=env, cwd=self._cwd, lifeline=self._lifeline,
            term_grace=self._term_grace,
        )
        assert isinstance(proc.stdout, trio.lowlevel.FdStream)
        self._proc = proc
        self._stdout = GroupStdout(proc.stdout)
        self._log = self._log.bind(pid=proc.pid)
        self._log.debug("process group spawned", command=self.command, lifeline=self._lifeline)
        return proc

    async def _drain_stderr(self) -> None:
        stream = self._process().stderr
        assert stream is not None
        try:
            while True:
                data = await stream.receive_some(_CHUNK)
                if not data:
                    break
                if self._tail_size:
                    self._tail += data
                    del self._tail[: -self._tail_size]
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        self._stderr_eof.set()

    def _scan(self) -> list[tuple[psutil.Process, bool]]:
        """Live tree members as ``(process, in_group)``: group members and marked escapers."""
        pgid, own = self.pgid, os.getpid()
        found: list[tuple[psutil.Process, bool]] = []
        for proc in psutil.process_iter():
            if proc.pid == own:
                continue
            try:
                in_group = os.getpgid(proc.pid) == pgid
            except OSError:
                continue
            if not in_group and marker_value(proc) != self._marker_value:
                continue
            if not is_zombie(proc):
                found.append((proc, in_group))
        return found

    async def _teardown(self) -> None:
        self._closed = True
        if self._proc is None and self._run_called:
            with trio.CancelScope(shield=True):  # a spawn in flight is one fork/exec away
                await self._spawned.wait()
        if self._proc is None:  # never spawned (or spawning failed): nothing to contain
            await trio.lowlevel.checkpoint()
            return
        if self._teardown_started:
            with trio.CancelScope(shield=True):  # bounded: the first caller's teardown is
                await self._teardown_done.wait()
            return
        self._teardown_started = True
        try:
            with trio.move_on_after(
                self._stdin_grace + self._term_grace + _SCAN_BOUND + _KEEPER_SLACK, shield=True
            ):
                await self._graceful(self._proc)
            with trio.move_on_after(KILL_WAIT, shield=True):
                await self._kill()
            with trio.move_on_after(KILL_WAIT, shield=True):
                await self._proc.wait()  # reap the leader
        finally:
            self._teardown_done.set()

    async def _graceful(self, proc: trio.Process) -> None:
        """Close stdin, wait; SIGTERM the group and escapers, wait."""
        if proc.stdin is not None:
            await proc.stdin.aclose()
        if proc.returncode is None:
            with trio.move_on_after(self._stdin_grace):
                await proc.wait()
        tree = await trio.to_thread.run_sync(self._scan, abandon_on_cancel=True)
        if proc.returncode is None or tree:
            self._log.debug("terminating process group", processes=len(tree))
            killpg(self.pgid, signal.SIGTERM)
            for member, in_group in tree:
                if not in_group:
                    try:
                        member.terminate()
                    except psutil.Error:
                        pass
            # A keeper clears its subreaped descendants within term_grace: let it finish first.
            with trio.move_on_after(self._term_grace + (_KEEPER_SLACK if self._lifeline else 0)):
                await wait_all_exit(proc, [member.pid for member, _ in tree])

    async def _kill(self) -> None:
        """SIGKILL the group unconditionally, then every live member and marked escaper.

        A keeper still alive here is stuck: what it has below it is killed first, before the
        keeper dies with its group and its orphans (outside the group, unmarked) go to init.
        """
        if self._lifeline and self._process().returncode is None:
            await trio.to_thread.run_sync(self._kill_descendants, abandon_on_cancel=True)
        killpg(self.pgid, signal.SIGKILL)
        for _ in range(_KILL_ROUNDS):
            tree = await trio.to_thread.run_sync(self._scan, abandon_on_cancel=True)
            if not tree:
                break
            self._log.info("killing leftover processes", processes=len(tree))
            for member, _in_group in tree:
                try:
                    member.kill()
                except psutil.Error:
                    pass
            await wait_all_exit(None, [member.pid for member, _ in tree])

    def _kill_descendants(self) -> None:
        try:
            below = psutil.Process(self.pid).children(recursive=True)
        except psutil.Error:
            return
        for member in below:
            try:
                member.kill()
            except psutil.Error:
                pass

    async def _close_pipes(self) -> None:
        proc = self._process()
        with trio.CancelScope(shield=True):
            if not self._stderr_eof.is_set():
                with trio.move_on_after(_DRAIN_WAIT):
                    await self._drain_stderr()
            for stream in (proc.stdin, proc.stderr):
                if stream is not None:
                    await stream.aclose()
            if self._stdout is not None:
                await self._stdout.end()
        self._close_lifeline()

    def _close_lifeline(self) -> None:
        if self._lifeline_w is not None:
            os.close(self._lifeline_w)
            self._lifeline_w = None


@asynccontextmanager
async def open_process_group(
    command: Sequence[str], *, marker: Marker, **options: Unpack[GroupOptions]
) -> AsyncIterator[ProcessGroup]:
    """Run a :class:`ProcessGroup` (same arguments) for the body of an ``async with``.

    The group is started (spawned) before the body runs. Leaving the body in
    any way (normally, by an exception or by cancellation) tears the tree down
    (bounded) and waits for it. The body's exception propagates unchanged,
    never wrapped in an exception group and never swallowed.
    """
    group = ProcessGroup(command, marker=marker, **options)
    own: list[BaseException] = []
    unwrap: BaseException | None = None
    try:
        async with trio.open_nursery() as nursery:
            try:
                await nursery.start(group.run)
            except BaseException as exc:
                own.append(exc)
                raise
            try:
                yield group
            except BaseException as exc:
                own.append(exc)
                raise
            finally:
                await group.terminate()
    except BaseExceptionGroup as exc_group:
        leaves = exc_group.exceptions
        if len(leaves) != 1 or not any(leaves[0] is exc for exc in own):
            raise
        unwrap = leaves[0]
    if unwrap is None and own:
        unwrap = own[0]  # the nursery absorbed it; the caller must still see it
    if unwrap is not None:
        raise unwrap
