"""The sending side of the channel towards one peer.

A :class:`PeerLink` owns one ``aiohttp.ClientSession`` for the runtime's whole life. It keeps a
websocket open to the peer (reconnecting in the background while the peer is not up yet), sends
small frames on it and matches the peer's ACK or REJECT answers by message id. Large frames and
control frames go as HTTP requests on the same session, each answered by the peer.

Every send is bounded by ``timeout_in_ms`` and retried per ``retry_policy``. Waiting for a peer
that is not listening yet counts against the timeout only. A websocket that was up and drops
without the peer's goodbye (close code ``CLOSE_GOODBYE``) is reconnected at once; if the peer no
longer listens, it is lost.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import ssl
from collections.abc import AsyncIterator
from typing import Any

import aiohttp

from ..config import Address, CrossSiloCommConfig
from ..errors import FrameRejected, ProtocolError, SendingFailure
from ..wire import CLOSE_GOODBYE, Header, Kind, OutFrame, decode_frame
from .base import (
    CONTROL_PATH,
    DATA_PATH,
    HEADER_JOB,
    HEADER_OBJECT,
    HEADER_PARTY,
    HEADER_PROTOCOL,
    HEADER_REFUSAL,
    INLINE_LIMIT,
    WS_PATH,
    FrameSink,
)

__all__ = ["PeerLink"]

_STREAM_CHUNK = 4 << 20
_HEARTBEAT_S = 10.0
_REFUSAL_GRACE_S = 1.0
_CONNECT_BACKOFF_S = 0.005
_REFUSED_STATUSES = frozenset({400, 403, 409, 411, 413})


class _Broken(Exception):
    """The websocket closed while a frame waited for its answer; the send is retried."""


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
        events: FrameSink,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.peer = peer
        self._party = party
        self._job = job
        self._comm = comm
        self._log = log
        self._events = events
        self._ssl = ssl_context
        scheme = "https" if ssl_context else "http"
        host = f"[{address.host}]" if ":" in address.host else address.host
        self._base = f"{scheme}://{host}:{address.port}"
        self._session: aiohttp.ClientSession | None = None
        self._ws: aiohttp.ClientWebSocketResponse[bool] | None = None
        self._connected = asyncio.Event()
        self._settled = asyncio.Event()
        self._answers: dict[int, asyncio.Future[Header]] = {}
        self._msg_ids = itertools.count(1)
        self._runner: asyncio.Task[None] | None = None
        self._closing = False
        self._finished = False
        self._ever_connected = False
        self._silence_reported = False
        self._gone: str | None = None
        self._refusal: str | None = None
        # The peer's port may still serve its previous job for a moment (init twice on the same
        # ports): a refusal becomes final only when it lasts this long.
        self._refusal_grace = min(_REFUSAL_GRACE_S, comm.timeout_s / 4)

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
            HEADER_PROTOCOL: "1",
        }
        connector = aiohttp.TCPConnector(ssl=self._ssl if self._ssl else False, limit=32)
        self._session = aiohttp.ClientSession(
            headers=headers,
            connector=connector,
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=self._comm.timeout_s),
        )
        self._runner = asyncio.get_running_loop().create_task(
            self._keep_connected(), name=f"silo-link-{self._party}-{self.peer}"
        )

    def peer_finished(self) -> None:
        """The peer said goodbye: its channel closing next is expected, not a loss."""
        self._finished = True
        self._settled.set()

    async def wait_connected(self, timeout: float) -> bool:
        """Wait until the peer's listener answers; ``False`` on timeout or once the link is over
        (the peer finished, was lost or refused us, or we are closing)."""
        if self._connected.is_set():
            return True
        waiters = [
            asyncio.ensure_future(self._connected.wait()),
            asyncio.ensure_future(self._settled.wait()),
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
        self._settled.set()
        self._fail_answers(_Broken("closing"))
        try:
            if self._ws is not None:
                await asyncio.wait_for(self._ws.close(), 1.0)
        except (OSError, asyncio.TimeoutError, aiohttp.ClientError):
            pass
        finally:
            if self._runner is not None:
                self._runner.cancel()
                await asyncio.gather(self._runner, return_exceptions=True)
            if self._session is not None:
                await self._session.close()

    async def send(self, frame: OutFrame, *, control: bool = False) -> None:
        """Deliver ``frame`` and wait for the peer's acknowledgement.

        Raises :class:`FrameRejected` if the peer refused it and :class:`SendingFailure` if it
        was not acknowledged within ``timeout_in_ms`` after the retries. Cancellation abandons
        the frame.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._comm.timeout_s
        policy = self._comm.retry_policy
        object_id = frame.header.object_id if frame.header.kind in (Kind.DATA, Kind.ERROR) else None
        attempt = 0
        while True:
            attempt += 1
            try:
                await self._ready(deadline, object_id)
                remaining = max(deadline - loop.time(), 0.001)
                if control:
                    await self._post(CONTROL_PATH, frame, remaining)
                elif frame.nbytes > INLINE_LIMIT:
                    await self._post(DATA_PATH, frame, remaining)
                else:
                    await self._send_inline(frame, remaining)
                return
            except asyncio.TimeoutError:
                raise self._failure(
                    f"no acknowledgement within {self._comm.timeout_in_ms} ms", object_id
                ) from None
            except (_Broken, aiohttp.ClientError, OSError) as exc:
                if self._gone is not None:
                    raise self._failure(self._gone, object_id) from exc
                if attempt >= policy.max_attempts:
                    raise self._failure(
                        f"still failing after {attempt} attempts: {exc!r}", object_id
                    ) from exc
                delay = policy.backoff_s(attempt)
                if loop.time() + delay >= deadline:
                    raise self._failure(
                        f"no acknowledgement within {self._comm.timeout_in_ms} ms: {exc!r}",
                        object_id,
                    ) from exc
                await asyncio.sleep(delay)

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

    async def _ready(self, deadline: float, object_id: tuple[int, int] | None) -> None:
        """Return once the websocket is up; raise if the link is over or the deadline passes."""
        self._raise_if_over(object_id)
        if self._connected.is_set():
            return
        remaining = deadline - asyncio.get_running_loop().time()
        if remaining > 0 and await self.wait_connected(remaining):
            return
        self._raise_if_over(object_id)
        raise self._failure(
            f"{self.peer!r} did not answer within {self._comm.timeout_in_ms} ms", object_id
        )

    def _raise_if_over(self, object_id: tuple[int, int] | None) -> None:
        if self._refusal is not None:
            raise self._failure(self._refusal, object_id, rejected=True)
        if self._gone is not None:
            raise self._failure(self._gone, object_id)
        if self._closing:
            raise self._failure("this party is shutting down", object_id)
        if self._finished and not self._connected.is_set():
            raise self._failure(f"{self.peer!r} has shut down", object_id)

    async def _send_inline(self, frame: OutFrame, timeout: float) -> None:
        ws = self._ws
        if ws is None or ws.closed:
            raise _Broken("websocket not open")
        msg_id = frame.header.msg_id
        loop = asyncio.get_running_loop()
        answer: asyncio.Future[Header] = loop.create_future()
        self._answers[msg_id] = answer
        # One timer rather than asyncio.wait_for: this is the hot path of every small frame.
        timer = loop.call_later(timeout, _expire, answer)
        try:
            await ws.send_bytes(frame.join())
            header = await answer
        finally:
            timer.cancel()
            self._answers.pop(msg_id, None)
        if header.kind is Kind.REJECT:
            raise self._failure(str(header.extra), frame.header.object_id, rejected=True)

    async def _post(self, path: str, frame: OutFrame, timeout: float) -> None:
        assert self._session is not None
        data: bytes | AsyncIterator[bytes | memoryview]
        if frame.nbytes <= INLINE_LIMIT:
            data = frame.join()
        else:
            data = _stream(frame)
        async with self._session.post(
            self._base + path,
            data=data,
            headers={
                "Content-Length": str(frame.nbytes),
                HEADER_OBJECT: f"{frame.header.seq},{frame.header.index}",
                "Content-Type": "application/octet-stream",
            },
            timeout=aiohttp.ClientTimeout(total=timeout),
        ) as resp:
            body = await resp.read()
            if resp.status in _REFUSED_STATUSES:
                text = body.decode("utf-8", "replace")
                raise self._failure(text, frame.header.object_id, rejected=True)
            if resp.status != 200:
                raise _Broken(f"HTTP {resp.status} from {self.peer!r}")
        try:
            header, _ = decode_frame(body)
        except ProtocolError as exc:
            raise _Broken(f"malformed answer from {self.peer!r}: {exc}") from exc
        if header.kind is Kind.REJECT:
            raise self._failure(str(header.extra), frame.header.object_id, rejected=True)

    async def _keep_connected(self) -> None:
        """Connect, read answers until the websocket closes, and reconnect while it makes sense."""
        assert self._session is not None
        policy = self._comm.retry_policy
        attempt = 0
        first_refusal = 0.0
        started = asyncio.get_running_loop().time()
        while not self._closing:
            try:
                ws = await self._session.ws_connect(
                    self._base + WS_PATH,
                    autoping=True,
                    heartbeat=_HEARTBEAT_S,
                    compress=0,
                    max_msg_size=0,
                )
            except aiohttp.WSServerHandshakeError as exc:
                attempt += 1
                if exc.status in _REFUSED_STATUSES:
                    now = asyncio.get_running_loop().time()
                    first_refusal = first_refusal or now
                    if now - first_refusal >= self._refusal_grace:
                        why = exc.headers.get(HEADER_REFUSAL) if exc.headers else None
                        self._refusal = f"{self.peer!r} refused the channel: {why or exc.status}"
                        self._log.error("%s", self._refusal)
                        self._fail_answers(_Broken(self._refusal))
                        self._settled.set()
                        return
                    await asyncio.sleep(min(policy.backoff_s(attempt), 0.1))
                    continue
            except (aiohttp.ClientError, OSError) as exc:
                if self._ever_connected and not self._finished:
                    self._lose(
                        f"the connection to {self.peer!r} was lost and it no longer "
                        f"listens ({exc.__class__.__name__})"
                    )
                    return
                attempt += 1
                self._check_silence(started)
            else:
                self._log.debug("connected to %s after %d failed attempts", self.peer, attempt)
                attempt = 0
                self._ws = ws
                self._ever_connected = True
                self._connected.set()
                await self._read_answers(ws)
                self._log.debug("websocket to %s closed (%s)", self.peer, ws.close_code)
                self._connected.clear()
                self._ws = None
                self._fail_answers(_Broken("websocket closed"))
                if ws.close_code == CLOSE_GOODBYE and not self._closing:
                    self.peer_finished()
                    self._events.deliver_goodbye(self.peer)
                if self._finished:
                    return
                continue
            await asyncio.sleep(_connect_backoff(attempt, policy.max_backoff_ms))

    def _check_silence(self, started: float) -> None:
        """Tell the runtime once if the peer never answered within ``timeout_in_ms``."""
        if self._ever_connected or self._silence_reported:
            return
        if asyncio.get_running_loop().time() - started >= self._comm.timeout_s:
            self._silence_reported = True
            self._events.peer_silent(
                self.peer, f"{self.peer} did not answer within {self._comm.timeout_in_ms} ms"
            )

    async def _read_answers(self, ws: aiohttp.ClientWebSocketResponse[bool]) -> None:
        async for msg in ws:
            if msg.type is not aiohttp.WSMsgType.BINARY:
                continue
            try:
                header, _ = decode_frame(msg.data)
            except ProtocolError as exc:
                self._log.warning("malformed answer from %s: %s", self.peer, exc)
                continue
            answer = self._answers.get(header.msg_id)
            if answer is not None and not answer.done():
                answer.set_result(header)

    def _fail_answers(self, exc: Exception) -> None:
        for answer in self._answers.values():
            if not answer.done():
                answer.set_exception(exc)
        self._answers.clear()

    def _lose(self, why: str) -> None:
        self._gone = why
        self._settled.set()
        self._fail_answers(_Broken(why))
        self._events.peer_lost(self.peer, why)


def _expire(answer: asyncio.Future[Header]) -> None:
    if not answer.done():
        answer.set_exception(asyncio.TimeoutError())


def _connect_backoff(attempt: int, max_backoff_ms: int) -> float:
    """Waiting for a peer to start listening: poll fast at first (a refused connection on the
    same network costs little), then back off to ``max_backoff_ms``."""
    delay: float = _CONNECT_BACKOFF_S * 2.0 ** max(0, attempt - 1)
    return min(delay, max(max_backoff_ms / 1000, _CONNECT_BACKOFF_S))


async def _stream(frame: OutFrame) -> AsyncIterator[bytes | memoryview]:
    """The frame's parts in slices, so the socket buffer never holds a whole large buffer."""
    yield frame.head
    for segment in frame.segments:
        view = memoryview(segment).cast("B")
        for start in range(0, len(view), _STREAM_CHUNK):
            yield view[start : start + _STREAM_CHUNK]
