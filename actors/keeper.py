"""The keeper: a tiny lifeline guard at the head of a corral process group.

Usage (the runtime builds this command line; see ``actors.process``)::

    python -I -S keeper.py LIFELINE_FD GRACE RUNTIME_PID -- COMMAND [ARGS...]

The keeper is the session and group leader. It starts COMMAND as its only child
in the same group, with its own stdin/stdout/stderr inherited (so the runtime's
pipes reach COMMAND directly), then drops its own copies of stdin and stdout.
It then waits for two things:

* COMMAND exits: the keeper exits with COMMAND's exit code, or ``128 + signal``
  when COMMAND was killed by a signal.
* EOF on the lifeline pipe (the runtime holds the write end for the group's
  whole life, so EOF means the runtime is gone, even if it was SIGKILLed): the
  keeper sends SIGTERM to its group and to every process carrying its marker
  (``CORRAL_MARKER`` in ``/proc/<pid>/environ``) that left the group, waits up
  to GRACE seconds for COMMAND, then SIGKILLs the marked escapers and finally
  the group, itself included.

Signals: SIGTERM, SIGINT, SIGHUP and SIGQUIT do not kill the keeper (it must
outlive COMMAND to keep guarding the group). A signal sent by the runtime, by the
keeper itself or by a member of the group was a group-wide signal that already
reached COMMAND; any other sender addressed the keeper alone, so the keeper
forwards the signal to COMMAND.

Stdlib only and no ``site`` import, so it starts in a few milliseconds.
"""

from __future__ import annotations

import os
import signal
import sys
import threading

MARKER_ENV = "CORRAL_MARKER"
FORWARDED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT)
WAITED = (*FORWARDED, signal.SIGCHLD)
EXIT_USAGE = 2
EXIT_NOT_FOUND = 127
EXIT_CANNOT_RUN = 126


def _exit_code(status: int) -> int:
    """Translate a wait status into a shell-style exit code."""
    if os.WIFSIGNALED(status):
        return 128 + os.WTERMSIG(status)
    return os.waitstatus_to_exitcode(status)


def _signal_marked(entry: bytes, sig: int) -> None:
    """Send ``sig`` to every other process whose environment holds ``entry``."""
    own = os.getpid()
    try:
        names = os.listdir("/proc")
    except OSError:
        return
    for name in names:
        if not name.isdigit() or int(name) == own:
            continue
        try:
            with open(f"/proc/{name}/environ", "rb") as handle:
                environ = handle.read()
        except OSError:
            continue
        if entry in environ.split(b"\0"):
            try:
                os.kill(int(name), sig)
            except OSError:
                pass


class Keeper:
    """State shared by the keeper's main thread and its lifeline thread."""

    def __init__(self, lifeline_fd: int, grace: float, runtime_pid: int) -> None:
        self.lifeline_fd = lifeline_fd
        self.grace = grace
        self.runtime_pid = runtime_pid
        self.child_pid = 0
        self.lock = threading.Lock()
        self.dying = False
        self.exiting = False
        self.child_gone = threading.Event()
        marker = os.environ.get(MARKER_ENV)
        self.marker_entry = (
            f"{MARKER_ENV}={marker}".encode("utf-8", "surrogateescape") if marker else None
        )

    def watch_lifeline(self) -> None:
        """Block until the lifeline reaches EOF, then take the whole group down."""
        while True:
            try:
                data = os.read(self.lifeline_fd, 4096)
            except InterruptedError:
                continue
            except OSError:
                data = b""
            if not data:
                break
        with self.lock:
            if self.exiting:
                return
            self.dying = True
        self._signal_all(signal.SIGTERM)
        self.child_gone.wait(self.grace)
        self._signal_all(signal.SIGKILL)

    def _signal_all(self, sig: int) -> None:
        """Signal marked escapers first, then the group (the keeper included)."""
        if self.marker_entry is not None:
            _signal_marked(self.marker_entry, sig)
        try:
            if os.getpgrp() == os.getpid():  # only ever signal a group the keeper leads
                os.killpg(0, sig)
            else:
                os.kill(self.child_pid, sig)
                os.kill(os.getpid(), sig)
        except OSError:
            pass

    def _from_inside(self, sender: int) -> bool:
        """True when ``sender`` signals the group as a whole (runtime, keeper, member)."""
        if sender in (self.runtime_pid, os.getpid()):
            return True
        try:
            return os.getpgid(sender) == os.getpgrp()
        except OSError:
            return False

    def run(self, argv: list[str]) -> int:
        """Start ``argv``, wait for it (or for the lifeline) and return the exit code."""
        signal.pthread_sigmask(signal.SIG_BLOCK, WAITED)
        os.set_inheritable(self.lifeline_fd, False)
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
        while True:
            info = signal.sigwaitinfo(WAITED)
            if info.si_signo == signal.SIGCHLD:
                pid, status = os.waitpid(self.child_pid, os.WNOHANG)
                if pid == self.child_pid and (os.WIFEXITED(status) or os.WIFSIGNALED(status)):
                    code = _exit_code(status)
                    break
            elif not self._from_inside(info.si_pid):
                try:
                    os.kill(self.child_pid, info.si_signo)
                except OSError:
                    pass
        with self.lock:
            self.exiting = not self.dying
        if not self.exiting:
            # The lifeline thread is taking the group down; it ends with SIGKILL.
            self.child_gone.set()
            threading.Event().wait()
        return code


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
