"""A party keeps no more of what peers send than it will use, within bounds it documents."""

from __future__ import annotations

import asyncio
import gc
import pickle
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

import silo
from silo.transport.base import CONTROL_PATH, DATA_PATH, WS_PATH
from silo.wire import MAX_BUFFERS, Kind, decode_data, decode_frame, encode_control, encode_data

from multiparty import addresses_for

LIMIT = 1 << 20
HEADERS = {"X-Silo-Job": "job", "X-Silo-Party": "alice", "X-Silo-Protocol": "1"}


@silo.remote
def elsewhere() -> int:
    return 1


@pytest.fixture
async def bob() -> AsyncIterator[tuple[silo.Runtime, str]]:
    """bob, and a real alice beside him, so that both directions of their link are heard from
    while the tests pause (timeout_in_ms is short here); the tests then speak for alice on
    connections of their own."""
    addresses = addresses_for(["alice", "bob"])
    config = {"cross_silo_comm": {"messages_max_size_in_bytes": LIMIT, "timeout_in_ms": 500}}
    alice = await silo.init(
        addresses, "alice", job_name="job", config=config, logging_level="error"
    )
    rt = await silo.init(addresses, "bob", job_name="job", config=config, logging_level="error")
    yield rt, f"http://{addresses['bob']}"
    await rt.shutdown()
    await alice.shutdown()


async def send(ws: aiohttp.ClientWebSocketResponse, frame: bytes) -> Any:
    """Send ``frame``; return bob's answer to it (his heartbeats on this websocket skipped)."""
    await ws.send_bytes(frame)
    while True:
        answer, _ = decode_frame(await ws.receive_bytes(timeout=5))
        if answer.kind is not Kind.HEARTBEAT:
            return answer


async def test_values_ahead_are_bounded_per_peer_and_refused_beyond(
    bob: tuple[silo.Runtime, str],
) -> None:
    rt, url = bob
    async with aiohttp.ClientSession(headers=HEADERS) as session:
        ws = await session.ws_connect(url + WS_PATH)
        chunk = b"x" * (300 << 10)
        answers = [
            await send(ws, encode_data("job", "alice", s, (s, 0), chunk).join())
            for s in (1, 2, 3, 4)
        ]
        await ws.close()
    assert [a.kind for a in answers] == [Kind.ACK, Kind.ACK, Kind.ACK, Kind.REJECT]
    assert (
        "refused object (4, 0) from 'alice': it is ahead of this party's program"
        in answers[3].extra
    )
    assert f"the bound is 10000 objects and {LIMIT} bytes" in answers[3].extra
    assert {(1, 0), (2, 0), (3, 0)} <= set(rt._core.table) and (4, 0) not in rt._core.table
    count, nbytes = rt._core.intake.unclaimed("alice")
    assert count == 3 and 900 << 10 < nbytes <= LIMIT


async def test_values_for_ids_passed_without_a_handle_are_dropped_also_after_release(
    bob: tuple[silo.Runtime, str],
) -> None:
    rt, url = bob
    kept = elsewhere.party("alice").remote()
    elsewhere.party("alice").remote()
    gc.collect()
    assert kept.id == (1, 0)
    async with aiohttp.ClientSession(headers=HEADERS) as session:
        ws = await session.ws_connect(url + WS_PATH)
        for seq, index in [(1, 0), (2, 0), (1, 3)]:
            assert (
                await send(ws, encode_data("job", "alice", 9, (seq, index), 42).join())
            ).kind is Kind.ACK
        assert set(rt._core.table) == {(1, 0)}
        assert await silo.get(kept) == 42
        del kept
        gc.collect()
        await asyncio.sleep(0)
        assert (1, 0) not in rt._core.table
        assert (await send(ws, encode_data("job", "alice", 10, (1, 0), 43).join())).kind is Kind.ACK
        error = encode_control(Kind.ERROR, "job", "alice", 11, (2, 0), ["alice", None, None, None])
        assert (await send(ws, error.join())).kind is Kind.ACK
        await ws.close()
    assert len(rt._core.table) == 0


async def test_an_unclaimed_id_no_call_has_is_forgotten_when_its_call_comes(
    bob: tuple[silo.Runtime, str],
) -> None:
    rt, url = bob
    async with aiohttp.ClientSession(headers=HEADERS) as session:
        ws = await session.ws_connect(url + WS_PATH)
        for index in (0, 5):
            assert (
                await send(ws, encode_data("job", "alice", index + 1, (1, index), 7).join())
            ).kind is Kind.ACK
        await ws.close()
    assert set(rt._core.table) == {(1, 0), (1, 5)}
    obj = elsewhere.party("alice").remote()
    assert set(rt._core.table) == {(1, 0)} and rt._core.intake.unclaimed("alice") == (0, 0)
    assert await silo.get(obj) == 7


async def test_a_control_body_that_stops_is_dropped(bob: tuple[silo.Runtime, str]) -> None:
    _, url = bob
    host, port = url[7:].rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port))
    head = "".join(f"{k}: {v}\r\n" for k, v in HEADERS.items())
    writer.write(
        f"POST {CONTROL_PATH} HTTP/1.1\r\nHost: x\r\n{head}Content-Length: 900\r\n\r\nab".encode()
    )
    answer = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    assert b" 408 " in answer and b"control frame incomplete after 500 ms" in answer


async def test_a_data_body_that_stops_is_dropped_and_its_connection_closed(
    bob: tuple[silo.Runtime, str],
) -> None:
    _, url = bob
    host, port = url[7:].rsplit(":", 1)
    frame = encode_data("job", "alice", 1, (1, 0), b"z" * 500_000).join()
    reader, writer = await asyncio.open_connection(host, int(port))
    head = "".join(f"{k}: {v}\r\n" for k, v in HEADERS.items())
    length = f"Content-Length: {len(frame)}\r\n"
    writer.write(f"POST {DATA_PATH} HTTP/1.1\r\nHost: x\r\n{head}{length}\r\n".encode())
    writer.write(frame[:300_000])
    started = asyncio.get_running_loop().time()
    assert await asyncio.wait_for(reader.read(), 5) == b""
    assert 0.4 < asyncio.get_running_loop().time() - started < 4
    writer.close()


def test_a_value_with_more_buffers_than_a_frame_may_list_travels_in_its_pickle() -> None:
    value = [pickle.PickleBuffer(bytearray(b"ab")) for _ in range(MAX_BUFFERS + 1)]
    frame = encode_data("job", "alice", 1, (1, 0), value)
    assert frame.header.data_layout()[1] == []
    header, body = decode_frame(frame.join())
    out: Any = decode_data(header, body, None)
    assert [bytes(b) for b in out] == [b"ab"] * (MAX_BUFFERS + 1)
    few = encode_data("job", "alice", 1, (1, 0), value[:3])
    assert len(few.header.data_layout()[1]) == 3
