"""Contained process trees: real subprocesses, checked against the real process table."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
import trio
import trio.testing

from actors.process import (
    MARKER_ENV,
    Marker,
    ProcessGroup,
    find_marked,
    kill_tree,
    open_process_group,
    sweep_dead_runtimes,
)

HELPERS = str(Path(__file__).resolve().parents[1] / "proc_helpers.py")
ROOT = str(Path(__file__).resolve().parents[2])
LIMIT = 20  # seconds: outer bound for any single test's real-clock work
FAST = {"stdin_grace": 0.1, "term_grace": 0.2}


def helper(*args: str) -> list[str]:
    return [sys.executable, HELPERS, *args]


@pytest.fixture
def marker() -> Iterator[Marker]:
    """A marker with a runtime id of its own; whatever carries it is killed afterwards."""
    mark = Marker(runtime_id=uuid.uuid4().hex, job_id="test")
    yield mark
    kill_tree(find_marked(lambda m: m.runtime_id == mark.runtime_id), 0.1)


def alive(pid: int) -> bool:
    """True when ``pid`` is a live, non-zombie process."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def marked_alive(group_id: str) -> list[psutil.Process]:
    return find_marked(lambda m: m.group_id == group_id)


def zombie_children() -> list[psutil.Process]:
    zombies = []
    for child in psutil.Process().children():
        try:
            if child.status() == psutil.STATUS_ZOMBIE:
                zombies.append(child)
        except psutil.NoSuchProcess:
            pass
    return zombies


async def read_pids(stream: trio.abc.ReceiveStream, count: int) -> dict[str, int]:
    """Read ``role pid`` lines from ``stream`` until ``count`` roles are known."""
    pids: dict[str, int] = {}
    buffer = b""
    while len(pids) < count:
        data = await stream.receive_some(4096)
        assert data, f"stream ended after {pids}"
        buffer += data
        *lines, buffer = buffer.split(b"\n")
        for line in lines:
            parts = line.decode().split()
            if len(parts) == 2 and parts[1].isdigit():
                pids[parts[0]] = int(parts[1])
    return pids


def assert_gone(pids: dict[str, int] | list[int]) -> None:
    values = list(pids.values()) if isinstance(pids, dict) else pids
    survivors = [pid for pid in values if alive(pid)]
    assert survivors == [], f"survivors: {survivors} of {pids}"


# -- Marker ---------------------------------------------------------------------------


def test_marker_roundtrip_and_defaults() -> None:
    mark = Marker(runtime_id="r" * 32, job_id="job:1/ü")
    assert mark.runtime_pid == os.getpid()
    assert mark.runtime_started == psutil.Process().create_time()
    assert Marker.parse(mark.env_value()) == mark
    assert (
        Marker(runtime_id="r", job_id="j").group_id != Marker(runtime_id="r", job_id="j").group_id
    )
    assert mark.runtime_alive()


@pytest.mark.parametrize(
    "value",
    [
        "",
        "not json",
        "[]",
        "{}",
        '{"v":2,"runtime_id":"r","job_id":"j","group_id":"g",'
        '"runtime_pid":1,"runtime_started":1.0}',
        '{"v":1,"runtime_id":"r","job_id":"j","group_id":"g","runtime_pid":"1",'
        '"runtime_started":1.0}',
        '{"v":1,"runtime_id":"r","job_id":"j","group_id":"g","runtime_pid":true,'
        '"runtime_started":1.0}',
    ],
)
def test_marker_parse_rejects_garbage(value: str) -> None:
    assert Marker.parse(value) is None


def test_process_group_rejects_bad_arguments(marker: Marker) -> None:
    with pytest.raises(ValueError, match="command"):
        ProcessGroup([], marker=marker)
    with pytest.raises(ValueError, match="term_grace"):
        ProcessGroup(["true"], marker=marker, term_grace=-1)


# -- normal exit ------------------------------------------------------------------------


@pytest.mark.parametrize("lifeline", [True, False])
async def test_normal_exit(marker: Marker, lifeline: bool) -> None:
    await trio.lowlevel.checkpoint()
    me = psutil.Process()
    baseline = me.num_fds()
    with trio.fail_after(LIMIT):
        async with open_process_group(
            helper("exit", "3"), marker=marker, lifeline=lifeline
        ) as group:
            out = b""
            while chunk := await group.stdout.receive_some(4096):
                out += chunk
            assert await group.wait() == 3
            leader = group.pid
    assert out == b"out"
    assert group.returncode == 3
    assert group.stderr_tail == "err"
    assert not alive(leader)
    assert marked_alive(marker.group_id) == []
    assert group.live_processes() == 0
    assert zombie_children() == []
    assert me.num_fds() == baseline


async def test_run_returns_exit_code_and_env_carries_marker(marker: Marker) -> None:
    code = (
        "import os, sys; "
        f"sys.stdout.write(os.environ[{MARKER_ENV!r}] + '|' + os.environ['EXTRA']); "
        "sys.exit(7)"
    )
    group = ProcessGroup([sys.executable, "-c", code], marker=marker, env={"EXTRA": "x"})
    result: list[int | None] = []

    async def runner(task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        result.append(await group.run(task_status=task_status))

    with trio.fail_after(LIMIT):
        async with trio.open_nursery() as nursery:
            await nursery.start(runner)
            out = b""
            while chunk := await group.stdout.receive_some(4096):
                out += chunk
    assert result == [7]
    assert out.decode() == marker.env_value() + "|x"


async def test_last_output_stays_readable_after_the_leader_exits(marker: Marker) -> None:
    code = "import sys; sys.stdout.write('x' * 30000)"
    with trio.fail_after(LIMIT):
        async with open_process_group([sys.executable, "-c", code], marker=marker) as group:
            assert await group.wait() == 0
            await group.terminate()  # the tree is dead and reaped
            await trio.testing.wait_all_tasks_blocked()  # run() is done with everything but us
            out = b""
            while chunk := await group.stdout.receive_some(65536):
                out += chunk
    assert out == b"x" * 30000
    assert await group.stdout.receive_some() == b""  # closed for good: reads as EOF


async def test_lifeline_pipe_reaches_only_its_keeper(marker: Marker) -> None:
    def pipes(pid: int) -> dict[int, str]:
        fds = {}
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if target.startswith("pipe:"):
                fds[int(fd)] = target
        return fds

    second = Marker(runtime_id=marker.runtime_id, job_id="second")
    with trio.fail_after(LIMIT):
        async with (
            open_process_group(helper("chain", "1"), marker=marker, **FAST) as first_group,
            open_process_group(helper("chain", "1"), marker=second, **FAST) as second_group,
        ):
            first = await read_pids(first_group.stdout, 2)
            second_pids = await read_pids(second_group.stdout, 2)
            keepers = {first_group.pid, second_group.pid}
            lifelines = {}
            for keeper in keepers:
                extra = [target for fd, target in pipes(keeper).items() if fd > 2]
                assert len(extra) == 1, extra  # the lifeline's read end, nothing else
                lifelines[keeper] = extra[0]
            assert lifelines[first_group.pid] != lifelines[second_group.pid]
            mine = set(pipes(os.getpid()).values())
            assert set(lifelines.values()) <= mine  # the runtime holds both write ends
            others = [*first.values(), *second_pids.values()]
            for pid in others:
                assert not set(lifelines.values()) & set(pipes(pid).values()), pid
            for keeper, lifeline in lifelines.items():
                other = (keepers - {keeper}).pop()
                assert lifeline not in pipes(other).values()


async def test_stderr_tail_is_bounded(marker: Marker) -> None:
    with trio.fail_after(LIMIT):
        async with open_process_group(
            helper("stderr", "10000"), marker=marker, capture_stderr_tail=100
        ) as group:
            await group.wait()
    assert group.stderr_tail == ("0123456789" * 10)
    assert group.returncode == 0


async def test_missing_program_raises_unwrapped_and_leaks_nothing(marker: Marker) -> None:
    await trio.lowlevel.checkpoint()
    me = psutil.Process()
    baseline = me.num_fds()
    for lifeline in (True, False):
        with pytest.raises(FileNotFoundError):
            async with open_process_group(
                ["corral-no-such-program"], marker=marker, lifeline=lifeline
            ):
                pytest.fail("body must not run")  # pragma: no cover
    assert me.num_fds() == baseline
    group = ProcessGroup(["corral-no-such-program"], marker=marker)
    with trio.fail_after(LIMIT):
        async with trio.open_nursery() as nursery:
            with pytest.raises(FileNotFoundError):
                await nursery.start(group.run)
            with pytest.raises(RuntimeError, match="not started"):
                await group.wait()
            await group.terminate()
    assert group.live_processes() == 0


# -- teardown ------------------------------------------------------------------------------


@pytest.mark.parametrize("lifeline", [True, False])
async def test_cancel_mid_run_kills_three_level_tree(marker: Marker, lifeline: bool) -> None:
    await trio.lowlevel.checkpoint()
    me = psutil.Process()
    baseline = me.num_fds()
    with trio.fail_after(LIMIT):
        with trio.CancelScope() as scope:
            async with open_process_group(
                helper("chain", "3"), marker=marker, lifeline=lifeline, **FAST
            ) as group:
                pids = await read_pids(group.stdout, 4)
                assert all(alive(pid) for pid in pids.values())
                scope.cancel()
                await trio.sleep_forever()
    assert scope.cancelled_caught
    assert_gone(pids)
    assert not alive(group.pid)
    assert group.live_processes() == 0
    assert marked_alive(marker.group_id) == []
    assert zombie_children() == []
    assert me.num_fds() == baseline


@pytest.mark.parametrize("lifeline", [True, False])
async def test_leader_ignoring_sigterm_is_killed(marker: Marker, lifeline: bool) -> None:
    with trio.fail_after(LIMIT):
        async with open_process_group(
            helper("chain", "0", "0"), marker=marker, lifeline=lifeline, **FAST
        ) as group:
            pids = await read_pids(group.stdout, 1)
    assert_gone(pids)
    # With a keeper, the keeper SIGKILLs the command after the grace and reports it.
    assert group.returncode == (128 + signal.SIGKILL if lifeline else -signal.SIGKILL)


@pytest.mark.parametrize("lifeline", [True, False])
async def test_grandchild_ignoring_sigterm_dies_after_leader_exits(
    marker: Marker, lifeline: bool
) -> None:
    with trio.fail_after(LIMIT):
        async with open_process_group(
            helper("chain", "2", "2"), marker=marker, lifeline=lifeline, **FAST
        ) as group:
            pids = await read_pids(group.stdout, 3)
    # The leader itself obeyed SIGTERM; the grandchild ignored it and still died.
    expected = 128 + signal.SIGTERM if lifeline else -signal.SIGTERM
    assert group.returncode == expected
    assert_gone(pids)
    assert group.live_processes() == 0


async def test_group_sigkilled_even_after_leader_exits_on_its_own(marker: Marker) -> None:
    # The leader exits at once; the process it started ignores SIGTERM and stays in the group.
    code = (
        "import subprocess, sys; "
        f"p = subprocess.Popen([sys.executable, {HELPERS!r}, 'chain', '0', '0']); "
        "print('straggler', p.pid, flush=True)"
    )
    with trio.fail_after(LIMIT):
        async with open_process_group(
            [sys.executable, "-c", code], marker=marker, lifeline=False, **FAST
        ) as group:
            pids = await read_pids(group.stdout, 1)
            assert await group.wait() == 0
    assert_gone(pids)
    assert group.live_processes() == 0


@pytest.mark.parametrize("mode,role", [("setsid", "escaper"), ("daemon", "daemon")])
@pytest.mark.parametrize("lifeline", [True, False])
async def test_escapers_found_by_marker_and_killed(
    marker: Marker, mode: str, role: str, lifeline: bool
) -> None:
    with trio.fail_after(LIMIT):
        async with open_process_group(
            helper(mode), marker=marker, lifeline=lifeline, **FAST
        ) as group:
            pids = await read_pids(group.stdout, 2)
            escaper = pids[role]
            assert os.getpgid(escaper) != group.pgid  # it really left the group
            assert [p.pid for p in marked_alive(marker.group_id)].count(escaper) == 1
    assert_gone(pids)
    assert marked_alive(marker.group_id) == []


async def test_live_processes_counts_tree_with_escaper(marker: Marker) -> None:
    with trio.fail_after(LIMIT):
        async with open_process_group(helper("setsid"), marker=marker, **FAST) as group:
            await read_pids(group.stdout, 2)
            # keeper + leader + escaper
            assert await trio.to_thread.run_sync(group.live_processes) == 3
        assert group.live_processes() == 0
    with trio.fail_after(LIMIT):
        async with open_process_group(
            helper("setsid"), marker=marker, lifeline=False, **FAST
        ) as bare:
            await read_pids(bare.stdout, 2)
            assert await trio.to_thread.run_sync(bare.live_processes) == 2
    assert bare.live_processes() == 0


async def test_terminate_is_idempotent_and_run_returns_none(marker: Marker) -> None:
    group = ProcessGroup(helper("chain", "1"), marker=marker, **FAST)
    result: list[int | None] = []

    async def runner(task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        result.append(await group.run(task_status=task_status))

    with trio.fail_after(LIMIT):
        async with trio.open_nursery() as nursery:
            await nursery.start(runner)
            pids = await read_pids(group.stdout, 2)
            async with trio.open_nursery() as inner:
                inner.start_soon(group.terminate)
                inner.start_soon(group.terminate)
            assert_gone(pids)
            await group.terminate()
    assert result == [None]
    assert group.returncode is not None
    with pytest.raises(RuntimeError):
        await group.run()


async def test_terminate_before_or_during_spawn(marker: Marker) -> None:
    early = ProcessGroup(helper("chain", "0"), marker=marker, **FAST)
    await early.terminate()
    with pytest.raises(RuntimeError, match="terminated before"):
        await early.run()

    racing = ProcessGroup(helper("chain", "0"), marker=marker, **FAST)
    result: list[int | None] = []

    async def runner() -> None:
        result.append(await racing.run())

    with trio.fail_after(LIMIT):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(runner)
            await trio.testing.wait_all_tasks_blocked()  # run() is spawning in a thread
            await racing.terminate()
            assert racing.returncode is not None  # spawned, then contained and reaped
    assert result == [None]
    assert racing.live_processes() == 0
    assert marked_alive(marker.group_id) == []


async def test_body_exception_propagates_unwrapped(marker: Marker) -> None:
    class Boom(Exception):
        pass

    with trio.fail_after(LIMIT):
        with pytest.raises(Boom) as info:
            async with open_process_group(helper("chain", "1"), marker=marker, **FAST) as group:
                pids = await read_pids(group.stdout, 2)
                raise Boom("from the body")
    assert type(info.value) is Boom
    assert_gone(pids)


async def test_stdin_eof_ends_a_cooperative_leader(marker: Marker) -> None:
    code = "import sys; sys.stdin.read(); sys.exit(5)"
    with trio.fail_after(LIMIT):
        async with open_process_group(
            [sys.executable, "-c", code], marker=marker, stdin_grace=5.0, term_grace=5.0
        ) as group:
            pass
    # Closing stdin was enough: it exited with its own code, not by a signal.
    assert group.returncode == 5


async def test_keeper_forwards_a_signal_addressed_to_it_alone(marker: Marker) -> None:
    with trio.fail_after(LIMIT):
        async with open_process_group(helper("chain", "0"), marker=marker, **FAST) as group:
            pids = await read_pids(group.stdout, 1)
            # Sent by an outsider (not the runtime, not the group): the keeper forwards it.
            kill = f"import os; os.kill({group.pid}, {int(signal.SIGTERM)})"
            await trio.run_process([sys.executable, "-c", kill])
            assert await group.wait() == 128 + signal.SIGTERM
    assert_gone(pids)


ADOPTED = """
import os, sys
r, w = os.pipe()
middle = os.fork()
if middle == 0:
    orphan = os.fork()
    if orphan == 0:
        os.read(r, 1)  # the middle has gone by now: whose is the orphan?
        print("adopted_by", os.getppid(), flush=True)
        os._exit(3)  # a child of the keeper exits: not the command
    print("orphan", orphan, flush=True)
    os._exit(0)
os.waitpid(middle, 0)
os.write(w, b"x")
sys.stdin.read()
sys.exit(7)
"""


async def test_keeper_adopts_and_reaps_orphans_while_its_command_runs(marker: Marker) -> None:
    with trio.fail_after(LIMIT):
        async with open_process_group(
            [sys.executable, "-c", ADOPTED], marker=marker, **FAST
        ) as group:
            pids = await read_pids(group.stdout, 2)
            assert pids["adopted_by"] == group.pid  # the keeper is a child subreaper
            # reaped at once by the keeper (no zombie left), polled: nothing to park on
            while psutil.pid_exists(pids["orphan"]):  # noqa: ASYNC110
                await trio.sleep(0.02)
            assert group.returncode is None  # the orphan's exit was not taken for the command's
            await group.stdin.aclose()
            assert await group.wait() == 7


async def test_unmarked_escaper_ignoring_sigterm_is_killed_by_the_keeper(
    marker: Marker, tmp_path: Path
) -> None:
    pidfile = tmp_path / "escaper.pid"
    inner = f"trap '' TERM; sleep 600 & echo \\$! > {pidfile}"
    command = ["sh", "-c", f'env -i setsid sh -c "{inner}"; exec sleep 600']
    pid = 0
    try:
        with trio.fail_after(LIMIT):
            async with open_process_group(command, marker=marker, **FAST) as group:
                # a file has no event to park on: polled
                while not pidfile.exists() or not pidfile.read_text().strip():  # noqa: ASYNC110
                    await trio.sleep(0.02)
                pid = int(pidfile.read_text())
                assert os.getsid(pid) != os.getsid(group.pid)  # out of the session, no marker
        assert not alive(pid)
        assert group.returncode == 128 + signal.SIGTERM  # the command obeyed the SIGTERM
        assert group.live_processes() == 0
    finally:
        if pid and alive(pid) and psutil.Process(pid).name() == "sleep":
            os.kill(pid, signal.SIGKILL)


# -- the runtime dies -----------------------------------------------------------------------


async def test_sigkilled_runtime_leaves_nothing_behind() -> None:
    runtime_id = uuid.uuid4().hex

    def mine(m: Marker) -> bool:
        return m.runtime_id == runtime_id

    env = {**os.environ, "PYTHONPATH": ROOT}
    runtime = await trio.lowlevel.open_process(
        helper("runtime", runtime_id), stdout=subprocess.PIPE, env=env
    )
    try:
        with trio.fail_after(LIMIT):
            assert runtime.stdout is not None
            pids = await read_pids(runtime.stdout, 3)
        marked = {p.pid for p in await trio.to_thread.run_sync(find_marked, mine)}
        assert marked == {pids["keeper"], pids["leader"], pids["escaper"]}
        runtime.kill()
        await runtime.wait()
        with trio.fail_after(5):  # the lifeline's promise
            # The process table has no event to park on: polling is the only way to look.
            while await trio.to_thread.run_sync(find_marked, mine):  # noqa: ASYNC110
                await trio.sleep(0.05)
        assert_gone(pids)
    finally:
        with trio.CancelScope(shield=True):
            runtime.kill()
            await runtime.wait()
            if runtime.stdout is not None:
                await runtime.stdout.aclose()
            kill_tree(find_marked(mine), 0.1)


async def test_sweep_kills_dead_runtimes_processes_only(marker: Marker) -> None:
    # A "runtime" that has exited: its pid and start time no longer name a live process.
    dead = await trio.lowlevel.open_process([sys.executable, "-c", "pass"])
    dead_started = psutil.Process(dead.pid).create_time()
    await dead.wait()
    orphan_marker = Marker(
        runtime_id=uuid.uuid4().hex,
        job_id="orphaned",
        runtime_pid=dead.pid,
        runtime_started=dead_started,
    )
    assert not orphan_marker.runtime_alive()
    sleeper = [sys.executable, "-c", "import signal; signal.pause()"]
    procs: list[trio.Process] = []
    try:
        for mark in (orphan_marker, orphan_marker, marker):
            env = {**os.environ, MARKER_ENV: mark.env_value()}
            procs.append(await trio.lowlevel.open_process(sleeper, env=env, start_new_session=True))
        # open_process returns once exec succeeded, so the markers are in place.
        assert len(find_marked(lambda m: m.runtime_id == orphan_marker.runtime_id)) == 2
        with trio.fail_after(LIMIT):
            count = await sweep_dead_runtimes(grace=0.5)
            # Other runtimes on this machine sweep too and may have killed our orphans
            # first, so the count is only bounded below by what we can see.
            assert count >= 0
            for proc in procs[:2]:
                await proc.wait()  # (psutil.wait_procs reaped them: no usable exit status)
        assert procs[2].returncode is None and alive(procs[2].pid)
        assert find_marked(lambda m: m.runtime_id == orphan_marker.runtime_id) == []
    finally:
        with trio.CancelScope(shield=True):
            for proc in procs:
                proc.kill()
                await proc.wait()


async def test_sweep_tells_clock_steps_from_recycled_pids(marker: Marker) -> None:
    sleeper = [sys.executable, "-c", "import signal; signal.pause()"]
    me = psutil.Process()
    # The wall clock moved 100 s since this runtime wrote the marker: still alive.
    stepped = Marker(
        runtime_id=marker.runtime_id, job_id="stepped", runtime_started=me.create_time() - 100.0
    )
    # A process started after the member holds the runtime's pid: the runtime is dead.
    member = await trio.lowlevel.open_process(
        helper("reexec"), stdin=subprocess.PIPE, stdout=subprocess.PIPE
    )
    impostor = await trio.lowlevel.open_process(sleeper)
    survivor = await trio.lowlevel.open_process(
        sleeper, env={**os.environ, MARKER_ENV: stepped.env_value()}
    )
    try:
        assert (
            psutil.Process(impostor.pid).create_time() >= psutil.Process(member.pid).create_time()
        )
        recycled = Marker(
            runtime_id=marker.runtime_id,
            job_id="recycled",
            runtime_pid=impostor.pid,
            runtime_started=psutil.Process(impostor.pid).create_time() + 100.0,
        )
        assert member.stdin is not None and member.stdout is not None
        await member.stdin.send_all(recycled.env_value().encode() + b"\n")
        with trio.fail_after(LIMIT):
            assert await read_pids(member.stdout, 1) == {"ready": member.pid}
            assert not stepped.runtime_alive()  # the naive wall-clock check is fooled
            await sweep_dead_runtimes(grace=0.5)
            await member.wait()
        assert alive(survivor.pid)
        assert alive(impostor.pid)
    finally:
        with trio.CancelScope(shield=True):
            for proc in (member, impostor, survivor):
                proc.kill()
                await proc.wait()
            for stream in (member.stdin, member.stdout):
                if stream is not None:
                    await stream.aclose()
