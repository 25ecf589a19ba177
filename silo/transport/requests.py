"""One frame as a request of its own, answered ACK or REJECT: on a bulk stream, or a POST.

Large DATA frames go on the peer's bulk streams (:mod:`.outstream`) when it has them; control
frames, and large frames to a peer without bulk streams (it answers the upgrade 404) or holding
as many of ours as it takes (429), go as a POST (:func:`.upload.post_frame`). One call is one
attempt; the link retries (:class:`~silo.transport.link.PeerLink`).
"""

from __future__ import annotations

import aiohttp

from ..errors import ProtocolError
from ..wire import Header, Kind, OutFrame, decode_frame
from .base import DATA_PATH
from .outstream import StreamPool, StreamRefused
from .upload import Broken, post_frame

__all__ = ["REFUSED_STATUSES", "Refused", "Requests"]

#: HTTP statuses that refuse a frame for good: retrying cannot help.
REFUSED_STATUSES = frozenset({400, 403, 409, 411, 413})


class Refused(Exception):
    """The peer refused the frame for good (a refusal status, or a REJECT answer); ``str`` is
    its reason. The peer answered, so it is alive."""


class Requests:
    """Requests to one ``peer`` at ``base`` (``http[s]://host:port``)."""

    def __init__(
        self, *, peer: str, base: str, session: aiohttp.ClientSession, streams: StreamPool
    ) -> None:
        self._peer = peer
        self._base = base
        self._session = session
        self._streams = streams
        #: Cleared when the peer turns out to have no bulk streams.
        self.bulk_ok = True

    async def send(self, path: str, frame: OutFrame, *, bulk: bool, timeout: float) -> Header:
        """One attempt; returns the ACK. Raises :class:`Broken` (retry on a new connection),
        :class:`~.upload.Stalled` (no progress for ``timeout``), :class:`Refused` (for good)."""
        if bulk and self.bulk_ok:
            try:
                header = await self._streams.send(frame, timeout)
            except StreamRefused as exc:
                if exc.status == 404:
                    # A peer without bulk streams: large frames go as requests of their own.
                    self.bulk_ok = False
                elif exc.status != 429:
                    # 429: the peer holds as many of our streams as it takes (some left by a
                    # reconnection); this frame goes as a request of its own.
                    if exc.status in REFUSED_STATUSES:
                        raise Refused(exc.reason) from None
                    raise Broken(str(exc)) from None
                return await self._post(DATA_PATH, frame, timeout)
            return _answered(header)
        return await self._post(path, frame, timeout)

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
