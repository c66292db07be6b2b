"""AcpClient against real agent subprocesses: the scripted fake agent and an SDK agent."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import psutil
import pytest
import trio
import trio.lowlevel

from actors.acp import AcpClient, PermissionPolicy
from actors.acp.jsonrpc import ProtocolError

ROOT = Path(__file__).resolve().parents[2]
FAKE_AGENT = [sys.executable, "-m", "actors.fake_agent"]
SDK_AGENT = [sys.executable, str(ROOT / "tests" / "sdk_agent.py")]
# A bound against hangs only; every test finishes far sooner.
HANG_BOUND = 30


class Updates:
    """An on_update callback that records every update it is given."""

    def __init__(self) -> None:
        self.updates: list[dict[str, Any]] = []

    def __call__(self, update: dict[str, Any]) -> None:
        self.updates.append(update)

    def kinds(self) -> list[str]:
        return [update["sessionUpdate"] for update in self.updates]

    def text(self) -> str:
        return "".join(
            update["content"]["text"]
            for update in self.updates
            if update["sessionUpdate"] == "agent_message_chunk"
        )

    def text_without_ticks(self) -> str:
        """The text, minus stray ``tick`` chunks a just-cancelled slow turn may still send."""
        return "".join(
            update["content"]["text"]
            for update in self.updates
            if update["sessionUpdate"] == "agent_message_chunk"
            and not update["content"]["text"].startswith("tick ")
        )


@asynccontextmanager
async def agent(
    command: list[str],
    workspace: Path,
    *,
    env: dict[str, str] | None = None,
    **client_options: Any,
) -> AsyncIterator[tuple[AcpClient, trio.Process]]:
    """Spawn an agent in its own session, run an AcpClient on its stdio; kill it after."""
    await trio.Path(workspace).mkdir(exist_ok=True)
    with trio.fail_after(HANG_BOUND):
        process = await trio.lowlevel.open_process(
            command,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            start_new_session=True,
            cwd=ROOT,
            env={**os.environ, **(env or {})},
        )
        try:
            assert process.stdin is not None and process.stdout is not None
            client = AcpClient(process.stdin, process.stdout, workspace=workspace, **client_options)
            async with trio.open_nursery() as nursery:
                await nursery.start(client.run)
                yield client, process
                nursery.cancel_scope.cancel()
        finally:
            with trio.CancelScope(shield=True):
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                await process.wait()
                await process.stdin.aclose()  # type: ignore[union-attr]
                await process.stdout.aclose()  # type: ignore[union-attr]


async def started(client: AcpClient) -> str:
    """Initialize and open one session."""
    await client.initialize()
    return await client.new_session()


def received(log: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in log.read_text().splitlines()]


async def slow_turn_cancelled(client: AcpClient, session: str) -> tuple[list[str], Updates]:
    """Run a ``[[slow]]`` turn, ``session/cancel`` it after three updates; its stop reasons."""
    ticking = trio.Event()
    updates = Updates()

    def on_update(update: dict[str, Any]) -> None:
        updates(update)
        if len(updates.updates) == 3:
            ticking.set()

    stop: list[str] = []

    async def turn() -> None:
        stop.append(await client.prompt(session, "[[slow]]", on_update))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(turn)
        await ticking.wait()
        await client.cancel(session)
    return stop, updates


async def test_initialize_and_sessions(tmp_path: Path) -> None:
    async with agent(FAKE_AGENT, tmp_path / "ws") as (client, _):
        answer = await client.initialize()
        assert answer["protocolVersion"] == 1
        assert "agentCapabilities" in answer
        first = await client.new_session()
        second = await client.new_session(tmp_path)
        assert isinstance(first, str) and isinstance(second, str) and first != second


async def test_prompt_streams_chunks_in_order(tmp_path: Path) -> None:
    text = "The quick brown fox jumps over the lazy dog, twice over."
    async with agent([*FAKE_AGENT, "--chunk-size", "4"], tmp_path / "ws") as (client, _):
        session = await started(client)
        updates = Updates()
        assert await client.prompt(session, text, updates) == "end_turn"
        assert updates.text() == text
        chunks = [u["content"]["text"] for u in updates.updates]
        assert chunks == [text[i : i + 4] for i in range(0, len(text), 4)]

        # an async callback works the same, and a second turn in the same session too
        seen: list[str] = []

        async def on_update(update: dict[str, Any]) -> None:
            await trio.lowlevel.checkpoint()
            seen.append(update["content"]["text"])

        assert await client.prompt(session, "again", on_update) == "end_turn"
        assert "".join(seen) == "again"


async def test_tools_thought_and_concurrent_sessions(tmp_path: Path) -> None:
    async with agent([*FAKE_AGENT, "--tools", "--chunk-size", "3"], tmp_path / "ws") as (
        client,
        _,
    ):
        await client.initialize()
        sessions = [await client.new_session() for _ in range(3)]
        collected = {session: Updates() for session in sessions}
        stops: dict[str, str] = {}

        async def turn(session: str) -> None:
            stops[session] = await client.prompt(
                session, f"hello from {session}", collected[session]
            )

        async with trio.open_nursery() as nursery:
            for session in sessions:
                nursery.start_soon(turn, session)
        for session in sessions:
            assert stops[session] == "end_turn"
            updates = collected[session]
            assert updates.kinds()[:3] == ["agent_thought_chunk", "tool_call", "tool_call_update"]
            assert set(updates.kinds()[3:]) == {"agent_message_chunk"}
            assert updates.text() == f"hello from {session}"


async def test_only_one_turn_per_session(tmp_path: Path) -> None:
    async with agent(FAKE_AGENT, tmp_path / "ws") as (client, _):
        session = await started(client)
        first_update = trio.Event()

        def on_update(update: dict[str, Any]) -> None:
            first_update.set()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(client.prompt, session, "[[slow]]", on_update)
            await first_update.wait()
            with pytest.raises(RuntimeError, match="already running"):
                await client.prompt(session, "second", Updates())
            await client.cancel(session)


async def test_slow_prompt_cancelled_by_session_cancel(tmp_path: Path) -> None:
    log = tmp_path / "agent.log"
    async with agent([*FAKE_AGENT, "--log", str(log)], tmp_path / "ws") as (client, _):
        session = await started(client)
        stop, updates = await slow_turn_cancelled(client, session)
        assert stop == ["cancelled"]
        assert updates.text().startswith("tick 0 tick 1 tick 2 ")
        assert {"sessionId": session} in [
            m.get("params") for m in received(log) if m.get("method") == "session/cancel"
        ]


async def test_cancelled_caller_sends_session_cancel(tmp_path: Path) -> None:
    log = tmp_path / "agent.log"
    async with agent([*FAKE_AGENT, "--log", str(log)], tmp_path / "ws") as (client, _):
        session = await started(client)
        updates = Updates()
        with trio.CancelScope() as scope:

            def on_update(update: dict[str, Any]) -> None:
                updates(update)
                if len(updates.updates) == 3:
                    scope.cancel()

            await client.prompt(session, "[[slow]]", on_update)
        assert scope.cancelled_caught
        # the connection survives the abandoned turn (its late answer is ignored) ...
        after = Updates()
        assert await client.prompt(session, "still here", after) == "end_turn"
        assert after.text_without_ticks() == "still here"
        assert client.closed_error is None
        # ... and the agent was told to stop before the next prompt was sent
        methods = [m.get("method") for m in received(log)]
        assert methods.count("session/prompt") == 2
        assert methods.index("session/cancel") < len(methods) - 1 - methods[::-1].index(
            "session/prompt"
        )


async def test_on_update_error_propagates_and_cancels(tmp_path: Path) -> None:
    log = tmp_path / "agent.log"
    async with agent([*FAKE_AGENT, "--log", str(log)], tmp_path / "ws") as (client, _):
        session = await started(client)

        def on_update(update: dict[str, Any]) -> None:
            raise ValueError("consumer broke")

        with pytest.raises(ValueError, match="consumer broke"):
            await client.prompt(session, "[[slow]]", on_update)
        assert await client.prompt(session, "ok", Updates()) == "end_turn"
        assert "session/cancel" in [m.get("method") for m in received(log)]


@pytest.mark.parametrize(
    ("directive", "options", "complaint", "delivered"),
    [
        (
            "[[crash]]",
            {},
            "agent closed its output (EOF) while 1 request(s) were waiting for an answer "
            "('session/prompt')",
            "about to crash",
        ),
        ("[[eof]]", {}, "agent closed its output (EOF)", "closing stdout"),
        (
            "[[garbage]]",
            {},
            "agent sent a line that is not JSON (line 4: 'this line is not JSON at all'): "
            "Expecting value",
            "here comes garbage",
        ),
        ("[[oversized]]", {"max_line_bytes": 65536}, "longer than the 65536-byte limit", ""),
    ],
)
async def test_broken_agent_gives_protocol_error(
    tmp_path: Path, directive: str, options: dict[str, Any], complaint: str, delivered: str
) -> None:
    command = [*FAKE_AGENT, "--oversized-bytes", "200000"]
    async with agent(command, tmp_path / "ws", **options) as (client, process):
        session = await started(client)
        updates = Updates()
        with pytest.raises(ProtocolError) as info:
            await client.prompt(session, directive, updates)
        assert complaint in str(info.value)
        # what arrived before the failure was delivered
        assert updates.text() == delivered
        assert client.closed_error is not None
        with pytest.raises(ProtocolError):
            await client.new_session()
        if directive == "[[crash]]":
            assert await process.wait() == 3


@pytest.mark.parametrize(
    ("policy", "chosen"),
    [
        (PermissionPolicy(), "permission: selected reject-once"),
        (PermissionPolicy("allow"), "permission: selected allow-once"),
        (PermissionPolicy("allow_always"), "permission: selected allow-always"),
    ],
)
async def test_permission_policy(tmp_path: Path, policy: PermissionPolicy, chosen: str) -> None:
    async with agent(FAKE_AGENT, tmp_path / "ws", permissions=policy) as (client, _):
        session = await started(client)
        updates = Updates()
        assert await client.prompt(session, "[[permission]]", updates) == "end_turn"
        assert updates.text() == chosen


def test_permission_policy_fallbacks() -> None:
    only_always = [{"optionId": "a", "name": "Always", "kind": "allow_always"}]
    assert PermissionPolicy("allow").choose(only_always) == {"outcome": "cancelled"}
    assert PermissionPolicy("allow_always").choose(only_always) == {
        "outcome": "selected",
        "optionId": "a",
    }
    with_reject = [*only_always, {"optionId": "r", "name": "No", "kind": "reject_always"}]
    assert PermissionPolicy("allow").choose(with_reject)["optionId"] == "r"
    assert PermissionPolicy().choose([]) == {"outcome": "cancelled"}
    assert PermissionPolicy().choose("not a list") == {"outcome": "cancelled"}
    with pytest.raises(ValueError):
        PermissionPolicy("yolo")  # type: ignore[arg-type]


@pytest.fixture
def filesystem(tmp_path: Path) -> tuple[Path, Path]:
    workspace = tmp_path / "ws"
    outside = tmp_path / "outside"
    workspace.mkdir()
    outside.mkdir()
    (workspace / "notes.txt").write_text("one\ntwo\nthree\nfour\n")
    (outside / "secret.txt").write_text("top secret\n")
    (workspace / "link-out").symlink_to(outside / "secret.txt")
    (workspace / "dir-out").symlink_to(outside)
    (workspace / "link-in").symlink_to(workspace / "notes.txt")
    return workspace, outside


async def test_fs_reads_confined_to_workspace(filesystem: tuple[Path, Path]) -> None:
    workspace, outside = filesystem
    async with agent(FAKE_AGENT, workspace) as (client, _):
        session = await started(client)

        async def report(directive: str) -> str:
            updates = Updates()
            assert await client.prompt(session, directive, updates) == "end_turn"
            return updates.text()

        assert await report(f"[[fs-read:{workspace / 'notes.txt'}]]") == (
            "fs read ok: one\ntwo\nthree\nfour\n"
        )
        assert await report(f"[[fs-read:{workspace / 'notes.txt'}:2:2]]") == (
            "fs read ok: two\nthree\n"
        )
        assert await report(f"[[fs-read:{workspace / 'link-in'}]]") == (
            "fs read ok: one\ntwo\nthree\nfour\n"
        )
        assert await report(f"[[fs-read:{workspace / 'missing.txt'}]]") == (
            f"fs error -32002: file not found: '{workspace / 'missing.txt'}'"
        )
        for escape in [
            "[[fs-escape]]",  # ../../etc/passwd
            f"[[fs-read:{outside / 'secret.txt'}]]",
            f"[[fs-read:{workspace / '..' / 'outside' / 'secret.txt'}]]",
            f"[[fs-read:{workspace / 'link-out'}]]",
            f"[[fs-read:{workspace / 'dir-out' / 'secret.txt'}]]",
        ]:
            text = await report(escape)
            assert text.startswith("fs error -32602: refused: "), (escape, text)
            assert f"is outside the workspace '{workspace}'" in text


async def test_fs_writes_confined_to_workspace(filesystem: tuple[Path, Path]) -> None:
    workspace, outside = filesystem
    async with agent([*FAKE_AGENT, "--write-content", "hello file\n"], workspace) as (client, _):
        session = await started(client)

        async def report(directive: str) -> str:
            updates = Updates()
            assert await client.prompt(session, directive, updates) == "end_turn"
            return updates.text()

        target = workspace / "sub" / "out.txt"
        assert await report(f"[[fs-write:{target}]]") == f"fs write ok: {target}"
        assert target.read_text() == "hello file\n"

        for escape in [
            outside / "new.txt",
            workspace / ".." / "outside" / "new.txt",
            workspace / "dir-out" / "new.txt",
            workspace / "link-out",
        ]:
            text = await report(f"[[fs-write:{escape}]]")
            assert text.startswith("fs error -32602: refused: "), (escape, text)
            assert "outside the workspace" in text
        assert sorted(p.name for p in outside.iterdir()) == ["secret.txt"]
        assert (outside / "secret.txt").read_text() == "top secret\n"


async def test_unknown_agent_request_gets_method_not_found(tmp_path: Path) -> None:
    async with agent(FAKE_AGENT, tmp_path / "ws") as (client, _):
        session = await started(client)
        updates = Updates()
        assert await client.prompt(session, "[[unknown-method]]", updates) == "end_turn"
        assert updates.text().startswith("error -32601: ")
        assert "corral/no_such_method" in updates.text()


async def test_sdk_agent_interop(tmp_path: Path) -> None:
    async with agent(SDK_AGENT, tmp_path / "ws") as (client, _):
        answer = await client.initialize()
        assert answer["protocolVersion"] == 1
        session = await client.new_session()

        text = "interoperability with the official SDK"
        updates = Updates()
        assert await client.prompt(session, text, updates) == "end_turn"
        assert [u["content"]["text"] for u in updates.updates] == [
            text[i : i + 5] for i in range(0, len(text), 5)
        ]

        stop, slow = await slow_turn_cancelled(client, session)
        assert stop == ["cancelled"]
        assert slow.text().startswith("tick 0 tick 1 tick 2 ")

        # a caller-side cancellation also leaves the SDK agent usable
        with trio.CancelScope() as scope:

            def cancel_soon(update: dict[str, Any]) -> None:
                scope.cancel()

            await client.prompt(session, "[[slow]]", cancel_soon)
        assert scope.cancelled_caught
        after = Updates()
        assert await client.prompt(session, "done", after) == "end_turn"
        assert after.text_without_ticks() == "done"


def _sig_ignored(pid: int, signum: int) -> bool:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("SigIgn:"):
            return bool(int(line.split()[1], 16) & (1 << (signum - 1)))
    raise AssertionError("no SigIgn line")


async def test_fake_agent_process_shapes(tmp_path: Path) -> None:
    marker = f"corral-test-{uuid.uuid4()}"
    command = [
        *FAKE_AGENT,
        "--wrap",
        "2",
        "--ignore-sigterm",
        "--grandchild",
        "--grandchild-ignore-term",
        "--setsid-child",
        "--child-sleep",
        "60",
    ]
    spawned: list[psutil.Process] = []
    try:
        async with agent(command, tmp_path / "ws", env={"CORRAL_TEST_MARKER": marker}) as (
            client,
            process,
        ):
            session = await started(client)  # answered only once the children are set up
            leader = psutil.Process(process.pid)
            spawned = leader.children(recursive=True)
            wrapper = leader.children()
            assert len(wrapper) == 1
            agent_process = wrapper[0].children()
            assert len(agent_process) == 1
            helpers = agent_process[0].children()
            assert len(helpers) == 3
            assert len(spawned) == 5  # 2 more generations + 3 helpers
            for proc in [leader, *spawned]:
                assert proc.environ().get("CORRAL_TEST_MARKER") == marker
            for proc in [leader, wrapper[0], agent_process[0]]:
                assert _sig_ignored(proc.pid, signal.SIGTERM)
            escapers = [p for p in helpers if os.getsid(p.pid) == p.pid]
            assert len(escapers) == 1
            ignoring = [p for p in helpers if _sig_ignored(p.pid, signal.SIGTERM)]
            # the grandchild-ignore-term child, plus the ones inheriting SIG_IGN from the agent
            assert ignoring

            # SIGTERM to the whole chain is ignored: the agent still answers
            os.killpg(process.pid, signal.SIGTERM)
            updates = Updates()
            assert await client.prompt(session, "alive", updates) == "end_turn"
            assert updates.text() == "alive"
    finally:
        for proc in spawned:
            with contextlib.suppress(psutil.NoSuchProcess):
                proc.kill()


async def test_fake_agent_children_and_default_sigterm(tmp_path: Path) -> None:
    marker = f"corral-test-{uuid.uuid4()}"
    command = [*FAKE_AGENT, "--grandchild", "--grandchild-ignore-term", "--setsid-child"]
    spawned: list[psutil.Process] = []
    try:
        async with agent(command, tmp_path / "ws", env={"CORRAL_TEST_MARKER": marker}) as (
            client,
            process,
        ):
            await client.initialize()
            spawned = psutil.Process(process.pid).children()
            assert len(spawned) == 3
            ignoring = [p for p in spawned if _sig_ignored(p.pid, signal.SIGTERM)]
            assert len(ignoring) == 1
            escapers = [p for p in spawned if os.getsid(p.pid) == p.pid]
            assert len(escapers) == 1
            for proc in spawned:
                assert proc.environ().get("CORRAL_TEST_MARKER") == marker
            assert not _sig_ignored(process.pid, signal.SIGTERM)
    finally:
        for proc in spawned:
            with contextlib.suppress(psutil.NoSuchProcess):
                proc.kill()
