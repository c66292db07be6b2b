"""The keeper: a tiny lifeline guard and child subreaper at the head of a corral process group.

Usage (the runtime builds this command line; see ``actors.process``)::

    python -I -S keeper.py LIFELINE_FD GRACE RUNTIME_PID -- COMMAND [ARGS...]

The keeper is the session and group leader. It makes itself a child subreaper
(``prctl(PR_SET_CHILD_SUBREAPER)``), so every orphaned descendant -- marked or
not, in its own session or not -- reparents to the keeper rather than to init.
It starts COMMAND as its child in the same group, with its own stdin/stdout/stderr
inherited (so the runtime's pipes reach COMMAND directly), then drops its own
copies of stdin and stdout. While COMMAND runs, it reaps the orphans that die.
It ends in one of three ways:

* COMMAND exits: the keeper SIGTERMs every remaining descendant, waits up to GRACE
  seconds for them, SIGKILLs the rest (again and again, as killing one can orphan
  its children onto the keeper), reaps them all, and exits with COMMAND's exit
  code, or ``128 + signal`` when COMMAND was killed by a signal.
* SIGTERM from the runtime (its group teardown, which reached the group already):
  the same, except that the SIGTERM goes only to descendants outside the group.
* EOF on the lifeline pipe (the runtime holds the write end for the group's
  whole life, so EOF means the runtime is gone, even if it was SIGKILLed): the
  keeper SIGTERMs its group, its descendants and every process carrying its
  marker (``CORRAL_MARKER`` in ``/proc/<pid>/environ``), waits up to
  ``min(GRACE, 2)`` seconds, SIGKILLs its descendants and the marked escapers and
  finally the group, itself included.

Without ``PR_SET_CHILD_SUBREAPER`` (prctl unavailable) the same steps run, but an
orphan goes to init and only its marker can find it.

Signals: SIGTERM, SIGINT, SIGHUP, SIGQUIT and SIGUSR1 do not kill the keeper (it
must outlive COMMAND to keep guarding the group). Apart from the runtime's SIGTERM,
a signal sent by the runtime, by the keeper itself or by a member of the group was
a group-wide signal that already reached COMMAND; any other sender addressed the
keeper alone, so the keeper forwards the signal to COMMAND.

Stdlib only and no ``site`` import, so it starts in a few milliseconds.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time

MARKER_ENV = "CORRAL_MARKER"
WAKE = signal.SIGUSR1  # the lifeline thread wakes the main thread with it
FORWARDED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT, WAKE)
WAITED = (*FORWARDED, signal.SIGCHLD)
PR_SET_CHILD_SUBREAPER = 36
LIFELINE_GRACE_CAP = 2.0  # the SIGTERM grace once the runtime is gone
KILL_ROUND = 0.1  # seconds to wait for SIGKILLed descendants before looking again
KILL_ROUNDS = 50
EXIT_USAGE = 2
EXIT_NOT_FOUND = 127
EXIT_CANNOT_RUN = 126


def _exit_code(status: int) -> int:
    """Translate a wait status into a shell-style exit code."""
    if os.WIFSIGNALED(status):
        return 128 + os.WTERMSIG(status)
    return os.waitstatus_to_exitcode(status)


def become_subreaper() -> bool:
    """Make this process a child subreaper; False when the platform cannot."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        return int(libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)) == 0
    except (ImportError, OSError, AttributeError):
        return False


def _kill(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except OSError:
        pass


def _proc_names() -> list[str]:
    try:
        return [name for name in os.listdir("/proc") if name.isdigit()]
    except OSError:
        return []


def descendants(root: int) -> list[tuple[int, int]]:
    """Live (non-zombie) descendants of ``root`` as ``(pid, pgid)``, from ``/proc/<pid>/stat``."""
    children: dict[int, list[tuple[int, int, bytes]]] = {}
    for name in _proc_names():
        try:
            with open(f"/proc/{name}/stat", "rb") as handle:
                data = handle.read()
        except OSError:
            continue
        fields = data[data.rfind(b")") + 2 :].split()  # state ppid pgrp ...
        if len(fields) > 2:
            children.setdefault(int(fields[1]), []).append((int(name), int(fields[2]), fields[0]))
    found: list[tuple[int, int]] = []
    todo = [root]
    while todo:
        for pid, pgid, state in children.pop(todo.pop(), ()):
            todo.append(pid)
            if state != b"Z":
                found.append((pid, pgid))
    return found


def _signal_marked(entry: bytes, sig: int, skip: set[int]) -> None:
    """Send ``sig`` to every other process whose environment holds ``entry``."""
    own = os.getpid()
    for name in _proc_names():
        if int(name) == own or int(name) in skip:
            continue
        try:
            with open(f"/proc/{name}/environ", "rb") as handle:
                environ = handle.read()
        except OSError:
            continue
        if entry in environ.split(b"\0"):
            _kill(int(name), sig)


class Keeper:
    """The keeper's state; one main thread does everything, a second one reads the lifeline."""

    def __init__(self, lifeline_fd: int, grace: float, runtime_pid: int) -> None:
        self.lifeline_fd = lifeline_fd
        self.grace = grace
        self.runtime_pid = runtime_pid
        self.child_pid = 0
        self.code: int | None = None
        self.lifeline_gone = False
        marker = os.environ.get(MARKER_ENV)
        self.marker_entry = (
            f"{MARKER_ENV}={marker}".encode("utf-8", "surrogateescape") if marker else None
        )

    def watch_lifeline(self) -> None:
        """Block until the lifeline reaches EOF, then wake the main thread."""
        while True:
            try:
                data = os.read(self.lifeline_fd, 4096)
            except InterruptedError:
                continue
            except OSError:
                data = b""
            if not data:
                break
        self.lifeline_gone = True
        _kill(os.getpid(), WAKE)

    # -- reaping -------------------------------------------------------------------

    def reap(self) -> bool:
        """Reap every child that exited (noting COMMAND's code); True while children remain."""
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return False
            if pid == 0:
                return True
            if pid == self.child_pid:
                self.code = _exit_code(status)

    def reap_until(self, deadline: float) -> bool:
        """Reap until the keeper has no child left (True) or ``deadline`` passes (False)."""
        while self.reap():
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            signal.sigtimedwait((signal.SIGCHLD,), left)
        return True

    def clear(self, grace: float, spare_group: bool) -> list[int]:
        """SIGTERM the descendants, wait up to ``grace``, SIGKILL and reap until none is left.

        ``spare_group`` leaves out members of the keeper's group (they got the runtime's SIGTERM).
        Returns the pids that got the SIGTERM.
        """
        if not self.reap():
            return []
        own, group = os.getpid(), os.getpgrp()
        termed = [pid for pid, pgid in descendants(own) if not (spare_group and pgid == group)]
        for pid in termed:
            _kill(pid, signal.SIGTERM)
        if self.reap_until(time.monotonic() + grace):
            return termed
        for _ in range(KILL_ROUNDS):
            for pid, _pgid in descendants(own):
                _kill(pid, signal.SIGKILL)
            if self.reap_until(time.monotonic() + KILL_ROUND):
                break
        return termed

    # -- the three endings -------------------------------------------------------------

    def die(self) -> None:
        """The runtime is gone: take down descendants, marked escapers and the group."""
        skip = {pid for pid, _pgid in descendants(os.getpid())}
        if self.marker_entry is not None:
            _signal_marked(self.marker_entry, signal.SIGTERM, skip)
        self._killpg(signal.SIGTERM)
        self.clear(min(self.grace, LIFELINE_GRACE_CAP), spare_group=True)
        self.finish()

    def finish(self) -> None:
        """After the lifeline's EOF: SIGKILL the marked escapers, then the group, itself included."""
        if self.marker_entry is not None:
            _signal_marked(self.marker_entry, signal.SIGKILL, set())
        self._killpg(signal.SIGKILL)
        os._exit(128 + signal.SIGKILL)  # not reached when the keeper leads its group

    def _killpg(self, sig: int) -> None:
        if os.getpgrp() == os.getpid():  # only ever signal a group the keeper leads
            try:
                os.killpg(0, sig)
            except OSError:
                pass
        else:
            _kill(self.child_pid, sig)

    def _from_inside(self, sender: int) -> bool:
        """True when ``sender`` signals the group as a whole (runtime, keeper, member)."""
        if sender in (self.runtime_pid, os.getpid()):
            return True
        try:
            return os.getpgid(sender) == os.getpgrp()
        except OSError:
            return False

    def wait(self) -> str:
        """Wait for COMMAND's exit, the runtime's SIGTERM or the lifeline's EOF; say which."""
        while True:
            info = signal.sigwaitinfo(WAITED)
            if info.si_signo == signal.SIGCHLD:
                self.reap()  # orphans that died, and maybe COMMAND
                if self.code is not None:
                    return "exited"
            elif info.si_signo == WAKE and self.lifeline_gone:
                return "lifeline"
            elif info.si_signo == signal.SIGTERM and info.si_pid == self.runtime_pid:
                return "terminated"
            elif not self._from_inside(info.si_pid):
                _kill(self.child_pid, info.si_signo)

    def run(self, argv: list[str]) -> int:
        """Start ``argv``, wait for it (or for the lifeline), clear descendants, return the code."""
        signal.pthread_sigmask(signal.SIG_BLOCK, WAITED)
        os.set_inheritable(self.lifeline_fd, False)
        become_subreaper()
        try:
            self.child_pid = os.posix_spawnp(
                argv[0],
                argv,
                os.environ,
                setsigmask=(),
                setsigdef=(signal.SIGPIPE, signal.SIGXFSZ, *FORWARDED),
            )
        except FileNotFoundError as exc:
            os.write(2, f"corral keeper: {argv[0]}: {exc.strerror}\n".encode())
            return EXIT_NOT_FOUND
        except OSError as exc:
            os.write(2, f"corral keeper: {argv[0]}: {exc.strerror}\n".encode())
            return EXIT_CANNOT_RUN
        devnull = os.open(os.devnull, os.O_RDWR)
        os.dup2(devnull, 0)
        os.dup2(devnull, 1)
        os.close(devnull)
        threading.Thread(target=self.watch_lifeline, daemon=True).start()
        ending = self.wait()
        if ending == "lifeline":
            self.die()
        self.clear(self.grace, spare_group=ending == "terminated")
        if self.lifeline_gone:
            self.finish()
        return self.code if self.code is not None else 128 + signal.SIGKILL


def main(args: list[str]) -> int:
    """Parse ``LIFELINE_FD GRACE RUNTIME_PID -- COMMAND...`` and run the keeper."""
    try:
        split = args.index("--")
        lifeline_fd, grace, runtime_pid = args[:split]
        command = args[split + 1 :]
        keeper = Keeper(int(lifeline_fd), float(grace), int(runtime_pid))
    except ValueError:
        command = []
    if not command:
        os.write(2, b"usage: keeper.py LIFELINE_FD GRACE RUNTIME_PID -- COMMAND [ARGS...]\n")
        return EXIT_USAGE
    return keeper.run(command)


if __name__ == "__main__":
    os._exit(main(sys.argv[1:]))
