"""The listener's connections: bulk streams (large DATA frames) and control streams on long-lived
connections, checked like every other frame; the websocket's batched ACKs at close."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import numpy as np
import pytest
from aiohttp import web

from silo.config import Address, CrossSiloCommConfig
from silo.errors import SiloError
from silo.intake import STORE, Admission
from silo.log import party_logger
from silo.transport.base import BULK_STREAMS, CONTROL_PATH, CONTROL_STREAMS, DATA_PATH, WS_PATH
from silo.transport.outstream import StreamPool, StreamRefused
from silo.transport.requests import Requests
from silo.transport.server import Server
from silo.transport.stream import STREAM_PREFIX, WHOLE_LIMIT
from silo.transport.upload import Broken, Stalled
from silo.wire import ErrorInfo, Kind, ObjectId, decode_frame, encode_control, encode_data

from multiparty import free_ports

JOB = "bulk"
HEADERS = {"X-Silo-Job": JOB, "X-Silo-Party": "alice", "X-Silo-Protocol": "1"}
LIMIT = 8 << 20


class Sink:
    def __init__(self) -> None:
        self.calls: list[tuple[str, ObjectId, Any]] = []

    def admit(self, src: str, object_id: ObjectId, nbytes: int) -> Admission:
        return STORE

    def deliver_data(self, src: str, object_id: ObjectId, value: object, call: str = "") -> None:
        self.calls.append(("data", object_id, value))

    def deliver_error(self, src: str, object_id: ObjectId, info: ErrorInfo, call: str = "") -> None:
        self.calls.append(("error", object_id, info))

    def deliver_refused(self, src: str, object_id: ObjectId, error: SiloError) -> None:
        self.calls.append(("refused", object_id, str(error)))

    def deliver_abort(self, src: str, info: ErrorInfo) -> None:
        self.calls.append(("abort", (0, 0), info))


@pytest.fixture
async def bob() -> AsyncIterator[tuple[Server, Sink, Address]]:
    (port,) = free_ports(1)
    address = Address("127.0.0.1", port)
    sink = Sink()
    server = Server(
        party="bob",
        job=JOB,
        peers={"alice"},
        address=address,
        sink=sink,
        comm=CrossSiloCommConfig(messages_max_size_in_bytes=LIMIT, timeout_in_ms=2000),
        log=party_logger("bob", JOB),
    )
    await server.start()
    yield server, sink, address
    await server.aclose()


def frame(msg_id: int, seq: int, value: object) -> Any:
    return encode_data(JOB, "alice", msg_id, (seq, 0), value, "make")


async def _upgrade(
    address: Address, headers: dict[str, str] = HEADERS
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A raw bulk stream to ``address``, upgraded."""
    reader, writer = await asyncio.open_connection(address.host, address.port)
    head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    writer.write(
        f"GET /silo/v1/bulk HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\n"
        f"Upgrade: silo-bulk\r\n{head}\r\n".encode()
    )
    assert (await reader.readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.1 101")
    return reader, writer


async def test_frames_share_one_connection_and_arrive_whole(
    bob: tuple[Server, Sink, Address],
) -> None:
    server, sink, address = bob
    pool = StreamPool(address, headers=HEADERS, ssl_context=None)
    try:
        arrays = [np.arange(i, i + 200_000, dtype=np.float64) for i in range(3)]
        answers = [await pool.send(frame(i + 1, i + 1, a), 5.0) for i, a in enumerate(arrays)]
        assert [a.kind for a in answers] == [Kind.ACK] * 3
        assert [a.msg_id for a in answers] == [1, 2, 3]
        assert len(server._bulk) == 1
        assert [c[1] for c in sink.calls] == [(1, 0), (2, 0), (3, 0)]
        for (_, _, got), want in zip(sink.calls, arrays, strict=True):
            assert np.array_equal(got, want)
            got[0] = -1.0  # rebuilt over private, writable memory
    finally:
        pool.close()


async def test_a_frame_over_the_limit_is_refused_unread_and_the_stream_goes_on(
    bob: tuple[Server, Sink, Address],
) -> None:
    server, sink, address = bob
    pool = StreamPool(address, headers=HEADERS, ssl_context=None)
    try:
        big = await pool.send(frame(1, 1, np.zeros((LIMIT // 8) + 1)), 5.0)
        assert big.kind is Kind.REJECT and "messages_max_size_in_bytes" in big.extra
        assert sink.calls[0][:2] == ("refused", (1, 0))
        small = await pool.send(frame(2, 2, np.ones(100_000)), 5.0)
        assert small.kind is Kind.ACK and len(server._bulk) == 1
        assert sink.calls[1][:2] == ("data", (2, 0))
    finally:
        pool.close()


async def test_a_malformed_frame_closes_only_its_stream(
    bob: tuple[Server, Sink, Address],
) -> None:
    _, sink, address = bob
    reader, writer = await _upgrade(address)
    size = WHOLE_LIMIT + 100  # read as a DATA frame's body, not whole
    writer.write(STREAM_PREFIX.pack(size, 1, 1, 0) + b"\xff" * size)
    try:
        rest = await asyncio.wait_for(reader.read(), 5.0)
    except ConnectionResetError:  # closed with the frame's unread bytes still queued
        rest = b""
    assert rest == b""
    writer.close()
    assert sink.calls == []
    pool = StreamPool(address, headers=HEADERS, ssl_context=None)
    try:
        assert (await pool.send(frame(2, 2, np.ones(100_000)), 5.0)).kind is Kind.ACK
    finally:
        pool.close()


@pytest.mark.parametrize(
    ("announced", "sent"),
    [(LIMIT * 4, 100_000), (1000, 10)],
    ids=["over-the-limit", "read-whole"],
)
async def test_a_frame_that_stops_arriving_loses_its_stream(
    bob: tuple[Server, Sink, Address], announced: int, sent: int
) -> None:
    """Thrown away (over the limit) or read whole (a small frame), a frame must keep arriving:
    one that stalls for ``timeout_in_ms`` (2 s here) closes its stream; nothing is delivered."""
    _, sink, address = bob
    reader, writer = await _upgrade(address)
    writer.write(STREAM_PREFIX.pack(announced, 1, 1, 0) + b"\0" * sent)
    started = asyncio.get_running_loop().time()
    try:
        rest = await asyncio.wait_for(reader.read(), 10.0)
    except ConnectionResetError:
        rest = b""
    waited = asyncio.get_running_loop().time() - started
    writer.close()
    assert rest == b"" and 1.5 < waited < 8.0, waited
    assert sink.calls == []


async def test_a_peer_cannot_pile_up_bulk_streams(bob: tuple[Server, Sink, Address]) -> None:
    """A listener holds at most twice a sender's pool of streams per peer; beyond, 429, and the
    sender then posts its frame instead; a stream that closes makes room again."""
    server, sink, address = bob
    held = [(await _upgrade(address))[1] for _ in range(2 * BULK_STREAMS)]
    pool = StreamPool(address, headers=HEADERS, ssl_context=None)
    try:
        with pytest.raises(StreamRefused) as refused:
            await pool.send(frame(1, 1, np.ones(100_000)), 5.0)
        assert refused.value.status == 429 and "bulk streams open" in refused.value.reason
        base = f"http://{address.host}:{address.port}"
        async with aiohttp.ClientSession(headers=HEADERS) as session:
            requests = Requests(peer="bob", base=base, session=session, streams=pool)
            answer = await requests.send(
                DATA_PATH, frame(2, 2, np.ones(100_000)), bulk=True, timeout=5.0
            )
        assert answer.kind is Kind.ACK and requests.streams_ok  # posted, bulk kept for later
        held.pop().close()
        deadline = asyncio.get_running_loop().time() + 5.0
        while len(server._bulk) >= 2 * BULK_STREAMS:
            assert asyncio.get_running_loop().time() < deadline, "the closed stream stayed"
            await asyncio.sleep(0.01)
        assert (await pool.send(frame(3, 3, np.ones(100_000)), 5.0)).kind is Kind.ACK
    finally:
        pool.close()
        for writer in held:
            writer.close()
    assert [call[1] for call in sink.calls] == [(2, 0), (3, 0)]


async def test_a_frame_claiming_another_source_on_a_stream_is_refused(
    bob: tuple[Server, Sink, Address],
) -> None:
    """A bulk stream belongs to the party its request named (or its certificate, under TLS):
    a frame on it that claims another source is answered REJECT and reaches nothing, and the
    stream goes on."""
    _, sink, address = bob
    reader, writer = await _upgrade(address)
    try:
        forged = encode_data(JOB, "carol", 1, (1, 0), np.ones(100_000), "make")
        answers = []
        for out in (forged, frame(2, 2, np.ones(100_000))):
            header, body = out.header, out.join()
            writer.write(STREAM_PREFIX.pack(len(body), header.msg_id, header.seq, header.index))
            writer.write(body)
            prefix = await reader.readexactly(4)
            rest = await reader.readexactly(int.from_bytes(prefix, "big"))
            answers.append(decode_frame(prefix + rest)[0])
        assert [a.kind for a in answers] == [Kind.REJECT, Kind.ACK]
        assert "claims to come from 'carol'" in str(answers[0].extra)
    finally:
        writer.close()
    assert [call[1] for call in sink.calls] == [(2, 0)]


async def test_an_upgrade_of_another_job_is_refused_with_its_reason(
    bob: tuple[Server, Sink, Address],
) -> None:
    _, sink, address = bob
    pool = StreamPool(address, headers={**HEADERS, "X-Silo-Job": "other"}, ssl_context=None)
    with pytest.raises(StreamRefused) as refused:
        await pool.send(frame(1, 1, np.ones(100_000)), 5.0)
    assert refused.value.status == 409 and "'other'" in refused.value.reason
    assert sink.calls == []


async def test_a_stream_closed_by_the_listener_fails_the_frame_as_broken(
    bob: tuple[Server, Sink, Address],
) -> None:
    server, _, address = bob
    pool = StreamPool(address, headers=HEADERS, ssl_context=None)
    try:
        assert (await pool.send(frame(1, 1, np.ones(100_000)), 5.0)).kind is Kind.ACK
        await server.aclose()
        with pytest.raises(Broken):
            await pool.send(frame(2, 2, np.ones(100_000)), 5.0)
    finally:
        pool.close()


async def test_a_frame_the_peer_stops_taking_stalls_after_the_timeout() -> None:
    writers: list[asyncio.StreamWriter] = []

    async def deaf(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.append(writer)
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: silo-bulk\r\n\r\n")

    server = await asyncio.start_server(deaf, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    pool = StreamPool(Address("127.0.0.1", port), headers=HEADERS, ssl_context=None)
    loop = asyncio.get_running_loop()
    started = loop.time()
    try:
        with pytest.raises(Stalled):
            await pool.send(frame(1, 1, np.zeros(48 << 17)), 0.5)
        assert 0.5 <= loop.time() - started < 0.5 + 3.0
    finally:
        pool.close()
        for writer in writers:
            writer.close()
        server.close()
        await server.wait_closed()


def error_frame(msg_id: int, seq: int, src: str = "alice") -> Any:
    info = ErrorInfo(src, "ValueError", "boom", None)
    return encode_control(Kind.ERROR, JOB, src, msg_id, (seq, 0), info.to_wire("train"))


async def test_control_frames_share_one_control_stream(
    bob: tuple[Server, Sink, Address],
) -> None:
    """ERROR frames go on a control stream: read whole, dispatched as on the websocket,
    answered in order, on one connection kept open (no HTTP request per frame)."""
    server, sink, address = bob
    base = f"http://{address.host}:{address.port}"
    bulk = StreamPool(address, headers=HEADERS, ssl_context=None)
    control = StreamPool(address, headers=HEADERS, ssl_context=None, size=CONTROL_STREAMS)
    async with aiohttp.ClientSession(headers=HEADERS) as session:
        requests = Requests(peer="bob", base=base, session=session, streams=bulk, control=control)
        try:
            answers = [
                await requests.send(CONTROL_PATH, error_frame(i, i), bulk=False, timeout=5.0)
                for i in (1, 2, 3)
            ]
            assert len(server._bulk) == 1  # before close: one control stream served all three
        finally:
            requests.close()
    assert [(a.kind, a.msg_id) for a in answers] == [(Kind.ACK, 1), (Kind.ACK, 2), (Kind.ACK, 3)]
    assert [(c[0], c[1]) for c in sink.calls] == [
        ("error", (1, 0)),
        ("error", (2, 0)),
        ("error", (3, 0)),
    ]
    assert sink.calls[0][2].type_name == "ValueError" and sink.calls[0][2].message == "boom"


async def test_a_control_frame_on_a_stream_is_checked_like_any_other(
    bob: tuple[Server, Sink, Address],
) -> None:
    """A small frame claiming another source, or one that is not a frame at all, is answered
    REJECT (by the msg_id of its prefix) and reaches nothing; the stream goes on."""
    _, sink, address = bob
    reader, writer = await _upgrade(address)
    try:
        forged = error_frame(1, 1, src="carol").join()
        garbage = b"\xff" * 40
        answers = []
        for msg_id, body in ((1, forged), (2, garbage), (3, error_frame(3, 3).join())):
            writer.write(STREAM_PREFIX.pack(len(body), msg_id, 0, 0) + body)
            prefix = await reader.readexactly(4)
            rest = await reader.readexactly(int.from_bytes(prefix, "big"))
            answers.append(decode_frame(prefix + rest)[0])
        assert [(a.kind, a.msg_id) for a in answers] == [
            (Kind.REJECT, 1),
            (Kind.REJECT, 2),
            (Kind.ACK, 3),
        ]
        assert "claims to come from 'carol'" in str(answers[0].extra)
        assert "malformed frame" in str(answers[1].extra)
    finally:
        writer.close()
    assert [(c[0], c[1]) for c in sink.calls] == [("error", (3, 0))]


async def test_control_frames_go_as_posts_to_a_peer_without_streams() -> None:
    """A peer that answers the upgrade 404 (no streams) still gets control frames: as POSTs."""
    posted: list[bytes] = []

    async def control(request: web.Request) -> web.Response:
        body = await request.read()
        posted.append(body)
        header, _ = decode_frame(body)
        return web.Response(body=encode_control(Kind.ACK, JOB, "bob", header.msg_id).head)

    app = web.Application()
    app.router.add_post(CONTROL_PATH, control)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    (port,) = free_ports(1)
    await web.TCPSite(runner, "127.0.0.1", port).start()
    address = Address("127.0.0.1", port)
    bulk = StreamPool(address, headers=HEADERS, ssl_context=None)
    control_pool = StreamPool(address, headers=HEADERS, ssl_context=None, size=CONTROL_STREAMS)
    try:
        async with aiohttp.ClientSession(headers=HEADERS) as session:
            requests = Requests(
                peer="bob",
                base=f"http://127.0.0.1:{port}",
                session=session,
                streams=bulk,
                control=control_pool,
            )
            for msg_id in (1, 2):
                answer = await requests.send(
                    CONTROL_PATH, error_frame(msg_id, msg_id), bulk=False, timeout=5.0
                )
                assert answer.kind is Kind.ACK and answer.msg_id == msg_id
            assert not requests.streams_ok
            requests.close()
    finally:
        await runner.cleanup()
    assert [decode_frame(body)[0].msg_id for body in posted] == [1, 2]


async def test_acks_owed_are_sent_before_the_websocket_closes(
    bob: tuple[Server, Sink, Address],
) -> None:
    """ACKs wait up to 2 ms to go in a batch; a party that shuts down sooner still sends them
    before closing, since its peer may have no next connection to replay the frame on."""
    server, sink, address = bob
    async with aiohttp.ClientSession(headers=HEADERS) as session:
        ws = await session.ws_connect(f"http://{address.host}:{address.port}{WS_PATH}")
        await ws.send_bytes(frame(7, 1, 42).join())
        deadline = asyncio.get_running_loop().time() + 5.0
        while not sink.calls:
            assert asyncio.get_running_loop().time() < deadline
            await asyncio.sleep(0)
        await server.aclose()
        answers = []
        async for msg in ws:
            if msg.type is aiohttp.WSMsgType.BINARY:
                answers.append(decode_frame(msg.data)[0])
    assert [(a.kind, a.msg_id) for a in answers if a.kind is not Kind.HEARTBEAT] == [(Kind.ACK, 7)]


async def test_warming_opens_a_control_stream_ahead_and_replaces_a_broken_one(
    bob: tuple[Server, Sink, Address],
) -> None:
    """``warm`` opens a stream before any frame (the listener holds it at once); once that
    stream broke while idle, the next ``warm`` drops it and opens another, which then serves."""
    server, sink, address = bob
    pool = StreamPool(address, headers=HEADERS, ssl_context=None, size=CONTROL_STREAMS)
    try:
        await pool.warm(5.0)
        assert len(server._bulk) == 1
        await pool.warm(5.0)  # one is open: nothing more
        assert len(server._bulk) == 1
        (first,) = pool._idle
        first.close()
        deadline = asyncio.get_running_loop().time() + 5.0
        while first.usable or len(server._bulk):
            assert asyncio.get_running_loop().time() < deadline, "the stream stayed open"
            await asyncio.sleep(0.01)
        await pool.warm(5.0)
        (second,) = pool._idle
        assert second is not first and second.usable
        answer = await pool.send(error_frame(1, 1), 5.0)
        assert answer.kind is Kind.ACK and pool._idle == [second]
    finally:
        pool.close()
    assert [(c[0], c[1]) for c in sink.calls] == [("error", (1, 0))]
