"""The receiving end of a bulk stream: DATA frames back to back on one long-lived connection.

A peer opens a bulk stream with an HTTP upgrade on ``BULK_PATH`` (checked by the listener's gate
like every request); from then on the connection carries, in each direction:

* peer to us: ``STREAM_PREFIX`` (``u64 length | u64 msg_id | u64 seq | u32 index``) and a whole
  frame of ``length`` bytes, again and again;
* us to peer: one ACK or REJECT frame per frame, in order.

A frame of at most ``WHOLE_LIMIT`` bytes (a control frame: ERROR or ABORT; the sender's
*control streams* carry those) is read whole and handed over as bytes. A larger one is a DATA
frame: its body is read by a :class:`~.bulk.BodyReceiver` straight into the memory its buffers
will live in (one kernel copy, as on the ``DATA_PATH``), with the same checks: the header is
believed no further than the announced length, memory is committed as bytes arrive. A frame
whose announced length exceeds ``limit`` is read into a small scratch buffer and thrown away,
then refused (``msg_id`` and the object id in the prefix say what to refuse); nothing of it is
allocated. A frame of any of these kinds that stops arriving for ``timeout`` seconds aborts the
connection. A malformed frame breaks the stream: the connection is closed (the sender replays
what was not answered on a new one).
"""

from __future__ import annotations

import asyncio
import logging
import struct
from collections.abc import Callable
from typing import Any

from aiohttp import web

from ..errors import ProtocolError
from ..wire import Header
from .base import BULK_STREAMS, BULK_UPGRADE, HEADER_PARTY, INLINE_LIMIT
from .bulk import BodyReceiver
from .gate import refusal_response
from .prefault import PrefaultSlots

__all__ = ["STREAM_PREFIX", "BulkListener", "StreamReceiver"]

STREAM_PREFIX = struct.Struct("!QQQI")
#: Frames up to this size are read whole (:data:`~.base.INLINE_LIMIT`: what goes inline).
WHOLE_LIMIT = INLINE_LIMIT
_SKIP_CHUNK = 1 << 16

#: ``(header, parts, length)`` of a whole frame -> the answer to write back.
OnFrame = Callable[[Header, list[Any], int], bytes]
#: ``(frame, msg_id)`` of a frame read whole -> the answer.
OnWhole = Callable[[bytes, int], bytes]
#: ``(length, msg_id, object_id)`` of a frame over the limit (thrown away) -> the answer.
OnTooLarge = Callable[[int, int, tuple[int, int]], bytes]


class BulkListener:
    """The listener's side of bulk streams: the upgrade, at most ``2 * BULK_STREAMS`` streams
    per peer (429 beyond: an authenticated peer cannot pile up connections), and the streams
    open now, closed by :meth:`close`.

    ``refuse`` is the listener's gate (a request it refuses gets its answer); ``on_frame`` and
    ``on_too_large`` take ``peer`` as a last argument.
    """

    def __init__(
        self,
        *,
        refuse: Callable[[web.Request], web.StreamResponse | None],
        heard: Callable[[str], None],
        on_frame: Callable[[Header, list[Any], int, str], bytes],
        on_whole: Callable[[bytes, int, str], bytes],
        on_too_large: Callable[[int, int, tuple[int, int], str], bytes],
        limit: int,
        timeout: float,
        log: logging.LoggerAdapter[Any],
        slots: PrefaultSlots | None,
    ) -> None:
        self._refuse = refuse
        self._heard = heard
        self._on_frame = on_frame
        self._on_whole = on_whole
        self._on_too_large = on_too_large
        self._limit = limit
        self._timeout = timeout
        self._log = log
        self._slots = slots
        self._open: dict[asyncio.Transport, str] = {}
        self._closed = False

    async def handle(self, request: web.Request) -> web.StreamResponse:
        """A peer's bulk stream: upgraded, then read until it closes."""
        refusal = self._refuse(request)
        if refusal is not None:
            return refusal
        if request.headers.get("Upgrade", "").lower() != BULK_UPGRADE:
            return web.Response(status=400, text=f"a bulk stream needs Upgrade: {BULK_UPGRADE}")
        transport = request.transport
        if transport is None or self._closed:
            return web.Response(status=400, text="connection closed")
        peer = request.headers[HEADER_PARTY]
        if sum(1 for owner in self._open.values() if owner == peer) >= 2 * BULK_STREAMS:
            return refusal_response(429, f"{peer} has {2 * BULK_STREAMS} bulk streams open")
        self._heard(peer)
        response = web.StreamResponse(
            status=101, headers={"Upgrade": BULK_UPGRADE, "Connection": "Upgrade"}
        )
        await response.prepare(request)
        receiver = StreamReceiver(
            transport,
            request.protocol,
            limit=self._limit,
            timeout=self._timeout,
            on_frame=lambda header, parts, size: self._on_frame(header, parts, size, peer),
            on_whole=lambda frame, msg_id: self._on_whole(frame, msg_id, peer),
            on_too_large=lambda size, msg_id, object_id: self._on_too_large(
                size, msg_id, object_id, peer
            ),
            on_error=lambda exc: self._log.warning("dropped the bulk stream of %s: %s", peer, exc),
            slots=self._slots,
        )
        self._open[transport] = peer
        try:
            transport.set_protocol(receiver)
            if not transport.is_reading():
                transport.resume_reading()
            await receiver.closed
        finally:
            self._open.pop(transport, None)
            transport.close()
        return response

    def __len__(self) -> int:
        """How many streams are open now."""
        return len(self._open)

    def close(self) -> None:
        """Close every stream open now and refuse new ones. Idempotent."""
        self._closed = True
        for transport in list(self._open):
            transport.close()


class StreamReceiver(asyncio.BufferedProtocol):
    """Reads frames off one upgraded connection until it closes. ``closed`` resolves then.

    ``previous`` (aiohttp's protocol for the connection) is told when the connection is lost.
    """

    def __init__(
        self,
        transport: asyncio.Transport,
        previous: asyncio.BaseProtocol,
        *,
        limit: int,
        timeout: float,
        on_frame: OnFrame,
        on_whole: OnWhole,
        on_too_large: OnTooLarge,
        on_error: Callable[[ProtocolError], None],
        slots: PrefaultSlots | None = None,
    ) -> None:
        loop = asyncio.get_running_loop()
        self._loop = loop
        self.closed: asyncio.Future[None] = loop.create_future()
        self._transport = transport
        self._previous = previous
        self._limit = limit
        self._timeout = timeout
        self._on_frame = on_frame
        self._on_whole = on_whole
        self._on_too_large = on_too_large
        self._on_error = on_error
        self._slots = slots
        self._prefix = bytearray(STREAM_PREFIX.size)
        self._have = 0
        self._scratch = bytearray(_SKIP_CHUNK)
        self._body: BodyReceiver | None = None
        #: A small frame being read whole: its bytes, how many arrived, its msg_id.
        self._whole: bytearray | None = None
        self._whole_have = 0
        self._whole_msg_id = 0
        self._skip: tuple[int, int, tuple[int, int]] | None = None
        self._skip_left = 0
        #: When a whole or skipped frame last moved, and the timer watching it.
        self._moved = 0.0
        self._stall_timer: asyncio.TimerHandle | None = None

    def get_buffer(self, sizehint: int) -> memoryview:
        if self._body is not None:
            return self._body.get_buffer(sizehint)
        if self._whole is not None:
            return memoryview(self._whole)[self._whole_have :]
        if self._skip is not None:
            return memoryview(self._scratch)[: min(self._skip_left, _SKIP_CHUNK)]
        return memoryview(self._prefix)[self._have :]

    def buffer_updated(self, nbytes: int) -> None:
        if self._body is not None:
            self._body_updated(self._body, nbytes)
        elif self._whole is not None:
            self._whole_have += nbytes
            self._moved = self._loop.time()
            if self._whole_have == len(self._whole):
                frame, self._whole = bytes(self._whole), None
                self._stop_stall_timer()
                self._write(self._on_whole(frame, self._whole_msg_id))
        elif self._skip is not None:
            self._skip_left -= nbytes
            self._moved = self._loop.time()
            if self._skip_left == 0:
                length, msg_id, object_id = self._skip
                self._skip = None
                self._stop_stall_timer()
                self._write(self._on_too_large(length, msg_id, object_id))
        else:
            self._have += nbytes
            if self._have == STREAM_PREFIX.size:
                self._have = 0
                self._start(*STREAM_PREFIX.unpack(self._prefix))

    def _start(self, length: int, msg_id: int, seq: int, index: int) -> None:
        if length > self._limit:
            self._skip = (length, msg_id, (seq, index))
            self._skip_left = length
            self._watch_stall()
            return
        if length <= WHOLE_LIMIT:
            self._whole = bytearray(length)
            self._whole_have = 0
            self._whole_msg_id = msg_id
            if length == 0:
                self.buffer_updated(0)
            else:
                self._watch_stall()
            return
        body = BodyReceiver(
            length,
            self._previous,
            timeout=self._timeout,
            transport=self._transport,
            slots=self._slots,
        )
        if body.done.done():
            self._finished(body)
        else:
            self._body = body

    def _watch_stall(self) -> None:
        self._moved = self._loop.time()
        self._stall_timer = self._loop.call_later(self._timeout, self._check_stall)

    def _check_stall(self) -> None:
        """A frame read whole or thrown away must keep arriving, like any other."""
        self._stall_timer = None
        if self._skip is None and self._whole is None:
            return
        idle = self._loop.time() - self._moved
        if idle < self._timeout:
            self._stall_timer = self._loop.call_later(self._timeout - idle, self._check_stall)
            return
        what = "a frame over the limit" if self._skip is not None else "a frame"
        self._on_error(ProtocolError(f"{what} stopped arriving for {self._timeout:g} s"))
        self._transport.abort()

    def _stop_stall_timer(self) -> None:
        if self._stall_timer is not None:
            self._stall_timer.cancel()
            self._stall_timer = None

    def _body_updated(self, body: BodyReceiver, nbytes: int) -> None:
        body.buffer_updated(nbytes)
        if body.done.done():
            self._body = None
            self._finished(body)

    def _finished(self, body: BodyReceiver) -> None:
        exc = body.done.exception()
        if exc is not None:
            self._on_error(exc if isinstance(exc, ProtocolError) else ProtocolError(str(exc)))
            self._transport.close()
            return
        header, parts = body.done.result()
        self._write(self._on_frame(header, parts, body.received))

    def _write(self, answer: bytes) -> None:
        if not self._transport.is_closing():
            self._transport.write(answer)

    def eof_received(self) -> bool | None:
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_stall_timer()
        body, self._body = self._body, None
        if body is not None:
            body.abandon()
        if not self.closed.done():
            self.closed.set_result(None)
        self._previous.connection_lost(exc)
