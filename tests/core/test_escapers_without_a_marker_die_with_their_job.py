"""A command step whose descendant clears its environment and starts a session of its own
(``env -i setsid``) -- no marker to find it by, outside the group -- still dies with its job: on
complete, cancel, step timeout and a SIGKILLed runtime, because the keeper at the head of the
group is a child subreaper. The host program's own process is never made one.

Real processes, checked on the real process table; the escaper writes its pid to a file so the
test knows it, and the test kills only that pid (in a finally) if it survived."""

from __future__ import annotations

import ctypes
import json
import os
import signal
import subprocess
import textwrap
from pathlib import Path

import psutil
import pytest
import trio
from core_support import BOUND, PY

from actors.process import find_marked
from runtime import Flow, JobState, Step, open_runtime
from runtime.testing import assert_no_leaks

ROOT = str(Path(__file__).resolve().parents[2])
PR_GET_CHILD_SUBREAPER = 37


def escaper(pidfile: Path, *, stays: str) -> list[str]:
    """A command whose background ``sleep 600`` runs without a marker, in a session of its own.

    ``stays``: ``"none"`` -- the command itself leaves and exits at once; ``"command"`` -- the
    command itself leaves and waits for the sleeper; ``"group"`` -- a child leaves and the command
    stays in the group, sleeping.
    """
    inner = f"sleep 600 & echo $! > {pidfile}"
    if stays == "none":
        return ["env", "-i", "setsid", "sh", "-c", inner]
    if stays == "command":
        return ["env", "-i", "setsid", "sh", "-c", inner + "; wait"]
    return ["sh", "-c", f"env -i setsid sh -c '{inner}'; exec sleep 600"]


def running(pid: int) -> bool:
    """True while ``pid`` is a live process (a zombie is dead: it only waits to be reaped)."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


async def read_pid(pidfile: Path) -> int:
    # A file has no event to park on: polling is the only way to look.
    while not pidfile.exists() or not pidfile.read_text().strip():  # noqa: ASYNC110
        await trio.sleep(0.02)
    return int(pidfile.read_text())


def kill_if_running(pidfile: Path) -> None:
    """Clean-up of a failed test: kill the escaper this test started, by its pid only."""
    if pidfile.exists() and pidfile.read_text().strip():
        pid = int(pidfile.read_text())
        if running(pid) and "sleep" in psutil.Process(pid).name():
            os.kill(pid, signal.SIGKILL)


def not_escaped(pid: int) -> None:
    assert not running(pid), f"the escaper {pid} outlived its job"
    try:
        parent = psutil.Process(pid).ppid()  # a zombie: reaped by whoever adopted it
    except psutil.NoSuchProcess:
        return
    assert parent == 1 or not running(parent)


@pytest.mark.parametrize("stays", ["none", "group"])
async def test_escaper_dies_when_the_command_completes(tmp_path, stays):
    pidfile = tmp_path / "escaper.pid"
    try:
        async with open_runtime(term_grace=0.5) as rt:
            with trio.fail_after(BOUND):
                command = escaper(pidfile, stays=stays)
                if stays == "group":  # the command must end by itself
                    command[-1] = command[-1].replace("; exec sleep 600", "; exit 0")
                job = await rt.spawn(Flow("leave", [Step("a", command=command)]))
                result = await job.wait()
            assert result.state is JobState.COMPLETED, result.error
            assert rt.stats().processes == 0
            assert_no_leaks(rt)
        not_escaped(int(pidfile.read_text()))
    finally:
        kill_if_running(pidfile)


@pytest.mark.parametrize("path", ["cancel", "step_timeout"])
@pytest.mark.parametrize("stays", ["command", "group"])
async def test_escaper_dies_on_cancel_and_step_timeout(tmp_path, path, stays):
    pidfile = tmp_path / "escaper.pid"
    step_kw = {"timeout": 1.0} if path == "step_timeout" else {}
    try:
        async with open_runtime(term_grace=0.5) as rt:
            with trio.fail_after(BOUND):
                step = Step("a", command=escaper(pidfile, stays=stays), **step_kw)
                job = await rt.spawn(Flow("leave", [step]))
                pid = await read_pid(pidfile)
                assert running(pid)
                assert os.getsid(pid) != os.getsid(os.getpid())  # it really left the session
                if path == "cancel":
                    await job.cancel()
                result = await job.wait()
            expected = JobState.CANCELLED if path == "cancel" else JobState.FAILED
            assert result.state is expected
            assert rt.stats().processes == 0
            assert_no_leaks(rt)
        not_escaped(pid)
    finally:
        kill_if_running(pidfile)


RUNTIME_CHILD = textwrap.dedent("""
    import json, os, sys, trio
    from pathlib import Path
    from runtime import Flow, Step, open_runtime

    async def main(pidfile, command):
        async with open_runtime() as rt:
            job = await rt.spawn(Flow("doomed", [Step("a", command=command)]))
            while not pidfile.exists() or not pidfile.read_text().strip():
                await trio.sleep(0.02)
            print(json.dumps({"runtime": rt.id, "pid": int(pidfile.read_text())}), flush=True)
            await trio.sleep_forever()

    trio.run(main, Path(sys.argv[1]), json.loads(sys.argv[2]))
""")


@pytest.mark.parametrize("stays", ["command", "group"])
async def test_escaper_dies_when_the_runtime_is_sigkilled(tmp_path, stays):
    pidfile = tmp_path / "escaper.pid"
    command = json.dumps(escaper(pidfile, stays=stays))
    env = {**os.environ, "PYTHONPATH": ROOT}
    proc = await trio.lowlevel.open_process(
        [PY, "-c", RUNTIME_CHILD, str(pidfile), command], stdout=subprocess.PIPE, env=env
    )
    try:
        with trio.fail_after(BOUND):
            line = b""
            while not line.endswith(b"\n"):
                data = await proc.stdout.receive_some(4096)
                assert data, "the runtime child ended early"
                line += data
        info = json.loads(line)
        assert running(info["pid"])
        proc.send_signal(signal.SIGKILL)
        await proc.wait()
        # polled: the keeper is not our child and its runtime is gone
        with trio.fail_after(5):
            while running(info["pid"]):  # noqa: ASYNC110
                await trio.sleep(0.05)
            while find_marked(lambda m: m.runtime_id == info["runtime"]):  # noqa: ASYNC110
                await trio.sleep(0.05)
        not_escaped(info["pid"])
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        await proc.stdout.aclose()
        kill_if_running(pidfile)


async def test_the_host_process_is_never_made_a_subreaper(tmp_path):
    pidfile = tmp_path / "escaper.pid"
    try:
        async with open_runtime(term_grace=0.5) as rt:
            with trio.fail_after(BOUND):
                job = await rt.spawn(Flow("leave", [Step("a", command=escaper(pidfile, stays="none"))]))
                assert (await job.wait()).state is JobState.COMPLETED
        libc = ctypes.CDLL(None, use_errno=True)
        flag = ctypes.c_int(-1)
        assert libc.prctl(PR_GET_CHILD_SUBREAPER, ctypes.byref(flag), 0, 0, 0) == 0
        assert flag.value == 0
    finally:
        kill_if_running(pidfile)

