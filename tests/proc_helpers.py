"""Small programs that tests/actors/test_process_trees_are_contained.py runs as real subprocesses.

Run as ``python tests/proc_helpers.py MODE ARGS...``. Every process prints
``<role> <pid>`` lines on stdout (flushed) so the test can find it, then parks
in ``signal.pause()`` until a signal ends it.

Modes:
  exit CODE                 write "out" to stdout and "err" to stderr, exit CODE
  stderr N                  write N bytes of stderr ("0123456789" repeated), exit 0
  chain DEPTH IGNORE        print "level<k> <pid>", start the next level, park;
                            IGNORE is a comma list of levels that ignore SIGTERM
  setsid                    print "leader <pid>"; a child calls setsid() and
                            prints "escaper <pid>"
  daemon                    print "leader <pid>"; double fork: the grandchild
                            calls setsid() and prints "daemon <pid>"
  reexec                    read a marker value from stdin, exec a sleeper carrying
                            it (same pid, same start time), which prints "ready <pid>"
  runtime RUNTIME_ID        a corral runtime: open a process group running
                            "setsid" mode, print "keeper <pid>" and the group's
                            own lines, park (the test SIGKILLs it)
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys

HERE = os.path.abspath(__file__)


def say(role: str, pid: int | None = None) -> None:
    sys.stdout.write(f"{role} {pid if pid is not None else os.getpid()}\n")
    sys.stdout.flush()


def park() -> None:
    while True:
        signal.pause()


def chain(depth: int, ignore: set[int], level: int = 0) -> None:
    if level in ignore:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    say(f"level{level}")
    if level < depth:
        subprocess.Popen(
            [
                sys.executable,
                HERE,
                "chain-level",
                str(depth),
                ",".join(map(str, ignore)),
                str(level + 1),
            ]
        )
    park()


def parse_ignore(text: str) -> set[int]:
    return {int(part) for part in text.split(",") if part}


def setsid_escaper() -> None:
    say("leader")
    if os.fork() == 0:
        os.setsid()
        say("escaper")
        park()
    park()


def daemon() -> None:
    say("leader")
    first = os.fork()
    if first == 0:
        os.setsid()
        if os.fork() == 0:
            say("daemon")
            park()
        os._exit(0)
    os.waitpid(first, 0)
    park()


def runtime(runtime_id: str) -> None:
    sys.path.insert(0, os.path.dirname(os.path.dirname(HERE)))
    import trio

    from actors.process import Marker, open_process_group

    async def main() -> None:
        marker = Marker(runtime_id=runtime_id, job_id="killed-runtime")
        command = [sys.executable, HERE, "setsid"]
        async with open_process_group(command, marker=marker, term_grace=0.2) as group:
            say("keeper", group.pid)
            while True:
                data = await group.stdout.receive_some(4096)
                if not data:
                    break
                sys.stdout.buffer.write(data)
                sys.stdout.flush()
            await trio.sleep_forever()

    trio.run(main)


def main(argv: list[str]) -> None:
    mode = argv[0]
    if mode == "exit":
        sys.stdout.write("out")
        sys.stderr.write("err")
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(int(argv[1]))
    elif mode == "stderr":
        count = int(argv[1])
        sys.stderr.write(("0123456789" * (count // 10 + 1))[:count])
        sys.stderr.flush()
    elif mode == "chain":
        chain(int(argv[1]), parse_ignore(argv[2] if len(argv) > 2 else ""))
    elif mode == "chain-level":
        chain(int(argv[1]), parse_ignore(argv[2]), int(argv[3]))
    elif mode == "setsid":
        setsid_escaper()
    elif mode == "daemon":
        daemon()
    elif mode == "reexec":
        value = sys.stdin.readline().strip()
        env = {**os.environ, "CORRAL_MARKER": value}
        sleeper = "import os, signal; print('ready', os.getpid(), flush=True); signal.pause()"
        os.execve(sys.executable, [sys.executable, "-c", sleeper], env)
    elif mode == "runtime":
        runtime(argv[1])
    else:
        raise SystemExit(f"unknown mode {mode!r}")


if __name__ == "__main__":
    main(sys.argv[1:])
