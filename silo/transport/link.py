"""The sending side of the channel towards one peer.

A :class:`PeerLink` owns one ``aiohttp.ClientSession`` for the runtime's whole life. It keeps a
websocket open to the peer, sends small frames on it and matches the peer's ACK or REJECT
answers by message id. Large frames and control frames go as HTTP requests on the same session.

What the link knows about the peer lives in the shared :class:`~silo.peers.Peers`: the link feeds
it events (connected, dropped, refused, anything heard) and obeys its verdict. While the peer is
live (connecting, up, reconnecting) the link keeps trying; once the peer is over (finished, lost,
refused, closed) every frame still waiting fails at once and the link stops.

Deadlines, all from ``timeout_in_ms`` and ``heartbeat_interval_ms``:

* every connection attempt (TCP, TLS, websocket handshake) is bounded by ``timeout_in_ms``;
* a heartbeat goes out every ``heartbeat_interval_ms``; the peer's heartbeats come back on the
  same websocket (and are judged by the transport's monitor);
* a frame written but not acknowledged within ``timeout_in_ms`` breaks the connection, which is
  reconnected (the frame is then replayed);
* a large request body that stops moving for ``timeout_in_ms`` fails; while it moves, it has all
  the time it needs.

A dropped connection is retried with ``retry_policy``'s backoff, also after the link was up;
frames not yet acknowledged are replayed on the new connection, in order, with their message ids,
and the receiver delivers each id once. A frame is written at most ``max_attempts`` times.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import ssl
from dataclasses import dataclass
from typing import Any

import aiohttp

from ..activity import activity_map, note_activity
from ..config import Address, CrossSiloCommConfig
from ..errors import FrameRejected, ProtocolError, SendingFailure
from ..peers import LinkEvent, LinkState, Peers
from ..stats import Counters
from ..wire import PROTOCOL_VERSION, Header, Kind, OutFrame, decode_frame, encode_control
from .base import (
    CONTROL_PATH,
    DATA_PATH,
    HEADER_JOB,
    HEADER_PARTY,
    HEADER_PROTOCOL,
    HEADER_REFUSAL,
    INLINE_LIMIT,
    WS_PATH,
)
from .requests import REFUSED_STATUSES, Refused, Requests
from .upload import Broken, Stalled

__all__ = ["PeerLink"]

_REFUSAL_GRACE_S = 2.0


@dataclass(eq=False)
class _Pending:
    """A websocket frame waiting for its answer."""

    frame: OutFrame
    answer: asyncio.Future[Header]
    attempts: int = 0
    #: The connection it was last written on (-1: not yet), and when.
    generation: int = -1
    written_at: float = 0.0
    object_id: tuple[int, int] | None = None


class PeerLink:
    """Everything this party sends to one ``peer``. ``aclose`` is idempotent."""

    def __init__(
        self,
        *,
        party: str,
        job: str,
        peer: str,
        address: Address,
        comm: CrossSiloCommConfig,
        log: logging.LoggerAdapter[Any],
        peers: Peers,
        ssl_context: ssl.SSLContext | None = None,
        counters: Counters | None = None,
    ) -> None:
        self.peer = peer
        #: This party's counters (:mod:`silo.stats`) and this peer's share of them.
        self._counters = counters if counters is not None else Counters()
        self._count = self._counters.peer(peer)
        self._party = party
        self._job = job
        self._comm = comm
        self._log = log
        self._peers = peers
        self._ssl = ssl_context
        scheme = "https" if ssl_context else "http"
        host = f"[{address.host}]" if ":" in address.host else address.host
        self._base = f"{scheme}://{host}:{address.port}"
        self._address = address
        self._session: aiohttp.ClientSession | None = None
        self._requests: Requests | None = None
        self._ws: aiohttp.ClientWebSocketResponse[bool] | None = None
        self._generation = 0
        #: Set while a websocket is open and every earlier frame has been written on it.
        self._connected = asyncio.Event()
        #: Set once the peer is over (its state is terminal) or this link is closing.
        self._over = asyncio.Event()
        self._pending: dict[int, _Pending] = {}
        self._msg_ids = itertools.count(1)
        self._runner: asyncio.Task[None] | None = None
        self._closing = False
        # The peer's port may still serve its previous job for a moment (init twice on the same
        # ports): a refusal becomes final only when it lasts this long.
        self._refusal_grace = min(_REFUSAL_GRACE_S, comm.timeout_s / 4)
        peers.subscribe(self._peer_over)

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    def next_msg_id(self) -> int:
        return next(self._msg_ids)

    def start(self) -> None:
        """Open the session and start connecting in the background; returns at once."""
        headers = {
            **self._comm.http_header,
            HEADER_JOB: self._job,
            HEADER_PARTY: self._party,
            HEADER_PROTOCOL: str(PROTOCOL_VERSION),
        }
        connector = aiohttp.TCPConnector(ssl=self._ssl if self._ssl else False, limit=32)
        self._session = aiohttp.ClientSession(
            headers=headers,
            connector=connector,
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=self._comm.timeout_s),
        )
        self._requests = Requests.to_peer(
            self.peer, self._address, self._base, self._session, headers, self._ssl
        )
        self._runner = asyncio.get_running_loop().create_task(
            self._keep_connected(), name=f"silo-link-{self._party}-{self.peer}"
        )

    async def wait_connected(self, timeout: float) -> bool:
        """Wait until the peer's listener answers; ``False`` on timeout or once the link is over."""
        if self._connected.is_set():
            return True
        waiters = [
            asyncio.ensure_future(self._connected.wait()),
            asyncio.ensure_future(self._over.wait()),
        ]
        try:
            await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()
        return self._connected.is_set()

    async def aclose(self) -> None:
        """Stop reconnecting, close the websocket and the session. Idempotent."""
        if self._closing:
            return
        self._closing = True
        self._peers.fire(self.peer, LinkEvent.CLOSE, "this party closed the channel")
        self._over.set()
        self._fail_pending("this party is shutting down")
        try:
            if self._ws is not None:
                await asyncio.wait_for(self._ws.close(), 1.0)
        except (OSError, asyncio.TimeoutError, aiohttp.ClientError):
            pass
        finally:
            if self._requests is not None:
                self._requests.close()
            if self._runner is not None:
                self._runner.cancel()
                await asyncio.gather(self._runner, return_exceptions=True)
            if self._session is not None:
                await self._session.close()

    # ------------------------------------------------------------------ sending

    async def send(self, frame: OutFrame, *, control: bool = False) -> None:
        """Deliver ``frame`` and wait for the peer's acknowledgement.

        Raises :class:`FrameRejected` if the peer refused it, :class:`SendingFailure` once the
        peer is over (finished, lost, refused, or this party closing) or after ``max_attempts``
        writes. Cancellation abandons the frame.
        """
        if control:
            await self._post(CONTROL_PATH, frame)
        elif frame.nbytes > INLINE_LIMIT and frame.header.kind is Kind.DATA:
            await self._post(DATA_PATH, frame, bulk=True)
        else:
            await self._send_inline(frame)

    def _object_id(self, frame: OutFrame) -> tuple[int, int] | None:
        kind = frame.header.kind
        return frame.header.object_id if kind in (Kind.DATA, Kind.ERROR) else None

    def _failure(
        self, why: str, object_id: tuple[int, int] | None, rejected: bool = False
    ) -> SendingFailure:
        what = f"object {object_id}" if object_id is not None else "a control frame"
        cls = FrameRejected if rejected else SendingFailure
        return cls(
            f"party {self._party!r} could not send {what} to {self.peer!r}: {why}",
            peer=self.peer,
            object_id=object_id,
        )

    def _over_failure(self, object_id: tuple[int, int] | None) -> SendingFailure:
        state = self._peers.state(self.peer)
        reason = self._peers.reason(self.peer)
        return self._failure(reason, object_id, rejected=state is LinkState.REFUSED)

    async def _send_inline(self, frame: OutFrame) -> None:
        object_id = self._object_id(frame)
        if self._over.is_set():
            raise self._over_failure(object_id)
        msg_id = frame.header.msg_id
        answer: asyncio.Future[Header] = asyncio.get_running_loop().create_future()
        pending = self._pending[msg_id] = _Pending(frame, answer, object_id=object_id)
        nbytes = frame.nbytes
        self._counters.bytes_in_flight += nbytes
        try:
            ws = self._ws
            if ws is not None and self._connected.is_set():
                await self._write(ws, pending)
            header = await answer
        finally:
            self._counters.bytes_in_flight -= nbytes
            self._pending.pop(msg_id, None)
        if header.kind is Kind.REJECT:
            raise self._failure(str(header.extra), object_id, rejected=True)

    async def _write(self, ws: aiohttp.ClientWebSocketResponse[bool], pending: _Pending) -> None:
        """Write ``pending`` on ``ws``; a broken socket is left to the reader to notice."""
        if pending.attempts >= self._comm.retry_policy.max_attempts:
            why = f"not acknowledged after {pending.attempts} attempts"
            self._pending.pop(pending.frame.header.msg_id, None)
            self._settle(pending, self._failure(why, pending.object_id))
            return
        loop = asyncio.get_running_loop()
        pending.attempts += 1
        pending.generation = self._generation
        pending.written_at = loop.time()
        data = pending.frame.join()
        count = self._count
        if pending.attempts == 1:
            count.frames_sent += 1
            count.bytes_sent += len(data)
        else:
            count.retries += 1
        try:
            await ws.send_bytes(data)
        except (ConnectionError, aiohttp.ClientError, RuntimeError) as exc:
            self._log.debug("writing to %s failed: %r", self.peer, exc)
        pending.written_at = loop.time()

    @staticmethod
    def _settle(pending: _Pending, outcome: Header | BaseException) -> None:
        if pending.answer.done():
            return
        if isinstance(outcome, BaseException):
            pending.answer.set_exception(outcome)
        else:
            pending.answer.set_result(outcome)

    def _fail_pending(self, why: str, *, rejected: bool = False) -> None:
        for pending in list(self._pending.values()):
            self._settle(pending, self._failure(why, pending.object_id, rejected))

    async def _post(self, path: str, frame: OutFrame, *, bulk: bool = False) -> None:
        """Send ``frame`` as an HTTP request (or on a bulk stream), retried on a new connection
        when it breaks."""
        object_id = self._object_id(frame)
        nbytes = frame.nbytes
        self._counters.bytes_in_flight += nbytes
        try:
            await self._post_attempts(path, frame, object_id, nbytes, bulk)
        finally:
            self._counters.bytes_in_flight -= nbytes

    async def _post_attempts(
        self,
        path: str,
        frame: OutFrame,
        object_id: tuple[int, int] | None,
        nbytes: int,
        bulk: bool,
    ) -> None:
        policy = self._comm.retry_policy
        attempt = 0
        while True:
            await self._ready(object_id)
            attempt += 1
            if attempt == 1:
                self._count.frames_sent += 1
                self._count.bytes_sent += nbytes
            else:
                self._count.retries += 1
            assert self._requests is not None
            try:
                await self._requests.send(path, frame, bulk=bulk, timeout=self._comm.timeout_s)
                self._peers.heard(self.peer, outgoing=True)
                return
            except Refused as exc:
                self._peers.heard(self.peer, outgoing=True)
                raise self._failure(str(exc), object_id, rejected=True) from None
            except Stalled:
                raise self._failure(
                    f"no progress for {self._comm.timeout_in_ms} ms "
                    f"(the frame stopped moving or no answer came)",
                    object_id,
                ) from None
            except Broken as exc:
                if self._over.is_set():
                    raise self._over_failure(object_id) from exc
                if attempt >= policy.max_attempts:
                    raise self._failure(
                        f"still failing after {attempt} attempts: {exc}", object_id
                    ) from exc
                self._log.debug("request to %s failed, retrying: %s", self.peer, exc)
                await asyncio.sleep(policy.backoff_s(attempt))

    async def _ready(self, object_id: tuple[int, int] | None) -> None:
        """Return once the websocket is up (the peer listens); raise once the peer is over."""
        while not self._connected.is_set():
            if self._over.is_set():
                raise self._over_failure(object_id)
            await self.wait_connected(self._comm.timeout_s)
        if self._over.is_set():
            raise self._over_failure(object_id)

    # ------------------------------------------------------------------ the connection

    def _peer_over(self, peer: str, state: LinkState, reason: str) -> None:
        """The shared peer state became terminal: fail what waits and stop the connection."""
        if peer != self.peer:
            return
        self._over.set()
        self._connected.clear()
        self._fail_pending(reason, rejected=state is LinkState.REFUSED)
        runner = self._runner
        if runner is not None and runner is not asyncio.current_task():
            runner.cancel()

    async def _keep_connected(self) -> None:
        """Connect, read until the websocket closes, and reconnect while the peer is live."""
        assert self._session is not None
        loop = asyncio.get_running_loop()
        policy = self._comm.retry_policy
        attempt = 0
        ever_connected = False
        first_refusal = 0.0
        refusal: aiohttp.WSServerHandshakeError | None = None
        while not self._over.is_set():
            try:
                ws = await asyncio.wait_for(
                    self._session.ws_connect(
                        self._base + WS_PATH,
                        autoping=True,
                        compress=0,
                        max_msg_size=0,
                        timeout=aiohttp.ClientWSTimeout(ws_close=1.0),
                    ),
                    self._comm.timeout_s,
                )
            except aiohttp.WSServerHandshakeError as exc:
                attempt += 1
                if exc.status in REFUSED_STATUSES:
                    refusal = exc
                    now = loop.time()
                    first_refusal = first_refusal or now
                    if now - first_refusal >= self._refusal_grace:
                        self._refused(exc)
                        return
                    await asyncio.sleep(min(policy.backoff_s(attempt), 0.1))
                    continue
                self._peers.fire(self.peer, LinkEvent.DROPPED)
            except (aiohttp.ClientError, OSError, asyncio.TimeoutError) as exc:
                attempt += 1
                self._log.debug("connecting to %s failed: %r", self.peer, exc)
                if refusal is not None and loop.time() - first_refusal >= self._refusal_grace:
                    # It refused us, then stopped listening (it gave up on us) and did not come
                    # back with this job within the grace.
                    self._refused(refusal)
                    return
                self._peers.fire(self.peer, LinkEvent.DROPPED)
            else:
                self._log.debug("connected to %s after %d failed attempts", self.peer, attempt)
                attempt, first_refusal, refusal, ever_connected = 0, 0.0, None, True
                await self._run_connection(ws)
                if self._over.is_set():
                    return
                self._log.debug("the channel to %s dropped; reconnecting", self.peer)
                self._peers.fire(self.peer, LinkEvent.DROPPED)
            if ever_connected:
                await asyncio.sleep(policy.backoff_s(attempt))
            elif refusal is not None:
                await asyncio.sleep(min(policy.backoff_s(attempt), 0.1))
            else:
                await asyncio.sleep(policy.connect_backoff_s(attempt))

    def _refused(self, exc: aiohttp.WSServerHandshakeError) -> None:
        why = exc.headers.get(HEADER_REFUSAL) if exc.headers else None
        reason = (
            f"{self.peer} refused the channel of {self._party} (job {self._job!r}, protocol "
            f"{PROTOCOL_VERSION}): {why or f'HTTP {exc.status}'}"
        )
        self._peers.fire(self.peer, LinkEvent.REFUSED, reason)

    async def _run_connection(self, ws: aiohttp.ClientWebSocketResponse[bool]) -> None:
        """Replay what waits, then read answers and send heartbeats until ``ws`` closes."""
        self._generation += 1
        generation = self._generation
        if generation > 1:
            self._count.reconnects += 1
        self._peers.heard(self.peer, outgoing=True)
        self._peers.fire(self.peer, LinkEvent.CONNECTED)
        beats = asyncio.get_running_loop().create_task(self._heartbeats(ws, generation))
        try:
            while not ws.closed:
                stale = [p for p in self._pending.values() if p.generation != generation]
                if not stale:
                    break
                for pending in stale:
                    await self._write(ws, pending)
            self._ws = ws
            self._connected.set()
            if self._requests is not None:
                self._requests.warm(self._comm.timeout_s)
            await self._read_answers(ws)
        finally:
            self._connected.clear()
            self._ws = None
            beats.cancel()
            await asyncio.gather(beats, return_exceptions=True)
            if not ws.closed:
                with contextlib.suppress(OSError, asyncio.TimeoutError, aiohttp.ClientError):
                    await asyncio.wait_for(ws.close(), 1.0)

    async def _heartbeats(self, ws: aiohttp.ClientWebSocketResponse[bool], generation: int) -> None:
        """Send a heartbeat every interval; break the connection if an answer is overdue."""
        loop = asyncio.get_running_loop()
        while not ws.closed:
            extra = activity_map(self._counters)
            beat = encode_control(Kind.HEARTBEAT, self._job, self._party, extra=extra).head
            try:
                await ws.send_bytes(beat)
            except (ConnectionError, aiohttp.ClientError, RuntimeError):
                return
            await asyncio.sleep(self._comm.heartbeat_s)
            overdue = loop.time() - self._comm.timeout_s
            if any(
                p.generation == generation and p.written_at < overdue
                for p in self._pending.values()
            ):
                self._log.warning(
                    "%s did not acknowledge a frame within %d ms; reconnecting",
                    self.peer,
                    self._comm.timeout_in_ms,
                )
                await ws.close()
                return

    async def _read_answers(self, ws: aiohttp.ClientWebSocketResponse[bool]) -> None:
        async for msg in ws:
            if msg.type is not aiohttp.WSMsgType.BINARY:
                continue
            self._peers.heard(self.peer, outgoing=True)
            try:
                header, _ = decode_frame(msg.data)
            except ProtocolError as exc:
                self._log.warning("malformed answer from %s: %s", self.peer, exc)
                continue
            if header.kind is Kind.ACK:
                for msg_id in header.acked():
                    pending = self._pending.get(msg_id)
                    if pending is not None:
                        self._settle(pending, header)
            elif header.kind is Kind.REJECT:
                pending = self._pending.get(header.msg_id)
                if pending is not None:
                    self._settle(pending, header)
            elif header.kind is Kind.HEARTBEAT:
                note_activity(self._peers, self.peer, header.extra, self._log)
