"""Contained subprocess trees: spawn, contain, terminate, kill, reap.

Every subprocess corral starts runs in its own session (so in its own process
group) with a :class:`Marker` in its environment naming the runtime, the job and
the group. When the owning task leaves, the whole tree is torn down in bounded
time: close stdin, wait, SIGTERM the group, wait, then SIGKILL the group
unconditionally (even if the leader already exited) and every marked process
that left the group (``setsid``, double fork), then reap. With ``lifeline=True``
a small keeper (:mod:`actors.keeper`) heads the group and takes it down if the
runtime process itself dies, even by SIGKILL; :func:`sweep_dead_runtimes`
catches whatever a dead runtime left behind when the next runtime starts.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import shutil
import signal
import struct
import subprocess
import sys
import termios
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import attrs
import psutil
import trio

from .log import get_logger

__all__ = [
    "MARKER_ENV",
    "Marker",
    "ProcessGroup",
    "find_marked",
    "kill_tree",
    "open_process_group",
    "sweep_dead_runtimes",
]

MARKER_ENV = "CORRAL_MARKER"
"""Name of the environment variable that carries a process's :class:`Marker`."""

_MARKER_VERSION = 1
_KEEPER = Path(__file__).with_name("keeper.py")
_KEEPER_GRACE_CAP = 2.0  # the keeper's SIGTERM grace once the runtime is gone
_SCAN_BOUND = 2.0  # extra time allowed for the process-table scans of the graceful stage
_KILL_WAIT = 3.0  # bound on waiting for SIGKILLed processes to vanish and the leader to be reaped
_DRAIN_WAIT = 0.5  # bound on reading the rest of stderr once the tree is dead
_KILL_ROUNDS = 3  # rescans for escapers that forked while being killed
_START_TOLERANCE = 0.1  # seconds of slack when matching a runtime's process start time
_CHUNK = 65536


def _current_create_time(pid: int) -> float:
    return psutil.Process(pid).create_time()


@attrs.frozen
class Marker:
    """Identity written into a subprocess's environment (``MARKER_ENV``).

    It names the owning runtime (by id, pid and process start time, so a dead
    runtime can be told from a recycled pid), the job and the process group.
    """

    runtime_id: str
    job_id: str
    runtime_pid: int = attrs.field(factory=os.getpid)
    runtime_started: float = attrs.field()
    group_id: str = attrs.field(factory=lambda: uuid.uuid4().hex)

    @runtime_started.default
    def _runtime_started_default(self) -> float:
        return _current_create_time(self.runtime_pid)

    def env_value(self) -> str:
        """Serialise the marker for the ``MARKER_ENV`` environment variable."""
        data = {"v": _MARKER_VERSION, **attrs.asdict(self)}
        return json.dumps(data, separators=(",", ":"), sort_keys=True)

    @classmethod
    def parse(cls, value: str) -> Marker | None:
        """Read a marker written by :meth:`env_value`; ``None`` if ``value`` is not one."""
        try:
            data = json.loads(value)
        except (TypeError, ValueError):
            return None
        if not isinstance(data, dict) or data.get("v") != _MARKER_VERSION:
            return None
        strings = ("runtime_id", "job_id", "group_id")
        if not all(isinstance(data.get(name), str) for name in strings):
            return None
        pid, started = data.get("runtime_pid"), data.get("runtime_started")
        if not isinstance(pid, int) or isinstance(pid, bool):
            return None
        if not isinstance(started, int | float) or isinstance(started, bool):
            return None
        return cls(
            runtime_id=data["runtime_id"],
            job_id=data["job_id"],
            runtime_pid=pid,
            runtime_started=float(started),
            group_id=data["group_id"],
        )

    def runtime_alive(self) -> bool:
        """True while the runtime named by this marker is still running (blocking, psutil).

        Compares wall-clock start times, so a wall-clock step larger than a tenth
        of a second makes a live runtime look dead; :func:`sweep_dead_runtimes`
        does not rely on it alone.
        """
        try:
            proc = psutil.Process(self.runtime_pid)
            if abs(proc.create_time() - self.runtime_started) > _START_TOLERANCE:
                return False
            return proc.status() != psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            return False
        except psutil.AccessDenied:
            return True


def _marker_value(proc: psutil.Process) -> str | None:
    try:
        return proc.environ().get(MARKER_ENV)
    except (psutil.Error, OSError):
        return None


def _is_zombie(proc: psutil.Process) -> bool:
    try:
        return proc.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True
    except psutil.Error:
        return False


def _marked() -> Iterator[tuple[psutil.Process, Marker]]:
    """Every live marked process but the caller, with its parsed marker."""
    own = os.getpid()
    for proc in psutil.process_iter():
        if proc.pid == own:
            continue
        value = _marker_value(proc)
        marker = Marker.parse(value) if value is not None else None
        if marker is not None and not _is_zombie(proc):
            yield proc, marker


def find_marked(predicate: Callable[[Marker], bool]) -> list[psutil.Process]:
    """Live processes whose ``MARKER_ENV`` parses to a marker satisfying ``predicate``.

    Blocking (walks the process table); call it through ``trio.to_thread``.
    Zombies and the calling process itself are never returned.
    """
    return [proc for proc, marker in _marked() if predicate(marker)]


def kill_tree(procs: list[psutil.Process], grace: float) -> None:
    """SIGTERM ``procs``, wait up to ``grace`` seconds, then SIGKILL the survivors.

    Blocking; call it through ``trio.to_thread``. Processes that are already gone
    are ignored; psutil guards every signal against recycled pids.
    """
    for proc in procs:
        try:
            proc.terminate()
        except psutil.Error:
            pass
    _gone, alive = psutil.wait_procs(procs, timeout=grace)
    for proc in alive:
        try:
            proc.kill()
        except psutil.Error:
            pass
    if alive:
        psutil.wait_procs(alive, timeout=_KILL_WAIT)


def _runtime_gone(marker: Marker, member: psutil.Process) -> bool:
    """True when the runtime that started ``member`` has died (robust to clock steps)."""
    try:
        member_started = member.create_time()
    except psutil.Error:
        return False  # gone already, or not ours to judge
    try:
        runtime = psutil.Process(marker.runtime_pid)
        if runtime.status() == psutil.STATUS_ZOMBIE:
            return True
        started = runtime.create_time()
        if abs(started - marker.runtime_started) <= _START_TOLERANCE:
            return False
        # A recycled pid, or the wall clock was stepped since the marker was written.
        # The runtime was alive when its tree started, so a process recycling its pid
        # started after ``member``; the real runtime started before it (and takes far
        # longer than a clock tick to spawn anything, so a tie means recycled). Both
        # times are read now, against the same clock.
        return started >= member_started
    except psutil.NoSuchProcess:
        return True
    except psutil.AccessDenied:
        return False


def _sweep(grace: float) -> int:
    procs = [proc for proc, marker in _marked() if _runtime_gone(marker, proc)]
    kill_tree(procs, grace)
    return len(procs)


async def sweep_dead_runtimes(grace: float = 1.0) -> int:
    """Kill every marked process whose runtime is no longer alive; return how many.

    Meant for runtime start-up: it catches what a runtime that died without its
    keepers (``lifeline=False``) left behind. Processes of live runtimes,
    this one included, are left alone.
    """
    count = await trio.to_thread.run_sync(_sweep, grace)
    if count:
        get_logger(__name__).warning("swept processes of dead runtimes", count=count)
    return count


def _killpg(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _resolve(executable: str, env: Mapping[str, str], cwd: str | None) -> None:
    """Raise ``FileNotFoundError`` unless ``executable`` can be started."""
    if os.sep in executable:
        path = os.path.join(cwd or os.getcwd(), executable)
        if os.path.isfile(path) and os.access(path, os.X_OK):
            return
    elif shutil.which(executable, path=env.get("PATH", os.defpath)) is not None:
        return
    raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), executable)


async def _wait_pid_exit(pid: int) -> None:
    """Park until ``pid`` exits (becomes a zombie or disappears); no polling."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return
    except OSError:  # pidfd unsupported: nothing to park on, do not wait
        await trio.lowlevel.checkpoint()
        return
    try:
        await trio.lowlevel.wait_readable(fd)
    finally:
        os.close(fd)


async def _wait_all_exit(proc: trio.Process | None, pids: Sequence[int]) -> None:
    async with trio.open_nursery() as nursery:
        if proc is not None:
            nursery.start_soon(proc.wait)
        for pid in pids:
            if proc is None or pid != proc.pid:
                nursery.start_soon(_wait_pid_exit, pid)


class _Stdout(trio.abc.ReceiveStream):
    """The command's stdout as the owner sees it.

    Once the group has ended and closed the pipe, reading gives EOF (``b""``)
    instead of ``ClosedResourceError``: no more data can ever arrive.
    """

    def __init__(self, stream: trio.lowlevel.FdStream) -> None:
        self._stream = stream
        self._ended = False
        self._received = trio.Event()

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        if self._ended:
            await trio.lowlevel.checkpoint()
            return b""
        try:
            data = await self._stream.receive_some(max_bytes)
        except trio.ClosedResourceError:
            if self._ended:
                return b""
            raise
        self._received.set()
        self._received = trio.Event()
        return bytes(data)

    async def aclose(self) -> None:
        await self._stream.aclose()

    def _pending(self) -> int:
        """Bytes written by the tree but not yet read by the owner."""
        try:
            raw = fcntl.ioctl(self._stream.fileno(), termios.FIONREAD, b"\0" * 4)
        except (OSError, ValueError):
            return 0
        return int(struct.unpack("i", raw)[0])

    async def wait_consumed(self) -> None:
        """Park until the owner has read everything the (dead) tree wrote."""
        while True:
            event = self._received
            if self._ended or self._pending() == 0:
                return
            await event.wait()

    async def end(self) -> None:
        """Close the pipe for good; readers see EOF from now on."""
        self._ended = True
        await self._stream.aclose()


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
        self._stdout: _Stdout | None = None
        self._lifeline_w: int | None = None
        self._run_called = False
        self._closed = False  # terminate() was called: contain at once, never wait
        self._spawned = trio.Event()
        self._tail = bytearray()
        self._stderr_eof = trio.Event()
        self._teardown_started = False
        self._teardown_done = trio.Event()
        self._log = get_logger(__name__).bind(
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
        _resolve(self.command[0], env, self._cwd)
        argv: list[str] = list(self.command)
        pass_fds: tuple[int, ...] = ()
        lifeline_r: int | None = None
        if self._lifeline:
            lifeline_r, self._lifeline_w = os.pipe()  # both ends O_CLOEXEC
            keeper_grace = min(self._term_grace, _KEEPER_GRACE_CAP)
            argv = [
                sys.executable or "python3",
                "-I",
                "-S",
                str(_KEEPER),
                str(lifeline_r),
                repr(keeper_grace),
                str(os.getpid()),
                "--",
                *argv,
            ]
            pass_fds = (lifeline_r,)
        try:
            proc = await trio.lowlevel.open_process(
                argv,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                start_new_session=True,
                env=env,
                cwd=self._cwd,
                pass_fds=pass_fds,
            )
        except BaseException:
            self._close_lifeline()
            raise
        finally:
            if lifeline_r is not None:
                os.close(lifeline_r)
        assert isinstance(proc.stdout, trio.lowlevel.FdStream)
        self._proc = proc
        self._stdout = _Stdout(proc.stdout)
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
            if not in_group and _marker_value(proc) != self._marker_value:
                continue
            if not _is_zombie(proc):
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
                self._stdin_grace + self._term_grace + _SCAN_BOUND, shield=True
            ):
                await self._graceful(self._proc)
            with trio.move_on_after(_KILL_WAIT, shield=True):
                await self._kill()
            with trio.move_on_after(_KILL_WAIT, shield=True):
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
            _killpg(self.pgid, signal.SIGTERM)
            for member, in_group in tree:
                if not in_group:
                    try:
                        member.terminate()
                    except psutil.Error:
                        pass
            with trio.move_on_after(self._term_grace):
                await _wait_all_exit(proc, [member.pid for member, _ in tree])

    async def _kill(self) -> None:
        """SIGKILL the group unconditionally, then every live member and marked escaper."""
        _killpg(self.pgid, signal.SIGKILL)
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
            await _wait_all_exit(None, [member.pid for member, _ in tree])

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
async def open_process_group(command: Sequence[str], **kw: Any) -> AsyncIterator[ProcessGroup]:
    """Run ``ProcessGroup(command, **kw)`` for the body of an ``async with``.

    The group is started (spawned) before the body runs. Leaving the body in
    any way (normally, by an exception or by cancellation) tears the tree down
    (bounded) and waits for it. The body's exception propagates unchanged,
    never wrapped in an exception group and never swallowed.
    """
    group = ProcessGroup(command, **kw)
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
