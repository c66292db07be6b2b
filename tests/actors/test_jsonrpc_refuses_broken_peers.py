"""JsonRpcConnection over in-memory streams, with trio's autojump clock."""

from __future__ import annotations

import json
import math
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
import trio
import trio.testing

from actors.acp.jsonrpc import (
    INTERNAL_ERROR,
    METHOD_NOT_FOUND,
    JsonRpcConnection,
    MethodNotFound,
    ProtocolError,
    RemoteError,
)


class RawPeer:
    """The far end of the wire, driven by hand one line at a time."""

    def __init__(self, stream: trio.abc.Stream) -> None:
        self.stream = stream
        self._buffer = bytearray()

    async def send_raw(self, data: bytes) -> None:
        await self.stream.send_all(data)

    async def send(self, message: Any) -> None:
        await self.send_raw(json.dumps(message).encode() + b"\n")

    async def read_line(self) -> bytes:
        while b"\n" not in self._buffer:
            chunk = await self.stream.receive_some(4096)
            assert chunk, "connection closed before a full line arrived"
            self._buffer += chunk
        line, _, rest = bytes(self._buffer).partition(b"\n")
        self._buffer = bytearray(rest)
        return line

    async def read(self) -> dict[str, Any]:
        return json.loads(await self.read_line())


class Runner:
    """Runs a connection in a task and remembers whether run() returned."""

    def __init__(self, conn: JsonRpcConnection) -> None:
        self.conn = conn
        self.returned = trio.Event()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        await self.conn.run(task_status=task_status)
        self.returned.set()


@asynccontextmanager
async def raw_connection(**kwargs: Any) -> AsyncIterator[tuple[JsonRpcConnection, RawPeer, Runner]]:
    ours, theirs = trio.testing.memory_stream_pair()
    conn = JsonRpcConnection(ours, ours, **kwargs)
    runner = Runner(conn)
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            await nursery.start(runner.run)
            yield conn, RawPeer(theirs), runner
            nursery.cancel_scope.cancel()


@asynccontextmanager
async def connected_pair(
    a_kwargs: dict[str, Any], b_kwargs: dict[str, Any]
) -> AsyncIterator[tuple[JsonRpcConnection, JsonRpcConnection]]:
    left, right = trio.testing.memory_stream_pair()
    a = JsonRpcConnection(left, left, name="a", **a_kwargs)
    b = JsonRpcConnection(right, right, name="b", **b_kwargs)
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            await nursery.start(a.run)
            await nursery.start(b.run)
            yield a, b
            nursery.cancel_scope.cancel()


async def test_request_response_between_two_peers(autojump_clock: trio.abc.Clock) -> None:
    async def handler(method: str, params: Any) -> Any:
        return {"method": method, "params": params}

    async with connected_pair({}, {"handler": handler}) as (a, _b):
        assert await a.request("echo", {"x": [1, 2]}) == {"method": "echo", "params": {"x": [1, 2]}}
        assert await a.request("bare") == {"method": "bare", "params": None}


async def test_messages_are_compact_single_lines(autojump_clock: trio.abc.Clock) -> None:
    async with raw_connection() as (conn, peer, _):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(conn.request, "m", {"a": 1, "text": "two\nlines"})
            line = await peer.read_line()
            assert (
                line
                == b'{"jsonrpc":"2.0","id":1,"method":"m","params":{"a":1,"text":"two\\nlines"}}'
            )
            await peer.send({"jsonrpc": "2.0", "id": 1, "result": None})
        await conn.notify("n")
        assert await peer.read_line() == b'{"jsonrpc":"2.0","method":"n"}'


async def test_notifications_arrive_in_order_sync_and_async(autojump_clock: trio.abc.Clock) -> None:
    seen: list[tuple[str, Any]] = []
    done = trio.Event()

    async def on_async(method: str, params: Any) -> None:
        await trio.sleep(1)  # a slow callback must not reorder anything
        seen.append((method, params))
        if method == "last":
            done.set()

    def on_sync(method: str, params: Any) -> None:
        seen.append((method, params))

    async with connected_pair({}, {"on_notification": on_async}) as (a, _b):
        for i in range(5):
            await a.notify("tick", {"i": i})
        await a.notify("last")
        await done.wait()
    assert seen == [("tick", {"i": i}) for i in range(5)] + [("last", None)]

    seen.clear()
    async with raw_connection(on_notification=on_sync) as (conn, peer, _):
        await peer.send({"jsonrpc": "2.0", "method": "one", "params": [1]})
        await peer.send({"jsonrpc": "2.0", "method": "two", "params": {"k": 2}})
        # a request after the notifications is answered only once they were delivered
        async with trio.open_nursery() as nursery:
            nursery.start_soon(conn.request, "sync-point")
            request = await peer.read()
            await peer.send({"jsonrpc": "2.0", "id": request["id"], "result": 0})
    assert seen == [("one", [1]), ("two", {"k": 2})]


async def test_requests_in_both_directions_nested(autojump_clock: trio.abc.Clock) -> None:
    async def a_handler(method: str, params: Any) -> Any:
        assert method == "add"
        return params[0] + params[1]

    async def b_handler(method: str, params: Any) -> Any:
        # while answering a's request, b asks a something back
        total = await b.request("add", [params["n"], 100])
        return {"total": total}

    async with connected_pair({"handler": a_handler}, {"handler": b_handler}) as (a, b):
        assert await a.request("compute", {"n": 5}) == {"total": 105}
        assert await b.request("add", [2, 3]) == 5


async def test_incoming_requests_are_handled_concurrently(autojump_clock: trio.abc.Clock) -> None:
    async def handler(method: str, params: Any) -> Any:
        await trio.sleep(params["seconds"])
        return method

    async with raw_connection(handler=handler) as (_conn, peer, _):
        await peer.send(
            {"jsonrpc": "2.0", "id": "slow", "method": "slow", "params": {"seconds": 10}}
        )
        await peer.send(
            {"jsonrpc": "2.0", "id": "fast", "method": "fast", "params": {"seconds": 1}}
        )
        first = await peer.read()
        second = await peer.read()
        assert (first["id"], first["result"]) == ("fast", "fast")
        assert (second["id"], second["result"]) == ("slow", "slow")


async def test_remote_error_round_trip(autojump_clock: trio.abc.Clock) -> None:
    async def handler(method: str, params: Any) -> Any:
        raise RemoteError(-32000, "nope", {"why": "because"})

    async with connected_pair({}, {"handler": handler}) as (a, _b):
        with pytest.raises(RemoteError) as info:
            await a.request("anything")
        assert (info.value.code, info.value.message, info.value.data) == (
            -32000,
            "nope",
            {"why": "because"},
        )
        assert a.closed_error is None


async def test_method_not_found(autojump_clock: trio.abc.Clock) -> None:
    async def handler(method: str, params: Any) -> Any:
        if method == "known":
            return "ok"
        raise MethodNotFound(method)

    async with connected_pair({}, {"handler": handler}) as (a, _b):
        with pytest.raises(MethodNotFound) as info:
            await a.request("unknown/thing")
        assert info.value.code == METHOD_NOT_FOUND
        assert info.value.method == "unknown/thing"
        assert "unknown/thing" in info.value.message
        assert await a.request("known") == "ok"

    # no handler at all: every request is answered -32601, never silently dropped
    async with raw_connection() as (_conn, peer, _):
        await peer.send({"jsonrpc": "2.0", "id": 7, "method": "fs/whatever", "params": {}})
        reply = await peer.read()
        assert reply["id"] == 7
        assert reply["error"]["code"] == METHOD_NOT_FOUND
        assert "fs/whatever" in reply["error"]["message"]


async def test_handler_crash_becomes_internal_error(autojump_clock: trio.abc.Clock) -> None:
    async def handler(method: str, params: Any) -> Any:
        if method == "bad-result":
            return {1, 2}  # not JSON
        raise ValueError("boom")

    async with connected_pair({}, {"handler": handler}) as (a, _b):
        with pytest.raises(RemoteError) as info:
            await a.request("explode")
        assert info.value.code == INTERNAL_ERROR
        assert "boom" in info.value.message
        with pytest.raises(RemoteError) as info:
            await a.request("bad-result")
        assert info.value.code == INTERNAL_ERROR
        assert "JSON" in info.value.message
        assert a.closed_error is None


async def test_notification_callback_failure_keeps_connection(
    autojump_clock: trio.abc.Clock,
) -> None:
    def on_notification(method: str, params: Any) -> None:
        raise RuntimeError("callback bug")

    async with connected_pair({}, {"on_notification": on_notification, "handler": _echo}) as (
        a,
        b,
    ):
        await a.notify("x")
        assert await a.request("still-alive") == "still-alive"
        assert b.closed_error is None


async def _echo(method: str, params: Any) -> Any:
    return method


async def test_per_request_timeout_and_late_answer(autojump_clock: trio.abc.Clock) -> None:
    async with raw_connection(request_timeout=30) as (conn, peer, _):
        start = trio.current_time()
        with pytest.raises(trio.TooSlowError, match=r"did not answer 'ponder' \(request id 1\)"):
            await conn.request("ponder", timeout=5)
        assert trio.current_time() - start == pytest.approx(5)
        assert (await peer.read())["method"] == "ponder"

        start = trio.current_time()
        with pytest.raises(trio.TooSlowError, match="within 30s"):
            await conn.request("default-timeout")
        assert trio.current_time() - start == pytest.approx(30)
        await peer.read()

        # the late answers to abandoned requests are ignored, the connection lives on
        await peer.send({"jsonrpc": "2.0", "id": 1, "result": "too late"})
        await peer.send({"jsonrpc": "2.0", "id": 2, "error": {"code": 1, "message": "late"}})
        async with trio.open_nursery() as nursery:
            results: list[Any] = []

            async def ask() -> None:
                results.append(await conn.request("quick", timeout=math.inf))

            nursery.start_soon(ask)
            request = await peer.read()
            assert request["id"] == 3
            await peer.send({"jsonrpc": "2.0", "id": 3, "result": "fine"})
        assert results == ["fine"]
        assert conn.closed_error is None


async def test_cancelled_request_answer_is_ignored(autojump_clock: trio.abc.Clock) -> None:
    async with raw_connection() as (conn, peer, _):
        with trio.move_on_after(1):
            await conn.request("abandon-me")
        assert (await peer.read())["id"] == 1
        await peer.send({"jsonrpc": "2.0", "id": 1, "result": "late"})
        async with trio.open_nursery() as nursery:
            nursery.start_soon(conn.request, "next")
            assert (await peer.read())["id"] == 2
            await peer.send({"jsonrpc": "2.0", "id": 2, "result": "ok"})
        assert conn.closed_error is None


async def _fail_pending(
    runner: Runner, conn: JsonRpcConnection, trigger: Any
) -> tuple[ProtocolError, ProtocolError]:
    """Start a request, run ``trigger``; return the request's error and a later call's."""
    errors: list[ProtocolError] = []

    async def ask() -> None:
        with pytest.raises(ProtocolError) as info:
            await conn.request("session/prompt", {"p": 1})
        errors.append(info.value)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(ask)
        await trio.testing.wait_all_tasks_blocked()  # the request is out, waiting for its answer
        await trigger()
    await runner.returned.wait()  # run() returned instead of raising or hanging
    with pytest.raises(ProtocolError) as later:
        await conn.request("anything")
    with pytest.raises(ProtocolError):
        await conn.notify("anything")
    assert conn.closed_error is not None
    assert str(later.value) == str(conn.closed_error) == str(errors[0])
    return errors[0], later.value


async def test_malformed_line_fails_everything(autojump_clock: trio.abc.Clock) -> None:
    async with raw_connection(name="agent") as (conn, peer, runner):
        await peer.send({"jsonrpc": "2.0", "method": "fine"})

        async def trigger() -> None:
            await peer.send_raw(b"garbage that goes on for quite a while, longer than a preview\n")

        error, _ = await _fail_pending(runner, conn, trigger)
    message = str(error)
    assert message.startswith("agent sent a line that is not JSON (line 2: 'garbage that goes")
    assert "...'" in message
    assert "Expecting value" in message


@pytest.mark.parametrize("with_newline", [True, False])
async def test_oversized_line(autojump_clock: trio.abc.Clock, with_newline: bool) -> None:
    async with raw_connection(max_line_bytes=100) as (conn, peer, runner):

        async def trigger() -> None:
            payload = json.dumps({"jsonrpc": "2.0", "method": "x", "params": "y" * 300}).encode()
            await peer.send_raw(payload + (b"\n" if with_newline else b""))

        error, _ = await _fail_pending(runner, conn, trigger)
    assert "longer than the 100-byte limit (line 1)" in str(error)


async def test_line_at_the_limit_is_accepted(autojump_clock: trio.abc.Clock) -> None:
    seen: list[Any] = []
    line = json.dumps({"jsonrpc": "2.0", "method": "x", "params": ["y" * 50]}).encode()
    async with raw_connection(
        max_line_bytes=len(line), on_notification=lambda m, p: seen.append(p)
    ) as (
        conn,
        peer,
        _,
    ):
        # split over several writes, with CRLF and a blank line for good measure
        await peer.send_raw(line[:10])
        await peer.send_raw(line[10:] + b"\r\n\n")
        async with trio.open_nursery() as nursery:
            nursery.start_soon(conn.request, "sync")
            await peer.read()
            await peer.send({"jsonrpc": "2.0", "id": 1, "result": None})
        assert seen == [["y" * 50]]
        assert conn.closed_error is None


async def test_unknown_response_id(autojump_clock: trio.abc.Clock) -> None:
    async with raw_connection() as (conn, peer, runner):

        async def trigger() -> None:
            await peer.send({"jsonrpc": "2.0", "id": 99, "result": 1})

        error, _ = await _fail_pending(runner, conn, trigger)
    assert "response to unknown request id 99" in str(error)


async def test_eof_mid_request(autojump_clock: trio.abc.Clock) -> None:
    async with raw_connection(name="agent") as (conn, peer, runner):

        async def trigger() -> None:
            await peer.stream.send_stream.aclose()

        error, _ = await _fail_pending(runner, conn, trigger)
    assert str(error) == (
        "agent closed its output (EOF) while 1 request(s) were waiting for an answer "
        "('session/prompt')"
    )


async def test_eof_mid_line(autojump_clock: trio.abc.Clock) -> None:
    async with raw_connection(name="agent") as (conn, peer, runner):

        async def trigger() -> None:
            await peer.send_raw(b'{"jsonrpc": "2.0", "meth')
            await peer.stream.send_stream.aclose()

        error, _ = await _fail_pending(runner, conn, trigger)
    assert "agent closed its output (EOF) in the middle of line 1" in str(error)


@pytest.mark.parametrize(
    ("message", "complaint"),
    [
        ([{"jsonrpc": "2.0", "method": "x"}], "batch messages are not supported"),
        (42, "expected a JSON object, got int"),
        ({"method": "x"}, '"jsonrpc" must be "2.0", got None'),
        ({"jsonrpc": "1.0", "method": "x"}, '"jsonrpc" must be "2.0"'),
        ({"jsonrpc": "2.0"}, 'neither "method" nor "id"'),
        ({"jsonrpc": "2.0", "method": 5}, '"method" must be a string'),
        ({"jsonrpc": "2.0", "method": "x", "params": 3}, '"params" must be an object or an array'),
        ({"jsonrpc": "2.0", "id": True, "method": "x"}, 'request "id" must be a string or an'),
        ({"jsonrpc": "2.0", "id": 1}, 'exactly one of "result" and "error"'),
        (
            {"jsonrpc": "2.0", "id": 1, "result": 1, "error": {"code": 1, "message": "m"}},
            'exactly one of "result" and "error"',
        ),
        ({"jsonrpc": "2.0", "id": 1, "error": "bad"}, '"error" must be an object'),
        ({"jsonrpc": "2.0", "id": 1, "error": {"message": "m"}}, '"error.code" must be an integer'),
        ({"jsonrpc": "2.0", "id": 1, "error": {"code": 1}}, '"error.message" must be a string'),
        ({"jsonrpc": "2.0", "id": [1], "result": 1}, 'response "id" must be a string or an'),
        ({"jsonrpc": "2.0", "id": None, "result": 1}, 'response "id" must not be null'),
        (
            {"jsonrpc": "2.0", "id": None, "error": {"code": -32700, "message": "Parse error"}},
            "reported an error not tied to a request (line 1): Parse error",
        ),
    ],
)
async def test_bad_jsonrpc_shape(
    autojump_clock: trio.abc.Clock, message: Any, complaint: str
) -> None:
    async with raw_connection(name="agent") as (conn, peer, runner):

        async def trigger() -> None:
            await peer.send(message)

        error, _ = await _fail_pending(runner, conn, trigger)
    assert complaint in str(error)
    assert "line 1" in str(error)


async def test_writes_are_serialised(autojump_clock: trio.abc.Clock) -> None:
    # lockstep streams raise BusyResourceError on concurrent send_all: a single writer is needed
    ours, theirs = trio.testing.lockstep_stream_pair()
    conn = JsonRpcConnection(ours, ours)
    peer = RawPeer(theirs)
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            await nursery.start(conn.run)
            async with trio.open_nursery() as senders:
                for i in range(20):
                    senders.start_soon(conn.notify, "n", {"i": i, "pad": "x" * 5000})
                received = [await peer.read() for _ in range(20)]
            assert sorted(m["params"]["i"] for m in received) == list(range(20))
            nursery.cancel_scope.cancel()


async def test_cancelling_run_fails_pending_requests(autojump_clock: trio.abc.Clock) -> None:
    ours, _theirs = trio.testing.memory_stream_pair()
    conn = JsonRpcConnection(ours, ours, name="agent")
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            run_scope = trio.CancelScope()

            async def run_until_cancelled(
                *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
            ) -> None:
                with run_scope:
                    await conn.run(task_status=task_status)

            await nursery.start(run_until_cancelled)

            async def ask() -> None:
                with pytest.raises(ProtocolError, match="connection to agent was closed"):
                    await conn.request("hang?")

            nursery.start_soon(ask)
            await trio.testing.wait_all_tasks_blocked()  # the request is pending
            run_scope.cancel()
    assert conn.closed_error is not None


async def test_run_twice_is_refused(autojump_clock: trio.abc.Clock) -> None:
    async with raw_connection() as (conn, _peer, _):
        with pytest.raises(RuntimeError, match="only be called once"):
            await conn.run()
