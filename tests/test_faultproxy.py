"""The fault-injection proxy itself, with plain asyncio streams against a local echo server."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest

from faultproxy import FaultProxy
from multiparty import free_ports


class Echo:
    """An echo server on the test's loop and the client streams a test opened through a proxy."""

    def __init__(self) -> None:
        self.handlers: set[asyncio.Task[None]] = set()
        self.writers: list[asyncio.StreamWriter] = []

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self.handlers.add(task)
        self.writers.append(writer)
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except OSError:
            pass
        finally:
            writer.transport.abort()
            self.handlers.discard(task)

    async def connect(
        self, fp: FaultProxy, route: str = "echo"
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        host, port = fp.address(route).split(":")
        reader, writer = await asyncio.open_connection(host, int(port))
        self.writers.append(writer)
        return reader, writer

    async def close(self) -> None:
        for writer in self.writers:
            writer.transport.abort()
        for task in list(self.handlers):
            task.cancel()
        await asyncio.gather(*self.handlers, return_exceptions=True)
        await asyncio.sleep(0)


@pytest.fixture
async def echo() -> AsyncIterator[tuple[Echo, FaultProxy]]:
    e = Echo()
    server = await asyncio.start_server(e.serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    fp = FaultProxy({"echo": f"127.0.0.1:{port}", "other": f"127.0.0.1:{port}"})
    try:
        yield e, fp
    finally:
        fp.close()
        server.close()
        await e.close()
        await server.wait_closed()


async def _roundtrip(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, data: bytes, timeout: float = 5.0
) -> bytes:
    writer.write(data)
    await writer.drain()
    return await asyncio.wait_for(reader.readexactly(len(data)), timeout)


async def _nothing_arrives(reader: asyncio.StreamReader, seconds: float) -> None:
    with pytest.raises(asyncio.TimeoutError):
        await asyncio.wait_for(reader.read(1), seconds)


async def test_forwards_both_ways_and_counts(echo: tuple[Echo, FaultProxy]) -> None:
    e, proxy = echo
    reader, writer = await e.connect(proxy)
    payload = bytes(range(256)) * 1000
    assert await _roundtrip(reader, writer, payload) == payload
    stats = proxy.stats("echo")
    assert (stats.to_target, stats.to_client, stats.connections, stats.active) == (
        len(payload),
        len(payload),
        1,
        1,
    )
    assert proxy.stats("other").connections == 0


async def test_pause_holds_bytes_and_resume_delivers_them_in_order(
    echo: tuple[Echo, FaultProxy],
) -> None:
    e, proxy = echo
    reader, writer = await e.connect(proxy)
    proxy.pause()
    writer.write(b"first ")
    writer.write(b"second")
    await writer.drain()
    await _nothing_arrives(reader, 0.3)
    proxy.resume()
    assert await asyncio.wait_for(reader.readexactly(12), 5) == b"first second"
    assert await _roundtrip(reader, writer, b"again") == b"again"


async def test_pause_applies_to_the_named_route_only(echo: tuple[Echo, FaultProxy]) -> None:
    e, proxy = echo
    r1, w1 = await e.connect(proxy, "echo")
    r2, w2 = await e.connect(proxy, "other")
    proxy.pause("echo")
    assert await _roundtrip(r2, w2, b"free") == b"free"
    w1.write(b"held")
    await _nothing_arrives(r1, 0.2)
    proxy.heal()
    assert await asyncio.wait_for(r1.readexactly(4), 5) == b"held"


async def test_blackhole_drops_bytes_and_keeps_connections_open(
    echo: tuple[Echo, FaultProxy],
) -> None:
    e, proxy = echo
    reader, writer = await e.connect(proxy)
    proxy.blackhole()
    writer.write(b"lost")
    await writer.drain()
    await _nothing_arrives(reader, 0.3)
    late_reader, late_writer = await e.connect(proxy)
    late_writer.write(b"lost too")
    await _nothing_arrives(late_reader, 0.1)
    stats = proxy.stats("echo")
    assert stats.dropped == len(b"lost") + len(b"lost too")
    assert stats.active == 2
    proxy.heal()
    assert await _roundtrip(reader, writer, b"after") == b"after"


async def test_reset_closes_connections_with_rst(echo: tuple[Echo, FaultProxy]) -> None:
    e, proxy = echo
    reader, writer = await e.connect(proxy)
    assert await _roundtrip(reader, writer, b"x") == b"x"
    proxy.reset()
    with pytest.raises(ConnectionResetError):
        await asyncio.wait_for(reader.read(1), 5)
    assert proxy.stats("echo").resets == 1
    reader2, writer2 = await e.connect(proxy)
    assert await _roundtrip(reader2, writer2, b"new") == b"new"


async def test_refuse_resets_then_refuses_then_listens_on_the_same_port(
    echo: tuple[Echo, FaultProxy],
) -> None:
    e, proxy = echo
    address = proxy.address("echo")
    reader, writer = await e.connect(proxy)
    started = time.monotonic()
    proxy.refuse(0.5)
    with pytest.raises(ConnectionResetError):
        await asyncio.wait_for(reader.read(1), 5)
    with pytest.raises(ConnectionRefusedError):
        await e.connect(proxy)
    while True:
        try:
            reader, writer = await e.connect(proxy)
            break
        except ConnectionRefusedError:
            assert time.monotonic() - started < 5
            await asyncio.sleep(0.02)
    assert time.monotonic() - started >= 0.45
    assert proxy.address("echo") == address
    assert await _roundtrip(reader, writer, b"back") == b"back"


async def test_heal_ends_a_refusal_early(echo: tuple[Echo, FaultProxy]) -> None:
    e, proxy = echo
    proxy.refuse(60)
    with pytest.raises(ConnectionRefusedError):
        await e.connect(proxy)
    proxy.heal()
    reader, writer = await e.connect(proxy)
    assert await _roundtrip(reader, writer, b"ok") == b"ok"


async def test_delay_adds_latency_each_way(echo: tuple[Echo, FaultProxy]) -> None:
    e, proxy = echo
    reader, writer = await e.connect(proxy)
    proxy.delay(150)
    started = time.monotonic()
    assert await _roundtrip(reader, writer, b"slow") == b"slow"
    assert 0.28 <= time.monotonic() - started < 3.0


async def test_throttle_limits_the_rate(echo: tuple[Echo, FaultProxy]) -> None:
    e, proxy = echo
    reader, writer = await e.connect(proxy)
    proxy.throttle(400_000)
    payload = b"z" * 200_000
    started = time.monotonic()
    assert await _roundtrip(reader, writer, payload, timeout=10) == payload
    assert time.monotonic() - started >= 0.4


async def test_an_unreachable_target_resets_the_client() -> None:
    (port,) = free_ports(1)
    e = Echo()
    with FaultProxy({"gone": f"127.0.0.1:{port}"}) as fp:
        with pytest.raises(ConnectionResetError):
            reader, _ = await e.connect(fp, "gone")
            await asyncio.wait_for(reader.read(1), 5)
        assert fp.stats("gone").resets == 1
    await e.close()


def test_bad_routes_and_use_after_close_are_errors() -> None:
    fp = FaultProxy({"a": "127.0.0.1:1"})
    with pytest.raises(KeyError, match="unknown routes \\['b'\\]"):
        fp.pause("b")
    with pytest.raises(ValueError, match="positive rate"):
        fp.throttle(0)
    fp.close()
    fp.close()
    with pytest.raises(RuntimeError, match="closed"):
        fp.heal()
