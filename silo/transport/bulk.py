"""Receiving a large DATA frame without copying it in user space.

aiohttp parses the request line and headers as usual. Then, for the body of a large DATA frame,
:func:`receive_body` lends the connection's transport a :class:`BodyReceiver`, an
``asyncio.BufferedProtocol`` whose ``get_buffer`` hands out the very memory each out-of-band buffer
will live in: the kernel copies the bytes straight there (``recv_into``), as a raw socket would.
The memory is an anonymous mapping whose pages a helper thread faults in while the socket fills
them (see :func:`allocate`), rather than a zero-filled ``bytearray``. When the body is in,
the transport goes back to aiohttp, which answers and closes the connection.

Bytes aiohttp had already buffered past the headers are taken first, then the rest is read; a
peer that disconnects midway fails the read and aiohttp hears of the loss as usual.
"""

from __future__ import annotations

import asyncio
import ctypes
import mmap
import sys
import threading
from collections.abc import Callable
from typing import Any

from ..errors import ProtocolError
from ..wire import PREFIX, Header, Kind, decode_header, header_length

__all__ = ["BodyReceiver", "allocate", "receive_body"]

_SMALL = 1 << 16
_MADV_POPULATE_WRITE = 23  # Linux 5.14+
_POPULATE_MIN = 4 << 20


def _load_madvise() -> Callable[[int, int, int], int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        madvise = libc.madvise
    except (OSError, AttributeError):
        return None
    madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    madvise.restype = ctypes.c_int
    return madvise


_madvise = _load_madvise()


def _populate(memory: mmap.mmap) -> None:
    """Fault in every page of ``memory`` (the GIL is released during the call)."""
    assert _madvise is not None
    view = ctypes.c_char.from_buffer(memory)
    try:
        _madvise(ctypes.addressof(view), len(memory), _MADV_POPULATE_WRITE)
    finally:
        del view


def allocate(size: int) -> bytearray | mmap.mmap:
    """Writable memory for one part.

    Large parts are anonymous mappings: not zero-filled in user space, and on Linux their pages
    are faulted in by a short-lived thread, in parallel with the socket filling them from the
    front, instead of one fault at a time inside the copy (or a long ``MAP_POPULATE`` stall on
    the event loop).
    """
    if size < _SMALL or not hasattr(mmap, "MAP_ANONYMOUS"):
        return bytearray(size)
    memory = mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    if _madvise is not None and size >= _POPULATE_MIN:
        threading.Thread(
            target=_populate, args=(memory,), name="silo-populate", daemon=True
        ).start()
    return memory


class BodyReceiver(asyncio.BufferedProtocol):
    """Reads exactly ``length`` body bytes of one DATA frame into per-part memory."""

    def __init__(self, length: int, previous: asyncio.BaseProtocol) -> None:
        self.done: asyncio.Future[tuple[Header, list[Any]]] = (
            asyncio.get_running_loop().create_future()
        )
        self._previous = previous
        self._left = length
        self._prefix = bytearray(PREFIX.size)
        self._head: bytearray | None = None
        self._head_filled = 0
        self._header: Header | None = None
        self._parts: list[Any] = []
        self._views: list[memoryview] = []
        self._index = 0
        self._offset = 0
        self._scratch: bytearray | None = None

    def _target(self) -> memoryview:
        if self._header is None:
            buf = self._prefix if self._head is None else self._head
            return memoryview(buf)[self._head_filled :]
        while self._index < len(self._views) and self._offset == len(self._views[self._index]):
            self._index += 1
            self._offset = 0
        if self._index == len(self._views):
            # Bytes past the announced length: read them somewhere, _advance refuses the frame.
            self._scratch = self._scratch or bytearray(_SMALL)
            return memoryview(self._scratch)
        return self._views[self._index][self._offset :]

    def get_buffer(self, sizehint: int) -> memoryview:
        return self._target()

    def buffer_updated(self, nbytes: int) -> None:
        if self.done.done():
            return
        try:
            self._advance(nbytes)
        except ProtocolError as exc:
            self.done.set_exception(exc)

    def feed(self, data: bytes) -> None:
        """Take bytes that were read before the transport was lent to us."""
        view = memoryview(data)
        while view and not self.done.done():
            target = self._target()
            take = min(len(target), len(view))
            target[:take] = view[:take]
            self.buffer_updated(take)
            view = view[take:]

    def _advance(self, nbytes: int) -> None:
        self._left -= nbytes
        if self._left < 0:
            raise ProtocolError("data frame longer than its Content-Length")
        if self._header is None:
            self._head_filled += nbytes
            if self._head is None and self._head_filled == PREFIX.size:
                self._head = bytearray(header_length(bytes(self._prefix)))
                self._head_filled = 0
            elif self._head is not None and self._head_filled == len(self._head):
                self._start_parts(decode_header(bytes(self._head)))
        else:
            self._offset += nbytes
        if self._left == 0:
            # _start_parts checked that the parts add up to what was left, so they are full.
            if self._header is None:
                raise ProtocolError("data frame truncated in its header")
            self.done.set_result((self._header, self._parts))

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
        self._parts = [bytearray(pickle_len), *(allocate(n) for n in buffer_lens)]
        self._views = [memoryview(p) for p in self._parts]

    def eof_received(self) -> bool | None:
        if not self.done.done():
            self.done.set_exception(ProtocolError("data frame truncated: the peer stopped sending"))
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.done.done():
            self.done.set_exception(ProtocolError("data frame truncated: connection lost"))
        self._previous.connection_lost(exc)


async def receive_body(
    transport: asyncio.Transport, previous: asyncio.BaseProtocol, buffered: bytes, length: int
) -> tuple[Header, list[Any]]:
    """Read a DATA frame body of ``length`` bytes (``buffered`` of which already arrived).

    The transport is lent to a :class:`BodyReceiver` and given back to ``previous`` afterwards,
    also on failure or cancellation. Raises :class:`ProtocolError` for a malformed or truncated
    body.
    """
    receiver = BodyReceiver(length, previous)
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
