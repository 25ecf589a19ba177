"""Bad input from the network gets a clear refusal, and the party keeps working."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

import silo
from silo.transport.base import CONTROL_PATH, DATA_PATH, WS_PATH
from silo.wire import Kind, decode_frame, encode_control, encode_data

from multiparty import addresses_for


@pytest.fixture
async def bob() -> AsyncIterator[tuple[silo.Runtime, str]]:
    addresses = addresses_for(["alice", "bob"])
    config = {"cross_silo_comm": {"messages_max_size_in_bytes": 1 << 20}}
    rt = await silo.init(addresses, "bob", job_name="job", config=config)
    yield rt, f"http://{addresses['bob']}"
    await rt.shutdown()


HEADERS = {"X-Silo-Job": "job", "X-Silo-Party": "alice", "X-Silo-Protocol": "1"}


@pytest.mark.parametrize(
    ("headers", "status", "text"),
    [
        ({}, 400, "speaks silo protocol 1"),
        (
            {**HEADERS, "X-Silo-Job": "other"},
            409,
            "job 'other' was refused by party 'bob', which runs job 'job'",
        ),
        ({**HEADERS, "X-Silo-Party": "mallory"}, 403, "'mallory' is not a peer"),
    ],
)
async def test_requests_are_checked_before_their_body(
    bob: tuple[silo.Runtime, str], headers: dict[str, str], status: int, text: str
) -> None:
    _, url = bob
    async with aiohttp.ClientSession() as session:
        for path in (DATA_PATH, CONTROL_PATH, WS_PATH):
            method = session.get if path == WS_PATH else session.post
            async with method(url + path, headers=headers, data=None) as resp:
                assert resp.status == status
                assert text in await resp.text()


async def test_oversized_body_is_refused_from_its_announced_length(
    bob: tuple[silo.Runtime, str],
) -> None:
    _, url = bob
    host, port = url[7:].rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port))
    head = "".join(f"{k}: {v}\r\n" for k, v in HEADERS.items())
    writer.write(
        f"POST {DATA_PATH} HTTP/1.1\r\nHost: x\r\n{head}"
        f"Content-Length: {10 * 1024**3}\r\n\r\n".encode()
    )
    await writer.drain()
    status_line = await asyncio.wait_for(reader.readline(), 5)
    rest = await asyncio.wait_for(reader.read(4096), 5)
    writer.close()
    assert b"413" in status_line
    assert b"exceeds party 'bob'" in rest and b"(1048576)" in rest


async def _answer(ws: aiohttp.ClientWebSocketResponse[bool]) -> Any:
    """The next answer on ``ws``, past the server's heartbeats."""
    while True:
        header, _ = decode_frame(await ws.receive_bytes(timeout=5))
        if header.kind is not Kind.HEARTBEAT:
            return header


async def _closing(ws: aiohttp.ClientWebSocketResponse[bool]) -> aiohttp.WSMessage:
    while True:
        msg = await ws.receive(timeout=5)
        if msg.type is not aiohttp.WSMsgType.BINARY:
            return msg


async def test_bad_frames_are_refused_and_the_party_keeps_working(
    bob: tuple[silo.Runtime, str],
) -> None:
    rt, url = bob
    async with aiohttp.ClientSession(headers=HEADERS) as session:
        async with session.post(url + CONTROL_PATH, data=b"\x00\x00\x00\x05junk!") as resp:
            assert resp.status == 400 and "undecodable" in await resp.text()
        async with session.post(url + DATA_PATH, data=b"\x00\x00\x00\x01") as resp:
            assert resp.status == 400
        ws = await session.ws_connect(url + WS_PATH)
        await ws.send_bytes(encode_data("other", "alice", 1, (1, 0), 1).join())
        answer = await _answer(ws)
        assert answer.kind is Kind.REJECT and "'other'" in answer.extra and "'job'" in answer.extra
        await ws.send_bytes(encode_data("job", "mallory", 2, (1, 0), 1).join())
        answer = await _answer(ws)
        assert answer.kind is Kind.REJECT and "mallory" in answer.extra
        await ws.send_bytes(b"\xff\xff\xff\xff garbage")
        closing = await _closing(ws)
        assert closing.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
        assert ws.close_code == 1002
        ws = await session.ws_connect(url + WS_PATH)
        await ws.send_bytes(encode_data("job", "alice", 3, (1, 0), {"ok": True}).join())
        answer = await _answer(ws)
        assert answer.kind is Kind.ACK and answer.msg_id == 3
        await ws.close()
    assert rt._core.table.future((1, 0), "alice").result() == {"ok": True}


async def test_error_frames_are_never_pickled_on_the_control_path(
    bob: tuple[silo.Runtime, str],
) -> None:
    rt, url = bob
    frame = encode_control(Kind.DATA, "job", "alice", 1, (2, 0), [0, []])
    async with aiohttp.ClientSession(headers=HEADERS) as session:
        async with session.post(url + CONTROL_PATH, data=frame.join()) as resp:
            assert resp.status == 400 and "do not belong on the control path" in await resp.text()
    assert (2, 0) not in rt._core.table
