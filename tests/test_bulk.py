"""The large-frame receiver believes announced sizes no further than the bytes that came."""

from __future__ import annotations

import asyncio
import mmap
import time
from typing import Any

import numpy as np
import pytest

from silo.errors import ProtocolError
from silo.transport.bulk import BodyReceiver
from silo.transport.prefault import CHUNK, WINDOW, Prefaulter, PrefaultSlots, can_prefault
from silo.wire import PREFIX, Header, Kind, decode_data, encode_data, encode_header

MIB = 1 << 20


def rss() -> int:
    """This process's resident set, in bytes."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def lying_head(*lens: int, pickle_len: int = 0) -> bytes:
    """The prefix and header of a DATA frame announcing these buffers."""
    return encode_header(Header(Kind.DATA, "job", "alice", 1, 5, 0, [pickle_len, list(lens)]))


class FakeTransport:
    def __init__(self) -> None:
        self.aborted = False

    def abort(self) -> None:
        self.aborted = True


def receiver(length: int, **kwargs: Any) -> BodyReceiver:
    return BodyReceiver(length, asyncio.BaseProtocol(), **kwargs)


def read(rx: BodyReceiver, data: bytes, step: int = 1 << 16) -> None:
    """Deliver ``data`` the way a transport does: ``get_buffer``, copy, ``buffer_updated``."""
    view = memoryview(data)
    while view and not rx.done.done():
        target = rx.get_buffer(-1)
        n = min(len(target), len(view), step)
        target[:n] = view[:n]
        del target
        rx.buffer_updated(n)
        view = view[n:]


async def test_a_body_arrives_whole_in_small_reads() -> None:
    value = {"a": np.arange(300_000, dtype=np.float64), "b": [np.zeros(0), np.ones(10)]}
    frame = encode_data("job", "alice", 1, (3, 0), value)
    data = frame.join()
    rx = receiver(len(data))
    rx.feed(data[:100])
    read(rx, data[100:], step=7919)
    header, parts = rx.done.result()
    assert header.object_id == (3, 0)
    out: Any = decode_data(header, parts, None)
    assert np.array_equal(out["a"], value["a"]) and out["b"][1].sum() == 10


async def test_header_longer_than_the_body_is_refused_before_allocating() -> None:
    rx = receiver(100)
    read(rx, PREFIX.pack(1 << 20))
    with pytest.raises(ProtocolError, match="header announces 1048576 bytes, 96 remain"):
        rx.done.result()


async def test_layout_must_add_up_to_the_body() -> None:
    head = lying_head(1000)
    rx = receiver(len(head) + 10)
    read(rx, head)
    with pytest.raises(ProtocolError, match="announces 1000 body bytes, 10 remain"):
        rx.done.result()
    assert rx.parts == []


async def test_too_many_buffers_are_refused() -> None:
    head = lying_head(*([0] * 70_000))
    rx = receiver(len(head))
    read(rx, head)
    with pytest.raises(ProtocolError, match="at most 65536 buffers"):
        rx.done.result()


async def test_bytes_past_the_announced_length_are_refused() -> None:
    frame = encode_data("job", "alice", 1, (3, 0), b"x" * 10).join()
    rx = receiver(len(frame) - 1)
    read(rx, frame)
    with pytest.raises(ProtocolError):
        rx.done.result()


async def test_parts_are_allocated_only_when_reached() -> None:
    head = lying_head(100 * MIB, 100 * MIB, pickle_len=10)
    rx = receiver(len(head) + 10 + 200 * MIB)
    read(rx, head + b"p" * 10)
    assert [len(p) for p in rx.parts] == [10]
    read(rx, b"\0" * MIB)
    assert [len(p) for p in rx.parts] == [10, 100 * MIB]
    rx.fail(ProtocolError("test over"))
    with pytest.raises(ProtocolError):
        rx.done.result()


@pytest.mark.skipif(not can_prefault(), reason="prefaulting needs Linux madvise")
async def test_a_lying_sender_commits_only_what_it_sent_plus_a_window() -> None:
    declared = 1536 * MIB
    head = lying_head(declared)
    rx = receiver(len(head) + declared, timeout=30)
    before = rss()
    read(rx, head + b"\1" * (8 * MIB), step=MIB)
    await asyncio.sleep(0.3)
    grown = rss() - before
    assert grown < 8 * MIB + WINDOW + CHUNK + 24 * MIB, f"committed {grown / MIB:.0f} MiB"
    rx.fail(ProtocolError("test over"))
    assert all(p.closed for p in rx.parts if isinstance(p, mmap.mmap)) or rx.parts == []


async def test_a_stalled_body_is_dropped_aborted_and_released() -> None:
    head = lying_head(256 * MIB)
    transport = FakeTransport()
    rx = receiver(len(head) + 256 * MIB, timeout=0.2, transport=transport)  # type: ignore[arg-type]
    read(rx, head + b"\1" * (16 * MIB), step=MIB)
    part = rx.parts[1]
    assert isinstance(part, mmap.mmap)
    before = rss()
    started = time.monotonic()
    with pytest.raises(ProtocolError, match=r"stalled: no byte for 200 ms after \d+ of"):
        await asyncio.wait_for(rx.done, 5)
    assert 0.15 < time.monotonic() - started < 3
    assert transport.aborted and rx.parts == []
    del part
    assert rss() < before - 12 * MIB


async def test_a_body_that_keeps_arriving_is_not_timed_out() -> None:
    data = encode_data("job", "alice", 1, (3, 0), np.ones(MIB)).join()
    rx = receiver(len(data), timeout=0.2, transport=FakeTransport())  # type: ignore[arg-type]
    for start in range(0, len(data), len(data) // 8 + 1):
        read(rx, data[start : start + len(data) // 8 + 1])
        await asyncio.sleep(0.08)
    assert rx.done.result()[0].object_id == (3, 0)


@pytest.mark.parametrize("how", ["eof", "lost"])
async def test_a_truncated_body_is_released_at_once(how: str) -> None:
    head = lying_head(64 * MIB)
    rx = receiver(len(head) + 64 * MIB)
    read(rx, head + b"\1" * (32 * MIB), step=MIB)
    part = rx.parts[1]
    before = rss()
    if how == "eof":
        rx.eof_received()
    else:
        rx.connection_lost(None)
    with pytest.raises(ProtocolError, match=r"truncated.* after 3355"):
        rx.done.result()
    assert rx.parts == []
    del part
    assert rss() < before - 24 * MIB


async def test_an_abandoned_body_is_released() -> None:
    head = lying_head(8 * MIB)
    rx = receiver(len(head) + 8 * MIB)
    read(rx, head + b"\1" * MIB)
    part = rx.parts[1]
    rx.abandon()
    assert rx.done.cancelled() and rx.parts == [] and part.closed


@pytest.mark.skipif(not can_prefault(), reason="prefaulting needs Linux madvise")
def test_the_prefaulter_stays_within_its_window_and_follows_the_writes() -> None:
    memory = mmap.mmap(-1, 64 * MIB, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    stopped: list[bool] = []
    pf = Prefaulter(memory, window=8 * MIB, chunk=2 * MIB, on_stop=lambda: stopped.append(True))
    pf.start()
    deadline = time.monotonic() + 5
    while pf.populated < 8 * MIB and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.05)
    assert pf.populated == 8 * MIB
    pf.advance(20 * MIB + 5)
    while pf.populated < 30 * MIB and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.05)
    assert pf.populated == 30 * MIB
    pf.stop()
    pf.stop(wait=True)
    assert stopped == [True]
    memory.close()


async def test_prefault_threads_are_capped_per_listener() -> None:
    slots = PrefaultSlots(2)
    head = lying_head(8 * MIB)
    receivers = [receiver(len(head) + 8 * MIB, slots=slots) for _ in range(3)]
    for rx in receivers:
        read(rx, head + b"\1")
    assert slots.free == (0 if can_prefault() else 2)
    for rx in receivers:
        rx.fail(ProtocolError("test over"))
    assert slots.free == 2
