"""Cancellation, shutdown and slow peers: nothing hangs, nothing is swallowed."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest
from aiohttp import web

import silo
from silo.transport.base import WS_PATH

from multiparty import free_ports


@silo.remote
def slow(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


@silo.remote
def ident(x: int) -> int:
    return x


SEEN_HEADERS: list[dict[str, str]] = []


class DeafPeer:
    """The fake peer's address, and an event set once it has received a frame."""

    def __init__(self, address: str) -> None:
        self.address = address
        self.got_frame = asyncio.Event()


@pytest.fixture
async def deaf_peer() -> AsyncIterator[DeafPeer]:
    """A 'peer' that accepts the websocket and every frame but never acknowledges one.

    It records the headers of every request in ``SEEN_HEADERS``.
    """
    SEEN_HEADERS.clear()

    async def handler(request: web.Request) -> web.WebSocketResponse:
        SEEN_HEADERS.append(dict(request.headers))
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        async for _ in ws:
            peer.got_frame.set()
        return ws

    app = web.Application()
    app.router.add_get(WS_PATH, handler)
    runner = web.AppRunner(app)
    await runner.setup()
    (port,) = free_ports(1)
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    peer = DeafPeer(f"127.0.0.1:{port}")
    yield peer
    await runner.cleanup()


async def test_cancelled_get_leaves_the_object_alone() -> None:
    async def main() -> float:
        obj = slow.party("a").remote(0.3)
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(silo.get(obj), 0.05)
        value: float = await silo.get(obj)
        return value

    assert await silo.simulate(main, ["a"]) == {"a": 0.3}


async def test_error_shutdown_does_not_wait_for_a_busy_worker_thread() -> None:
    (port,) = free_ports(1)
    started = time.monotonic()
    with pytest.raises(RuntimeError, match="stop now"):
        async with silo.init({"a": f"127.0.0.1:{port}"}, "a"):
            slow.party("a").remote(30)
            raise RuntimeError("stop now")
    assert time.monotonic() - started < 3


async def test_cancelling_the_program_is_not_swallowed_and_shuts_down() -> None:
    (port,) = free_ports(1)
    runtimes: list[silo.Runtime] = []
    waiting = asyncio.Event()

    async def program() -> None:
        async with silo.init({"a": f"127.0.0.1:{port}"}, "a") as rt:
            runtimes.append(rt)
            obj = slow.party("a").remote(30)
            waiting.set()
            await silo.get(obj)

    task = asyncio.ensure_future(program())
    await asyncio.wait_for(waiting.wait(), 10)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert runtimes[0].closed
    assert runtimes[0]._core.shutdown_request is not None
    assert runtimes[0]._core.shutdown_request.reason.value == "program error"


async def test_a_peer_that_never_acknowledges_is_a_bounded_sending_failure(
    deaf_peer: DeafPeer,
) -> None:
    (port,) = free_ports(1)
    failures: list[silo.SendingFailure] = []
    failed = asyncio.Event()

    def handler(failure: silo.SendingFailure) -> None:
        failures.append(failure)
        failed.set()

    config = {"cross_silo_comm": {"timeout_in_ms": 500, "http_header": {"X-Org": "alice-bank"}}}
    started = time.monotonic()
    # A peer that took the channel and then says nothing (no answer, no heartbeat) is lost.
    with pytest.raises(silo.PeerUnavailableError, match="deaf was not heard from for 500 ms"):
        async with silo.init(
            {"a": f"127.0.0.1:{port}", "deaf": deaf_peer.address},
            "a",
            config=config,
            sending_failure_handler=handler,
        ):
            ident.party("deaf").remote(ident.party("a").remote(1))
            await asyncio.wait_for(failed.wait(), 5)
    assert time.monotonic() - started < 3
    assert len(failures) == 1
    assert "deaf was not heard from for 500 ms" in str(failures[0])
    assert failures[0].peer == "deaf" and failures[0].object_id == (1, 0)
    assert SEEN_HEADERS and all(h.get("X-Org") == "alice-bank" for h in SEEN_HEADERS)
    assert all(h.get("X-Silo-Job") == "silo" and h.get("X-Silo-Party") == "a" for h in SEEN_HEADERS)


@pytest.mark.parametrize("keep_waiting", [False, True])
async def test_pending_sends_after_an_error_are_dropped_unless_asked(
    deaf_peer: DeafPeer, keep_waiting: bool
) -> None:
    (port,) = free_ports(1)
    config = {
        "cross_silo_comm": {
            "timeout_in_ms": 1500,
            "continue_waiting_for_data_sending_on_error": keep_waiting,
        }
    }
    started = 0.0
    with pytest.raises(KeyError):
        async with silo.init(
            {"a": f"127.0.0.1:{port}", "deaf": deaf_peer.address}, "a", config=config
        ):
            ident.party("deaf").remote(ident.party("a").remote(1))
            await asyncio.wait_for(deaf_peer.got_frame.wait(), 10)
            started = time.monotonic()
            raise KeyError("program failed")
    elapsed = time.monotonic() - started
    if keep_waiting:
        assert elapsed >= 1.0
    else:
        assert elapsed < 1.0


async def test_concurrent_shutdowns_share_one_teardown() -> None:
    (port,) = free_ports(1)
    rt = await silo.init({"a": f"127.0.0.1:{port}"}, "a")
    await asyncio.gather(
        rt.shutdown(), rt.shutdown(), silo.shutdown(), rt._core.lifecycle.fail(ValueError())
    )
    assert (
        rt._core.shutdown_request is not None
        and rt._core.shutdown_request.reason.value == "intended"
    )


async def test_waiting_on_a_peer_that_never_comes_fails_after_the_timeout() -> None:
    ports = free_ports(2)
    addresses = {"a": f"127.0.0.1:{ports[0]}", "ghost": f"127.0.0.1:{ports[1]}"}
    config = {"cross_silo_comm": {"timeout_in_ms": 500}}
    started = time.monotonic()
    async with silo.init(addresses, "a", config=config):
        with pytest.raises(silo.PeerUnavailableError, match="ghost did not answer within 500 ms"):
            await silo.get(ident.party("ghost").remote(1))
        assert 0.4 < time.monotonic() - started < 3
        assert await silo.get(ident.party("a").remote(2)) == 2
