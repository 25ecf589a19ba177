"""Same-run baselines without silo: an aiohttp websocket round trip and a raw TCP socket.

* ``ws_server`` / ``ws_client``: two processes; the client sends a small binary message and
  waits for the echo, ``count`` times. The floor of one silo round, which needs at least one
  message each way.
* ``tcp_receiver`` / ``tcp_sender``: two processes; the sender calls ``sendall`` on a float64
  array through a memoryview, the receiver calls ``recv_into`` on a preallocated buffer and
  answers one byte; small sizes are sent several times on one connection (median taken).
"""

from __future__ import annotations

import asyncio
import socket
import statistics
import time
from typing import Any

from .harness import Settings, Spec, free_ports, peak_rss_mib, run_parties

_CONNECT_S = 20.0
_MESSAGE = b"x" * 64


async def ws_server(port: int, uvloop: bool) -> dict[str, Any]:
    from aiohttp import WSMsgType, web

    done = asyncio.Event()

    async def echo(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(compress=False)
        await ws.prepare(request)
        async for msg in ws:
            if msg.type is WSMsgType.BINARY:
                await ws.send_bytes(msg.data)
        done.set()
        return ws

    app = web.Application()
    app.router.add_get("/ws", echo)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        await asyncio.wait_for(done.wait(), 120)
    finally:
        await runner.cleanup()
    return {}


async def ws_client(port: int, count: int, warmup: int, uvloop: bool) -> dict[str, Any]:
    import aiohttp

    async with aiohttp.ClientSession() as session:
        deadline = time.monotonic() + _CONNECT_S
        while True:
            try:
                ws = await session.ws_connect(f"http://127.0.0.1:{port}/ws", compress=0)
                break
            except aiohttp.ClientConnectionError:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.02)
        for _ in range(warmup):
            await ws.send_bytes(_MESSAGE)
            await ws.receive()
        start = time.perf_counter()
        for _ in range(count):
            await ws.send_bytes(_MESSAGE)
            await ws.receive()
        elapsed = time.perf_counter() - start
        await ws.close()
    return {"rtt_ms": elapsed / count * 1e3}


def ws_rtt(settings: Settings, uvloop: bool, count: int) -> float:
    """One run of the websocket baseline: mean round trip in ms."""
    (port,) = free_ports(1)
    outcomes = run_parties(
        [
            Spec("server", "raw", "ws_server", {"port": port}),
            Spec("client", "raw", "ws_client", {"port": port, "count": count, "warmup": 200}),
        ],
        uvloop=uvloop,
        timeout=60,
        settings=settings,
        tag="ws",
    )
    return float(outcomes[1].result["rtt_ms"])


def tcp_receiver(port: int, nbytes: int, reps: int, uvloop: bool) -> dict[str, Any]:
    buf = bytearray(nbytes)
    view = memoryview(buf)
    with socket.create_server(("127.0.0.1", port)) as server:
        server.settimeout(60)
        conn, _ = server.accept()
        with conn:
            conn.settimeout(120)
            conn.sendall(b"r")
            for _ in range(reps):
                got = 0
                while got < nbytes:
                    n = conn.recv_into(view[got:])
                    if n == 0:
                        raise ConnectionError(f"sender closed after {got} of {nbytes} bytes")
                    got += n
                conn.sendall(b"k")
    return {"peak_rss_mib": peak_rss_mib(), "check": buf[-1]}


def tcp_sender(port: int, nbytes: int, reps: int, uvloop: bool) -> dict[str, Any]:
    import numpy as np

    array = np.full(nbytes // 8, 1.5)
    deadline = time.monotonic() + _CONNECT_S
    while True:
        try:
            conn = socket.create_connection(("127.0.0.1", port), timeout=120)
            break
        except ConnectionRefusedError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.01)
    seconds = []
    with conn:
        if conn.recv(1) != b"r":
            raise ConnectionError("receiver not ready")
        for _ in range(reps):
            start = time.perf_counter()
            conn.sendall(memoryview(array.data).cast("B"))
            if conn.recv(1) != b"k":
                raise ConnectionError("receiver did not acknowledge")
            seconds.append(time.perf_counter() - start)
    return {"seconds": statistics.median(seconds), "peak_rss_mib": peak_rss_mib()}


def tcp_transfer(settings: Settings, nbytes: int, reps: int) -> tuple[float, float]:
    """One run of the socket baseline: (MiB/s, receiver peak RSS MiB)."""
    (port,) = free_ports(1)
    outcomes = run_parties(
        [
            Spec("receiver", "raw", "tcp_receiver", {"port": port, "nbytes": nbytes, "reps": reps}),
            Spec("sender", "raw", "tcp_sender", {"port": port, "nbytes": nbytes, "reps": reps}),
        ],
        uvloop=False,
        timeout=120,
        settings=settings,
        tag="socket",
    )
    seconds = float(outcomes[1].result["seconds"])
    return nbytes / (1 << 20) / seconds, float(outcomes[0].result["peak_rss_mib"])
