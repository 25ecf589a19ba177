"""The sending end of bulk streams (:mod:`.stream`): long-lived connections for large frames.

A :class:`StreamPool` keeps the bulk streams open towards one peer. A frame takes an idle stream
(or opens one, up to ``size`` at a time) for its whole exchange: the prefix and the frame are
written slice by slice straight from the frame's buffers (nothing is joined), then the peer's
ACK or REJECT is read; the stream then goes back to the pool for the next frame. No new TCP
connection per frame, no websocket masking, no copy in user space beyond what the socket does
not take at once.

Deadlines are on progress, as for HTTP requests (:mod:`.upload`): ``timeout_s`` bounds each
stretch in which no slice is taken and the wait for the answer; then :class:`Stalled` is raised.
A connection that fails or closes raises :class:`Broken` (a retry on a new stream may cure it); a
peer that refuses the upgrade raises :class:`StreamRefused` with its status and reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
import struct
from collections.abc import Mapping
from typing import TypeVar, cast

try:
    import fcntl
    import termios
except ImportError:  # pragma: no cover - not on POSIX
    fcntl = termios = None  # type: ignore[assignment]

from ..config import Address
from ..errors import ProtocolError
from ..wire import Header, OutFrame, decode_frame, header_length
from .base import BULK_PATH, BULK_STREAMS, BULK_UPGRADE, HEADER_REFUSAL
from .stream import STREAM_PREFIX
from .upload import Broken, Stalled

__all__ = ["StreamPool", "StreamRefused"]

_SLICE = 1 << 20
_T = TypeVar("_T")
#: ``ioctl`` asking a TCP socket how much of what was written the peer has not acknowledged.
_OUTQ: int | None = getattr(termios, "TIOCOUTQ", None)
_MAX_RESPONSE_HEAD = 64 << 10


class StreamRefused(Exception):
    """The peer answered the upgrade with ``status`` (and ``reason``) instead of 101."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(f"HTTP {status}: {reason}")
        self.status = status
        self.reason = reason


class _Stream(asyncio.Protocol):
    """One bulk stream: the upgrade's answer, then one answer frame per frame written."""

    def __init__(self) -> None:
        self._loop = asyncio.get_running_loop()
        self.ready: asyncio.Future[None] = self._loop.create_future()
        self.transport: asyncio.Transport | None = None
        self._head = bytearray()
        self._upgraded = False
        self._buffer = bytearray()
        self._answer: asyncio.Future[Header] | None = None
        self._writable: asyncio.Future[None] | None = None
        self.broken: BaseException | None = None

    # ------------------------------------------------------------------ protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.transport.set_write_buffer_limits(high=_SLICE)

    def data_received(self, data: bytes) -> None:
        if not self._upgraded:
            self._head += data
            end = self._head.find(b"\r\n\r\n")
            if end < 0:
                if len(self._head) > _MAX_RESPONSE_HEAD:
                    self._break(Broken("the upgrade's answer never ended"))
                return
            self._upgrade_answered(bytes(self._head[:end]))
            data = bytes(self._head[end + 4 :])
            self._head = bytearray()
            if not self._upgraded:
                return
        self._buffer += data
        while len(self._buffer) >= 4:
            try:
                end = 4 + header_length(bytes(self._buffer[:4]))
                if len(self._buffer) < end:
                    return
                header, _ = decode_frame(bytes(self._buffer[:end]))
            except ProtocolError as exc:
                self._break(Broken(f"malformed answer on a bulk stream: {exc}"))
                return
            del self._buffer[:end]
            answer = self._answer
            if answer is None or answer.done():
                self._break(Broken("an answer on a bulk stream that asked nothing"))
                return
            answer.set_result(header)

    def _upgrade_answered(self, head: bytes) -> None:
        lines = head.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ", 2)
        status = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0
        if status == 101:
            self._upgraded = True
            if not self.ready.done():
                self.ready.set_result(None)
            return
        reason = parts[2] if len(parts) > 2 else ""
        for line in lines[1:]:
            name, _, value = line.partition(":")
            if name.strip().lower() == HEADER_REFUSAL.lower():
                reason = value.strip()
        self._break(StreamRefused(status, reason))

    def pause_writing(self) -> None:
        if self._writable is None or self._writable.done():
            self._writable = self._loop.create_future()

    def resume_writing(self) -> None:
        if self._writable is not None and not self._writable.done():
            self._writable.set_result(None)

    def connection_lost(self, exc: Exception | None) -> None:
        self._break(Broken(f"the bulk stream closed: {exc!r}" if exc else "the bulk stream closed"))

    def _break(self, exc: BaseException) -> None:
        if self.broken is None:
            self.broken = exc
        for fut in (self.ready, self._answer, self._writable):
            if fut is not None and not fut.done():
                fut.set_exception(exc)
                fut.exception()
        if self.transport is not None:
            self.transport.close()

    # ------------------------------------------------------------------ use

    @property
    def usable(self) -> bool:
        return self.broken is None and self.transport is not None and self._upgraded

    async def exchange(self, frame: OutFrame, timeout_s: float) -> Header:
        """Write ``frame`` and return the peer's answer; see the module for what raises."""
        assert self.transport is not None
        if self.broken is not None:
            raise self.broken
        header = frame.header
        self._answer = self._loop.create_future()
        transport = self.transport
        transport.write(
            STREAM_PREFIX.pack(frame.nbytes, header.msg_id, header.seq, header.index) + frame.head
        )
        try:
            for segment in frame.segments:
                view = memoryview(segment).cast("B")
                for start in range(0, len(view), _SLICE):
                    writable = self._writable
                    if writable is not None and not writable.done():
                        await self._progressing(writable, timeout_s)
                    if self.broken is not None:
                        raise self.broken
                    transport.write(view[start : start + _SLICE])
            return await self._progressing(self._answer, timeout_s)
        finally:
            self._answer = None

    async def _progressing(self, waited: asyncio.Future[_T], timeout_s: float) -> _T:
        """``waited``'s result, as long as bytes keep leaving (this side's buffer or the
        socket's queue shrinks) at least once every ``timeout_s``; else :class:`Stalled`."""
        queued = self._queued()
        while True:
            try:
                return await asyncio.wait_for(asyncio.shield(waited), timeout_s)
            except asyncio.TimeoutError:
                now = self._queued()
                if now >= queued:
                    raise Stalled() from None
                queued = now

    def _queued(self) -> int:
        """Bytes written and not yet taken by the peer: the transport's buffer and the
        socket's send queue (``TIOCOUTQ``, where the platform has it)."""
        transport = self.transport
        if transport is None:
            return 0
        queued = transport.get_write_buffer_size()
        sock = transport.get_extra_info("socket")
        if sock is not None and _OUTQ is not None:
            with contextlib.suppress(OSError, ValueError):
                queued += struct.unpack("i", fcntl.ioctl(sock.fileno(), _OUTQ, b"\0" * 4))[0]
        return queued

    def close(self) -> None:
        """Drop the connection at once, with whatever it still had to write."""
        if self.transport is not None:
            self.transport.abort()


class StreamPool:
    """The bulk streams towards one peer, at most ``size`` at a time. ``close`` is idempotent."""

    def __init__(
        self,
        address: Address,
        *,
        headers: Mapping[str, str],
        ssl_context: ssl.SSLContext | None,
        size: int = BULK_STREAMS,
    ) -> None:
        self._address = address
        self._ssl = ssl_context
        self._idle: list[_Stream] = []
        self._slots = asyncio.Semaphore(size)
        self._open: set[_Stream] = set()
        self._closed = False
        host = f"[{address.host}]" if ":" in address.host else address.host
        lines = [f"GET {BULK_PATH} HTTP/1.1", f"Host: {host}:{address.port}"]
        lines += ["Connection: Upgrade", f"Upgrade: {BULK_UPGRADE}"]
        lines += [
            f"{name}: {value}"
            for name, value in headers.items()
            if not any(c in f"{name}{value}" for c in "\r\n")
        ]
        self._request = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1", "replace")

    async def send(self, frame: OutFrame, timeout_s: float) -> Header:
        """Send ``frame`` on a stream of the pool and return the peer's answer.

        Raises :class:`Broken`, :class:`Stalled` or :class:`StreamRefused` (module doc).
        Cancellation closes the stream it was using.
        """
        async with self._slots:
            stream = self._idle.pop() if self._idle else None
            while stream is not None and not stream.usable:
                self._drop(stream)
                stream = self._idle.pop() if self._idle else None
            if stream is None:
                stream = await self._connect(timeout_s)
            try:
                answer = await stream.exchange(frame, timeout_s)
            except BaseException:
                self._drop(stream)
                raise
            if stream.usable and not self._closed:
                self._idle.append(stream)
            else:
                self._drop(stream)
            return answer

    async def warm(self, timeout_s: float) -> None:
        """Open a stream ahead of the next frame, unless one is open: idle and still usable
        (one that broke while idle, as when the peer restarted, is dropped here), or in use.
        Raises as :meth:`send` does when the stream cannot be opened."""
        for stream in [s for s in self._idle if not s.usable]:
            self._idle.remove(stream)
            self._drop(stream)
        if self._open or self._closed:
            return
        stream = await self._connect(timeout_s)
        if self._closed:
            self._drop(stream)
        else:
            self._idle.append(stream)

    async def _connect(self, timeout_s: float) -> _Stream:
        if self._closed:
            raise Broken("the link is closing")
        loop = asyncio.get_running_loop()
        try:
            _, stream = await asyncio.wait_for(
                loop.create_connection(
                    _Stream,
                    self._address.host,
                    self._address.port,
                    ssl=self._ssl,
                    server_hostname=self._address.host if self._ssl else None,
                ),
                timeout_s,
            )
        except (OSError, asyncio.TimeoutError, ssl.SSLError) as exc:
            raise Broken(f"cannot open a bulk stream: {exc!r}") from exc
        self._open.add(stream)
        try:
            assert stream.transport is not None
            stream.transport.write(self._request)
            await asyncio.wait_for(asyncio.shield(stream.ready), timeout_s)
        except asyncio.TimeoutError:
            self._drop(stream)
            raise Broken("the bulk stream's upgrade was not answered in time") from None
        except BaseException:
            self._drop(stream)
            raise
        return stream

    def _drop(self, stream: _Stream) -> None:
        self._open.discard(stream)
        stream.close()

    def close(self) -> None:
        """Close every stream (a frame being sent fails with :class:`Broken`)."""
        self._closed = True
        self._idle = []
        for stream in list(self._open):
            self._drop(stream)
