"""A controllable TCP proxy for fault-injection tests.

``FaultProxy({"a->b": "127.0.0.1:9001", ...})`` listens on one free 127.0.0.1 port per named
route and forwards every connection accepted there to that route's target. It runs on its own
event loop in a daemon thread, so tests that block (``subprocess``, ``time.sleep``) or run their
own loop can use it alike. Every control method is thread-safe, takes effect before it returns,
and applies to the named routes, or to every route when none is named:

* ``pause()`` / ``resume()``: stop forwarding both ways; connections stay open. The proxy stops
  reading, so bytes wait in the kernel's buffers (and, for at most one chunk per direction and
  connection, in the proxy); ``resume()`` delivers all of them, in order. Nothing is dropped.
* ``blackhole()``: read and silently drop every byte both ways, including bytes the proxy held
  when it began; connections stay open, new ones are accepted and connected to the target, and
  their bytes are dropped too (a TLS or HTTP handshake never completes).
* ``reset()``: close every current connection with RST (``SO_LINGER`` 0) on both sides.
* ``refuse(seconds)``: reset every current connection and close the listening socket, so new
  connections are refused (ECONNREFUSED); after ``seconds`` it listens again on the same port.
* ``delay(ms)``: each chunk is delivered ``ms`` later than it was read (latency, not a rate cap).
* ``throttle(bytes_per_s)``: each direction of the route carries at most ``bytes_per_s``,
  shared among its connections.
* ``heal()``: back to normal: resume, stop dropping, no delay or throttle, listening again.
* ``close()``: reset every connection, stop listening, stop the loop (idempotent).

When the target cannot be reached, the proxy resets the client's connection (the client sees a
reset, not a refusal). ``stats(route)`` returns that route's counters. Not for production: no
limits, and a paused route holds its buffers indefinitely.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import threading
import time
from collections.abc import Coroutine, Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any, TypeVar

T = TypeVar("T")

CHUNK = 65536
CONTROL_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class RouteStats:
    """Counters of one route since the proxy started."""

    to_target: int = 0  # bytes forwarded client -> target
    to_client: int = 0  # bytes forwarded target -> client
    dropped: int = 0  # bytes read and dropped while blackholed
    connections: int = 0  # connections accepted
    active: int = 0  # connections currently open
    resets: int = 0  # connections the proxy closed with RST (reset, refuse, unreachable target)


def _split(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host or "127.0.0.1", int(port)


def _rst(writer: asyncio.StreamWriter) -> None:
    """Close ``writer``'s connection at once with RST."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


class _Pacer:
    """Shared rate limit of one direction of a route."""

    def __init__(self) -> None:
        self.next_free = 0.0

    async def take(self, n: int, rate: float) -> None:
        start = max(time.monotonic(), self.next_free)
        self.next_free = start + n / rate
        delay = self.next_free - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)


class _Conn:
    def __init__(self, client: asyncio.StreamWriter, upstream: asyncio.StreamWriter) -> None:
        self.client = client
        self.upstream = upstream
        self.tasks: list[asyncio.Task[None]] = []

    def reset(self) -> None:
        for task in self.tasks:
            task.cancel()
        _rst(self.client)
        _rst(self.upstream)


class _Route:
    """One listening port and its connections; every method runs on the proxy's loop.

    Connections are accepted synchronously in the listener's reader callback, each stamped with
    the route's reset epoch: a connection accepted before a reset that it was not yet registered
    for is reset as soon as its handler sees the epoch moved, so no reset misses one.
    """

    def __init__(self, name: str, target: str) -> None:
        self.name = name
        self.target = _split(target)
        self.port = 0
        self.listener: socket.socket | None = None
        self.reopen: asyncio.TimerHandle | None = None
        self.running = asyncio.Event()
        self.running.set()
        self.blackholed = False
        self.delay_s = 0.0
        self.rate: float | None = None
        self.pacers = {True: _Pacer(), False: _Pacer()}
        self.conns: set[_Conn] = set()
        self.handlers: set[asyncio.Task[None]] = set()
        self.epoch = 0
        self.stats = RouteStats()

    def count(self, **deltas: int) -> None:
        self.stats = replace(
            self.stats, **{k: getattr(self.stats, k) + v for k, v in deltas.items()}
        )

    def listen(self) -> None:
        """Listen on ``self.port`` (a free port the first time); raises ``OSError``."""
        self.reopen = None
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(("127.0.0.1", self.port))
            sock.listen(128)
            sock.setblocking(False)
        except OSError:
            sock.close()
            raise
        self.port = sock.getsockname()[1]
        self.listener = sock
        asyncio.get_running_loop().add_reader(sock.fileno(), self.accept)

    def accept(self) -> None:
        listener = self.listener
        while listener is not None:
            try:
                sock, _ = listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return
            sock.setblocking(False)
            self.count(connections=1, active=1)
            task = asyncio.get_running_loop().create_task(self.handle(sock, self.epoch))
            self.handlers.add(task)
            task.add_done_callback(self.handlers.discard)

    def stop_listening(self) -> None:
        if self.reopen is not None:
            self.reopen.cancel()
            self.reopen = None
        if self.listener is not None:
            asyncio.get_running_loop().remove_reader(self.listener.fileno())
            self.listener.close()
            self.listener = None

    def reset_all(self) -> None:
        self.epoch += 1
        for conn in list(self.conns):
            conn.reset()
            self.count(resets=1)
        self.conns.clear()

    async def handle(self, sock: socket.socket, epoch: int) -> None:
        up_writer: asyncio.StreamWriter | None = None
        writer: asyncio.StreamWriter | None = None
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
            if epoch == self.epoch:
                reader, writer = await asyncio.open_connection(sock=sock)
        except OSError:
            pass
        if writer is None or up_writer is None or epoch != self.epoch:
            if writer is not None:
                _rst(writer)
            else:
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                sock.close()
            if up_writer is not None:
                up_writer.transport.abort()
            self.count(active=-1, resets=1)
            return
        conn = _Conn(writer, up_writer)
        self.conns.add(conn)
        conn.tasks = [
            asyncio.create_task(self.pump(reader, up_writer, True)),
            asyncio.create_task(self.pump(up_reader, writer, False)),
        ]
        try:
            await asyncio.gather(*conn.tasks, return_exceptions=True)
        finally:
            if conn in self.conns:
                self.conns.discard(conn)
                for w in (writer, up_writer):
                    w.transport.abort()
            self.count(active=-1)

    async def pump(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, to_target: bool
    ) -> None:
        """Forward one direction until EOF; on EOF, half-close the other side."""
        try:
            while True:
                await self.running.wait()
                size = CHUNK if self.rate is None else max(1024, min(CHUNK, int(self.rate / 50)))
                data = await reader.read(size)
                if not data:
                    with contextlib.suppress(OSError):
                        if writer.can_write_eof():
                            writer.write_eof()
                    return
                due = time.monotonic() + self.delay_s
                await self.running.wait()
                if self.blackholed:
                    self.count(dropped=len(data))
                    continue
                if self.delay_s:
                    await asyncio.sleep(max(0.0, due - time.monotonic()))
                if self.rate is not None:
                    await self.pacers[to_target].take(len(data), self.rate)
                await self.running.wait()
                if self.blackholed:
                    self.count(dropped=len(data))
                    continue
                writer.write(data)
                await writer.drain()
                self.count(**{"to_target" if to_target else "to_client": len(data)})
        except (OSError, asyncio.IncompleteReadError):
            for conn in list(self.conns):
                if writer in (conn.client, conn.upstream):
                    self.conns.discard(conn)
                    conn.reset()


class FaultProxy:
    """TCP proxy with one listening port per named route (see the module docstring).

    Raises ``OSError`` from the constructor when a port cannot be bound. Use as a context manager
    or call ``close()``.
    """

    def __init__(self, targets: Mapping[str, str]) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="faultproxy", daemon=True
        )
        self._thread.start()
        self._closed = False
        self._routes: dict[str, _Route] = {}
        try:
            self._call(self._open(targets))
        except BaseException:
            self._stop_loop()
            raise

    async def _open(self, targets: Mapping[str, str]) -> None:
        for name, target in targets.items():
            route = _Route(name, target)
            route.listen()
            self._routes[name] = route

    def _call(self, coro: Coroutine[Any, Any, T]) -> T:
        if threading.current_thread() is self._thread:
            coro.close()
            raise RuntimeError("FaultProxy control methods cannot be called from its own loop")
        if self._closed:
            coro.close()
            raise RuntimeError("FaultProxy is closed")
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(CONTROL_TIMEOUT_S)

    def _select(self, names: Iterable[str]) -> list[_Route]:
        names = list(names)
        unknown = [n for n in names if n not in self._routes]
        if unknown:
            raise KeyError(f"unknown routes {unknown}; routes are {sorted(self._routes)}")
        return [self._routes[n] for n in names] if names else list(self._routes.values())

    def _each(self, names: Iterable[str], action: str, *args: Any) -> None:
        routes = self._select(names)

        async def apply() -> None:
            for route in routes:
                await getattr(self, "_" + action)(route, *args)

        self._call(apply())

    @property
    def routes(self) -> list[str]:
        return list(self._routes)

    def address(self, route: str) -> str:
        """``"127.0.0.1:PORT"``: where to connect to reach ``route``'s target through the proxy."""
        return f"127.0.0.1:{self._select([route])[0].port}"

    def stats(self, route: str) -> RouteStats:
        """A snapshot of ``route``'s counters."""
        target = self._select([route])[0]

        async def read() -> RouteStats:
            return target.stats

        return self._call(read())

    def pause(self, *routes: str) -> None:
        self._each(routes, "pause")

    def resume(self, *routes: str) -> None:
        self._each(routes, "resume")

    def blackhole(self, *routes: str) -> None:
        self._each(routes, "blackhole")

    def reset(self, *routes: str) -> None:
        self._each(routes, "reset")

    def refuse(self, seconds: float, *routes: str) -> None:
        """Refuse new connections for ``seconds`` (existing ones are reset); returns at once."""
        self._each(routes, "refuse", seconds)

    def delay(self, ms: float, *routes: str) -> None:
        self._each(routes, "delay", ms)

    def throttle(self, bytes_per_s: float, *routes: str) -> None:
        if bytes_per_s <= 0:
            raise ValueError(f"throttle needs a positive rate, got {bytes_per_s}")
        self._each(routes, "throttle", bytes_per_s)

    def heal(self, *routes: str) -> None:
        self._each(routes, "heal")

    async def _pause(self, route: _Route) -> None:
        route.running.clear()

    async def _resume(self, route: _Route) -> None:
        route.running.set()

    async def _blackhole(self, route: _Route) -> None:
        route.blackholed = True

    async def _reset(self, route: _Route) -> None:
        route.reset_all()

    async def _refuse(self, route: _Route, seconds: float) -> None:
        route.stop_listening()
        route.reset_all()
        route.reopen = self._loop.call_later(
            seconds, lambda: self._loop.create_task(self._relisten(route))
        )

    async def _relisten(self, route: _Route) -> None:
        if route.listener is not None:
            return
        for _ in range(50):
            try:
                route.listen()
                return
            except OSError:
                await asyncio.sleep(0.05)
        route.listen()

    async def _delay(self, route: _Route, ms: float) -> None:
        route.delay_s = ms / 1000.0

    async def _throttle(self, route: _Route, bytes_per_s: float) -> None:
        route.rate = float(bytes_per_s)

    async def _heal(self, route: _Route) -> None:
        route.blackholed = False
        route.delay_s = 0.0
        route.rate = None
        route.running.set()
        if route.listener is None:
            route.stop_listening()
            route.listen()

    async def _shutdown(self) -> None:
        for route in self._routes.values():
            route.stop_listening()
            route.reset_all()
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def _stop_loop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(CONTROL_TIMEOUT_S)
        self._loop.close()

    def close(self) -> None:
        """Reset every connection, stop listening and stop the proxy's thread (idempotent)."""
        if self._closed:
            return
        self._call(self._shutdown())
        self._closed = True
        self._stop_loop()

    def __enter__(self) -> FaultProxy:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
