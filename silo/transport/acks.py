"""Acknowledgements of websocket DATA frames, sent in batches.

Every DATA frame a peer writes on its websocket is answered ACK, but one answer per frame costs
both parties a message (a socket write, a wake-up, a decode) as large as the frame's own share
of a tiny round. :class:`AckBatch` gathers the ids owed on one websocket and sends them as one
ACK frame at most :data:`ACK_DELAY_S` after the first, or at once when :data:`ACK_BATCH` are owed
or another answer (a REJECT, the ACK of a GOODBYE) is due. A sender keeps a frame until it is
acknowledged and replays it on a new connection otherwise, so an ACK that is lost because the
connection closed first costs a replay, which the receiver acknowledges without delivering again.
A party that closes its listener cleanly sends what it owes first (:meth:`AckBatch.drain`): it
is going away, so its peer would have no next connection to replay on.
"""

from __future__ import annotations

import asyncio

from aiohttp import web

from ..wire import MAX_ACKS, encode_ack

__all__ = ["ACK_BATCH", "ACK_DELAY_S", "AckBatch"]

#: How long an acknowledgement may wait for others to join it.
ACK_DELAY_S = 0.002
#: The most ids one ACK frame carries.
ACK_BATCH = min(256, MAX_ACKS + 1)


class AckBatch:
    """The ACKs owed on one websocket. ``close`` is idempotent; nothing is sent after it."""

    def __init__(self, ws: web.WebSocketResponse, job: str, party: str) -> None:
        self._ws = ws
        self._job = job
        self._party = party
        self._loop = asyncio.get_running_loop()
        self._ids: list[int] = []
        self._timer: asyncio.TimerHandle | None = None
        self._sending: set[asyncio.Task[None]] = set()
        self._closed = False

    def add(self, msg_id: int) -> None:
        """Owe an ACK for ``msg_id``: sent within :data:`ACK_DELAY_S`."""
        if self._closed:
            return
        self._ids.append(msg_id)
        if len(self._ids) >= ACK_BATCH:
            self.flush()
        elif self._timer is None:
            self._timer = self._loop.call_later(ACK_DELAY_S, self.flush)

    def flush(self) -> None:
        """Send every ACK owed now (the write runs in a task of its own)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not self._ids or self._closed:
            return
        data = encode_ack(self._job, self._party, self._ids)
        self._ids = []
        task = self._loop.create_task(self._send(data))
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)

    async def _send(self, data: bytes) -> None:
        try:
            await self._ws.send_bytes(data)
        except (ConnectionError, RuntimeError):
            pass

    async def drain(self) -> None:
        """Send every ACK owed now and wait until they are written: before a clean close, as
        the peer may have no next connection to replay on (this party is going away)."""
        self.flush()
        if self._sending:
            await asyncio.gather(*self._sending, return_exceptions=True)

    def close(self) -> None:
        """Stop: the timer is cancelled and the ids still owed are dropped (their senders
        replay them on their next connection)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._closed = True
        self._ids = []
