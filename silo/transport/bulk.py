"""Receiving a large DATA frame without copying it in user space, and without trusting it.

aiohttp parses the request line and headers as usual. Then, for the body of a large DATA frame,
:func:`receive_body` lends the connection's transport a :class:`BodyReceiver`, an
``asyncio.BufferedProtocol`` whose ``get_buffer`` hands out the very memory each out-of-band
buffer will live in: the kernel copies the bytes straight there (``recv_into``), as a raw socket
would. When the body is in, the transport goes back to aiohttp, which answers and closes the
connection. Bytes aiohttp had already buffered past the headers are taken first.

What the frame announces is believed no further than the bytes that came:

* The header's announced length must fit in what is left of the ``Content-Length`` (which the
  server checked against ``messages_max_size_in_bytes``), and the header is kept as it arrives;
  the DATA layout's pickle and buffer lengths must add up to exactly the rest of the body.
* A part's memory is allocated only when the write position reaches it, as an anonymous mapping
  whose pages are committed as they are written; a helper thread faults pages in at most a
  bounded window ahead of the copy (:mod:`.prefault`).
* A body from which no byte arrives for ``timeout`` seconds is dropped: the connection is aborted
  and every part released. A body cut short (the peer closed) is released at once.
"""

from __future__ import annotations

import asyncio
import mmap
from typing import Any

from ..errors import ProtocolError
from ..wire import PREFIX, Header, Kind, decode_header, header_length
from .prefault import (
    PREFAULT_MIN,
    SMALL,
    Prefaulter,
    PrefaultSlots,
    allocate,
    can_prefault,
    release,
)

__all__ = ["BodyReceiver", "receive_body"]


class BodyReceiver(asyncio.BufferedProtocol):
    """Reads exactly ``length`` body bytes of one DATA frame into per-part memory.

    ``done`` resolves to ``(header, parts)`` (the pickle stream, then one part per out-of-band
    buffer) or fails with :class:`ProtocolError` when the body is malformed, longer than
    announced, cut short, or stalls for ``timeout`` seconds. Once it failed, every part has been
    released and nothing of the body stays referenced; a stall also aborts ``transport``.
    ``slots`` caps the prefaulting threads shared by the receivers of one listener.
    """

    def __init__(
        self,
        length: int,
        previous: asyncio.BaseProtocol,
        *,
        timeout: float | None = None,
        transport: asyncio.Transport | None = None,
        slots: PrefaultSlots | None = None,
    ) -> None:
        loop = asyncio.get_running_loop()
        self._loop = loop
        self.done: asyncio.Future[tuple[Header, list[Any]]] = loop.create_future()
        self._previous = previous
        self._transport = transport
        self._slots = slots
        self._length = length
        self._left = length
        self._scratch = bytearray(max(PREFIX.size, min(SMALL, length)))
        self._head = bytearray()
        self._head_need = PREFIX.size
        self._header: Header | None = None
        self._lens: list[int] = []
        self._parts: list[Any] = []
        self._view: memoryview | None = None
        self._offset = 0
        self._prefaulter: Prefaulter | None = None
        self._timeout = timeout
        self._last = loop.time()
        self._timer: asyncio.TimerHandle | None = None
        if timeout is not None:
            self._timer = loop.call_later(timeout, self._check_stall)
        if length < PREFIX.size:
            self.fail(ProtocolError(f"data frame of {length} bytes: shorter than a frame prefix"))

    @property
    def received(self) -> int:
        """Body bytes read so far."""
        return self._length - self._left

    @property
    def parts(self) -> list[Any]:
        """The parts allocated so far (tests watch them being released)."""
        return self._parts

    # ------------------------------------------------------------------ protocol

    def get_buffer(self, sizehint: int) -> memoryview:
        if self.done.done():
            return memoryview(self._scratch)
        if self._header is None:
            want = self._head_need - len(self._head)
            return memoryview(self._scratch)[: max(1, min(want, len(self._scratch)))]
        while self._view is None or self._offset == len(self._view):
            self._close_part()
            if len(self._parts) == len(self._lens):
                # Bytes past the announced length: read them somewhere, _advance refuses them.
                return memoryview(self._scratch)
            self._open_part()
        return self._view[self._offset :]

    def buffer_updated(self, nbytes: int) -> None:
        if self.done.done():
            return
        try:
            self._advance(nbytes)
        except ProtocolError as exc:
            self.fail(exc)

    def feed(self, data: bytes) -> None:
        """Take bytes that were read before the transport was lent to us."""
        view = memoryview(data)
        while view and not self.done.done():
            target = self.get_buffer(len(view))
            take = min(len(target), len(view))
            target[:take] = view[:take]
            del target
            self.buffer_updated(take)
            view = view[take:]

    def eof_received(self) -> bool | None:
        self.fail(ProtocolError(self._truncated("the peer stopped sending")))
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self.fail(ProtocolError(self._truncated("connection lost")))
        self._previous.connection_lost(exc)

    def fail(self, exc: ProtocolError) -> None:
        """Fail the body with ``exc`` and release everything, unless it is over. Idempotent."""
        if not self.done.done():
            self.done.set_exception(exc)
            self._discard()

    def abandon(self) -> None:
        """Nobody waits for the body any more: release everything, unless it is over."""
        if not self.done.done():
            self.done.cancel()
            self._discard()

    # ------------------------------------------------------------------ reading

    def _advance(self, nbytes: int) -> None:
        self._last = self._loop.time()
        self._left -= nbytes
        if self._left < 0:
            raise ProtocolError("data frame longer than its Content-Length")
        if self._header is None:
            self._head += memoryview(self._scratch)[:nbytes]
            if len(self._head) == PREFIX.size:
                length = header_length(bytes(self._head))
                if length > self._left:
                    raise ProtocolError(
                        f"data frame header announces {length} bytes, "
                        f"{self._left} remain in the request"
                    )
                self._head_need += length
            elif len(self._head) == self._head_need:
                self._start_parts(decode_header(bytes(self._head[PREFIX.size :])))
                self._head = bytearray()
        else:
            self._offset += nbytes
            if self._prefaulter is not None:
                self._prefaulter.advance(self._offset)
        if self._left == 0:
            self._complete()

    def _start_parts(self, header: Header) -> None:
        if header.kind is not Kind.DATA:
            raise ProtocolError(f"expected a DATA frame, got {header.kind.name}")
        pickle_len, buffer_lens = header.data_layout()
        if pickle_len + sum(buffer_lens) != self._left:
            raise ProtocolError(
                f"data frame announces {pickle_len + sum(buffer_lens)} body bytes, "
                f"{self._left} remain in the request"
            )
        self._header = header
        self._lens = [pickle_len, *buffer_lens]

    def _open_part(self) -> None:
        part = allocate(self._lens[len(self._parts)])
        self._parts.append(part)
        self._view = memoryview(part)
        self._offset = 0
        slots = self._slots
        if (
            isinstance(part, mmap.mmap)
            and len(part) >= PREFAULT_MIN
            and can_prefault()
            and (slots is None or slots.take())
        ):
            self._prefaulter = Prefaulter(part, on_stop=slots.give if slots else None)
            self._prefaulter.start()

    def _close_part(self, *, wait: bool = False) -> None:
        if self._prefaulter is not None:
            self._prefaulter.stop(wait=wait)
            self._prefaulter = None
        self._view = None

    def _complete(self) -> None:
        if self._header is None:
            raise ProtocolError("data frame truncated in its header")
        # The layout adds up to the body, so only empty parts can be left unopened.
        self._close_part()
        while len(self._parts) < len(self._lens):
            self._parts.append(allocate(self._lens[len(self._parts)]))
        self._stop_timer()
        self.done.set_result((self._header, self._parts))
        self._let_go()

    def _truncated(self, why: str) -> str:
        return f"data frame truncated: {why} after {self.received} of {self._length} bytes"

    # ------------------------------------------------------------------ stalls and release

    def _check_stall(self) -> None:
        self._timer = None
        if self.done.done() or self._timeout is None:
            return
        idle = self._loop.time() - self._last
        if idle < self._timeout:
            self._timer = self._loop.call_later(self._timeout - idle, self._check_stall)
            return
        transport = self._transport
        self.fail(
            ProtocolError(
                f"data frame stalled: no byte for {self._timeout * 1000:.0f} ms "
                f"after {self.received} of {self._length} bytes"
            )
        )
        if transport is not None:
            transport.abort()

    def _stop_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _discard(self) -> None:
        self._stop_timer()
        self._close_part(wait=True)
        for part in self._parts:
            release(part)
        self._let_go()

    def _let_go(self) -> None:
        """Hold nothing once the body is over: a transport may keep its protocol's methods
        for the connection's life (uvloop's TLS transport keeps ``get_buffer``)."""
        self._parts = []
        self._head = bytearray()
        self._transport = None


async def receive_body(
    transport: asyncio.Transport,
    previous: asyncio.BaseProtocol,
    buffered: bytes,
    length: int,
    *,
    timeout: float | None = None,
    slots: PrefaultSlots | None = None,
) -> tuple[Header, list[Any]]:
    """Read a DATA frame body of ``length`` bytes (``buffered`` of which already arrived).

    The transport is lent to a :class:`BodyReceiver` and given back to ``previous`` afterwards,
    unless it is closing. Raises :class:`ProtocolError` for a malformed, truncated or stalled
    body (a stalled one also aborts the connection); the body's memory is released then, and
    also on cancellation.
    """
    receiver = BodyReceiver(length, previous, timeout=timeout, transport=transport, slots=slots)
    try:
        receiver.feed(buffered)
        if receiver.done.done():
            return receiver.done.result()
        transport.set_protocol(receiver)
        try:
            if not transport.is_reading():
                transport.resume_reading()
            return await receiver.done
        finally:
            if not transport.is_closing():
                transport.set_protocol(previous)
    except BaseException:
        receiver.abandon()
        raise
