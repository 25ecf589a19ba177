"""One frame as a request of its own, answered ACK or REJECT: on a stream, or a POST.

Large DATA frames go on the peer's bulk streams (:mod:`.outstream`) when it has them, and control
frames (ERROR, ABORT) on its *control streams*: streams of their own, so a control
frame never waits behind a large transfer and costs a write and a read on a connection kept
open, not an HTTP request. A frame to a peer without streams (it answers the upgrade 404) or
holding as many of ours as it takes (429), and a control frame too large to be read whole
(:data:`~.stream.WHOLE_LIMIT`), go as a POST (:func:`.upload.post_frame`). One call is one
attempt; the link retries (:class:`~silo.transport.link.PeerLink`).
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Mapping

import aiohttp

from ..config import Address
from ..errors import ProtocolError
from ..wire import Header, Kind, OutFrame, decode_frame
from .base import CONTROL_PATH, CONTROL_STREAMS
from .outstream import StreamPool, StreamRefused
from .stream import WHOLE_LIMIT
from .upload import Broken, post_frame

__all__ = ["REFUSED_STATUSES", "Refused", "Requests"]

#: HTTP statuses that refuse a frame for good: retrying cannot help.
REFUSED_STATUSES = frozenset({400, 403, 409, 411, 413})


class Refused(Exception):
    """The peer refused the frame for good (a refusal status, or a REJECT answer); ``str`` is
    its reason. The peer answered, so it is alive."""


class Requests:
    """Requests to one ``peer`` at ``base`` (``http[s]://host:port``): large DATA frames on
    ``streams``, control frames on ``control`` (when given). ``close`` closes both pools."""

    def __init__(
        self,
        *,
        peer: str,
        base: str,
        session: aiohttp.ClientSession,
        streams: StreamPool,
        control: StreamPool | None = None,
    ) -> None:
        self._peer = peer
        self._base = base
        self._session = session
        self._streams = streams
        self._control = control
        #: Cleared when the peer turns out to have no streams.
        self.streams_ok = True
        self._warming: asyncio.Task[None] | None = None

    @classmethod
    def to_peer(
        cls,
        peer: str,
        address: Address,
        base: str,
        session: aiohttp.ClientSession,
        headers: Mapping[str, str],
        ssl_context: ssl.SSLContext | None,
    ) -> Requests:
        """Requests to ``peer``, with its own pools of bulk and control streams."""
        return cls(
            peer=peer,
            base=base,
            session=session,
            streams=StreamPool(address, headers=headers, ssl_context=ssl_context),
            control=StreamPool(
                address, headers=headers, ssl_context=ssl_context, size=CONTROL_STREAMS
            ),
        )

    async def send(self, path: str, frame: OutFrame, *, bulk: bool, timeout: float) -> Header:
        """One attempt; returns the ACK. Raises :class:`Broken` (retry on a new connection),
        :class:`~.upload.Stalled` (no progress for ``timeout``), :class:`Refused` (for good)."""
        pool = self._streams if bulk else None
        if path == CONTROL_PATH and frame.nbytes <= WHOLE_LIMIT:
            pool = self._control
        if pool is not None and self.streams_ok:
            try:
                header = await pool.send(frame, timeout)
            except StreamRefused as exc:
                if exc.status == 404:
                    # A peer without streams: frames go as requests of their own.
                    self.streams_ok = False
                elif exc.status != 429:
                    # 429: the peer holds as many of our streams as it takes (some left by a
                    # reconnection); this frame goes as a request of its own.
                    if exc.status in REFUSED_STATUSES:
                        raise Refused(exc.reason) from None
                    raise Broken(str(exc)) from None
                return await self._post(path, frame, timeout)
            return _answered(header)
        return await self._post(path, frame, timeout)

    def warm(self, timeout: float) -> None:
        """Open a control stream in the background, so the first control frame (an error,
        often) finds one open. A failure here is not one: a frame opens its stream itself."""
        if self._control is None or not self.streams_ok:
            return
        if self._warming is None or self._warming.done():
            self._warming = asyncio.get_running_loop().create_task(
                self._warm(self._control, timeout)
            )

    async def _warm(self, pool: StreamPool, timeout: float) -> None:
        try:
            await pool.warm(timeout)
        except StreamRefused as exc:
            if exc.status == 404:
                self.streams_ok = False
        except Broken:
            pass

    def close(self) -> None:
        """Close the streams (a frame being sent on one fails with :class:`Broken`)."""
        if self._warming is not None:
            self._warming.cancel()
        self._streams.close()
        if self._control is not None:
            self._control.close()

    async def _post(self, path: str, frame: OutFrame, timeout: float) -> Header:
        status, body = await post_frame(self._session, self._base + path, frame, timeout)
        if status in REFUSED_STATUSES:
            raise Refused(body.decode("utf-8", "replace"))
        if status != 200:
            raise Broken(f"HTTP {status} from {self._peer!r}")
        try:
            header, _ = decode_frame(body)
        except ProtocolError as exc:
            raise Broken(f"malformed answer from {self._peer!r}: {exc}") from exc
        return _answered(header)


def _answered(header: Header) -> Header:
    if header.kind is Kind.REJECT:
        raise Refused(str(header.extra))
    return header
