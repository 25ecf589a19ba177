"""An attacker's tools against a live party: raw HTTP requests and websocket frames that lie.

Used by tests/test_fuzz_live.py. Nothing here trusts the party to answer: every read is bounded.
"""

from __future__ import annotations

import asyncio
import base64
import os
import ssl
import struct
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from silo.errors import ProtocolError
from silo.transport.base import DATA_PATH, WS_PATH
from silo.wire import (
    PREFIX,
    Header,
    Kind,
    decode_frame,
    encode_control,
    encode_data,
    encode_header,
)

MIB = 1 << 20
#: What a lying data request announces: 1.5 GiB, under the default messages_max_size_in_bytes.
DECLARED = 1536 * MIB
#: The attacked job's timeout_in_ms, in seconds (tests/programs/fuzz_target.py).
TIMEOUT_S = 3.0
FAR = 10**9


def vm_rss(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for {pid}")


async def settled_rss(pid: int) -> int:
    """The lowest RSS over half a second: what stays, not the job's own transient arrays."""
    samples = []
    for _ in range(10):
        samples.append(vm_rss(pid))
        await asyncio.sleep(0.05)
    return min(samples)


@dataclass
class Job:
    procs: dict[str, subprocess.Popen[str]]
    port: int
    stop: Path
    ssl: ssl.SSLContext | None
    outcomes: dict[str, str] = field(default_factory=dict)

    @property
    def bob(self) -> int:
        return self.procs["bob"].pid

    def note(self, attack: str, outcome: str) -> None:
        self.outcomes.setdefault(attack, outcome)


class RssWatch:
    """Samples a process's RSS every 20 ms in a thread: the peak over the watch."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.02):
            self.peak = max(self.peak, vm_rss(self.pid))

    def __enter__(self) -> RssWatch:
        self.peak = vm_rss(self.pid)
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()


HEADERS = {"X-Silo-Job": "fuzz", "X-Silo-Party": "alice", "X-Silo-Protocol": "1"}


async def connect(j: Job) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", j.port, ssl=j.ssl)


def request(path: str, length: int | None, extra: dict[str, str] | None = None) -> bytes:
    headers = {**HEADERS, **(extra or {})}
    if length is not None:
        headers["Content-Length"] = str(length)
    lines = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    return f"POST {path} HTTP/1.1\r\nHost: bob\r\n{lines}\r\n".encode()


async def post(j: Job, path: str, body: bytes, length: int | None = None, **kw: str) -> bytes:
    """One request (``length`` -1: no Content-Length); returns what came back before the
    connection closed (or 5 s passed)."""
    reader, writer = await connect(j)
    try:
        announced = len(body) if length is None else None if length < 0 else length
        writer.write(request(path, announced, kw or None) + body)
        await writer.drain()
        return await asyncio.wait_for(reader.read(1 << 16), 5)
    except (ConnectionError, asyncio.TimeoutError) as exc:
        return repr(exc).encode()
    finally:
        writer.close()


def status(answer: bytes) -> str:
    return answer.split(b"\r\n", 1)[0].decode(errors="replace")


def lying_head(*lens: int, pickle_len: int = 0) -> bytes:
    return encode_header(Header(Kind.DATA, "fuzz", "alice", 1, FAR, 0, [pickle_len, list(lens)]))


async def big_body(j: Job, send: int, *, then: str) -> str:
    """Announce a 1.5 GiB DATA frame, send ``send`` bytes of it, then stall or close."""
    reader, writer = await connect(j)
    head = lying_head(DECLARED)
    writer.write(request(DATA_PATH, len(head) + DECLARED) + head)
    chunk = b"\1" * MIB
    for _ in range(send // MIB):
        writer.write(chunk)
        await writer.drain()
    if then == "close":
        writer.close()
        return "closed mid-body"
    started = time.monotonic()
    try:
        data = await asyncio.wait_for(reader.read(), TIMEOUT_S + 10)
        outcome = (
            f"bob closed the connection after {time.monotonic() - started:.1f} s {data[:12]!r}"
        )
    except (ConnectionError, ssl.SSLError) as exc:
        outcome = f"bob reset the connection after {time.monotonic() - started:.1f} s ({exc!r})"
    writer.close()
    return outcome


async def ws_open(j: Job) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A websocket handshake by hand, so frames can lie about their length."""
    reader, writer = await connect(j)
    key = base64.b64encode(os.urandom(16)).decode()
    extra = "".join(f"{k}: {v}\r\n" for k, v in HEADERS.items())
    writer.write(
        f"GET {WS_PATH} HTTP/1.1\r\nHost: bob\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n".encode()
    )
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    assert b" 101 " in head, head
    return reader, writer


def ws_frame(payload: bytes, *, opcode: int = 2, declared: int | None = None) -> bytes:
    n = len(payload) if declared is None else declared
    if n < 126:
        head = struct.pack("!BB", 0x80 | opcode, 0x80 | n)
    elif n < 1 << 16:
        head = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, n)
    else:
        head = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, n)
    return head + b"\0\0\0\0" + payload


async def ws_read(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    """One unmasked server frame: (opcode, payload); (-1, b"") when the connection ended."""
    try:
        b1, b2 = await asyncio.wait_for(reader.readexactly(2), 5)
        n = b2 & 0x7F
        if n == 126:
            (n,) = struct.unpack("!H", await reader.readexactly(2))
        elif n == 127:
            (n,) = struct.unpack("!Q", await reader.readexactly(8))
        return b1 & 0x0F, await reader.readexactly(n)
    except (asyncio.IncompleteReadError, ConnectionError, asyncio.TimeoutError):
        return -1, b""


async def ws_exchange(j: Job, *messages: bytes) -> list[str]:
    """Send raw websocket frames; the answers (ACK/REJECT kinds, close codes) in order."""
    reader, writer = await ws_open(j)
    answers: list[str] = []
    try:
        for message in messages:
            writer.write(message)
            await writer.drain()
            opcode, payload = await ws_read(reader)
            if opcode == 2:
                answers.append(Kind(payload[PREFIX.size + 2]).name)
            elif opcode == 8:
                answers.append(f"close {struct.unpack('!H', payload[:2])[0]}")
                break
            else:
                answers.append("connection ended" if opcode < 0 else f"opcode {opcode}")
                break
    finally:
        writer.close()
    return answers


def data(seq: int, index: int, value: object, *, job: str = "fuzz", src: str = "alice") -> bytes:
    return encode_data(job, src, seq, (seq, index), value).join()


def error(seq: int, index: int, *, src: str = "alice") -> bytes:
    extra = ["alice", "ValueError", "forged", ""]
    return encode_control(Kind.ERROR, "fuzz", src, 1, (seq, index), extra).join()


def describe(answer: Any) -> str:
    """A short outcome: the HTTP status (with the silo answer's kind), or websocket answers."""
    if isinstance(answer, bytes):
        line = status(answer) or repr(answer[:60])
        body = answer.partition(b"\r\n\r\n")[2]
        if " 200 " in line and body:
            try:
                line += " " + decode_frame(body)[0].kind.name
            except ProtocolError:
                line += " (malformed answer)"
        return line
    if isinstance(answer, list):
        counts: dict[str, int] = {}
        for a in answer:
            counts[a] = counts.get(a, 0) + 1
        return ", ".join(f"{k} x{v}" if v > 1 else k for k, v in counts.items())
    return str(answer)
