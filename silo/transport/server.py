"""The receiving side of the channel: one aiohttp server per party.

Three routes:

* ``WS_PATH``: a websocket per peer carrying small frames; each is answered ACK or REJECT.
* ``DATA_PATH``: one large DATA frame per request, read straight into per-buffer memory.
* ``CONTROL_PATH``: error and abort frames, on a path of their own so they never wait
  behind data.

Anything that arrives from a peer tells the shared :class:`~silo.peers.Peers` it was heard; this
side of each websocket sends the peer a heartbeat every ``heartbeat_interval_ms``. A frame is
delivered once per ``(source party, msg_id)``: a replay after a reconnection is acknowledged
again but not delivered again. A GOODBYE frame marks its sender finished.

Every request names its job and party in headers; a request or frame of another job is refused
with a message naming both jobs. With TLS, the party a request claims to be must be one its
connection's certificate names (:class:`~silo.transport.tls.PeerTrust`); without TLS it is taken
from the header. Every frame's source must be the connection's party, checked before anything
else about the frame (duplicate detection included). An impostor is refused and logged once;
nothing it sends reaches the runtime or the peer table, so it can neither fail objects nor end
the job. A body larger than ``messages_max_size_in_bytes`` is refused from its announced length,
before it is read.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
import time
import weakref
from typing import Any

from aiohttp import WSMsgType, web

from ..activity import activity_map, note_activity
from ..config import Address, CrossSiloCommConfig
from ..errors import (
    AddressInUseError,
    FrameRejected,
    ProtocolError,
    SerializationError,
    TransportError,
)
from ..intake import Verdict
from ..peers import LinkEvent, Peers
from ..stats import Counters
from ..tracing import Tracing
from ..wire import (
    CLOSE_ABORT,
    CLOSE_GOODBYE,
    Header,
    Kind,
    ObjectId,
    decode_data,
    decode_frame,
    encode_control,
)
from .acks import AckBatch
from .base import (
    BULK_PATH,
    CONTROL_PATH,
    DATA_PATH,
    HEADER_OBJECT,
    HEADER_PARTY,
    WS_MAX_MESSAGE,
    WS_PATH,
    FrameSink,
)
from .bulk import receive_body
from .gate import Gate, refusal_response
from .prefault import PrefaultSlots
from .stream import BulkListener
from .tls import PeerTrust

__all__ = ["Server"]

_CONTROL_MAX = 1 << 20
_SHUTDOWN_GRACE = 2.0


class Server:
    """This party's listener. ``start`` binds; ``aclose`` is idempotent."""

    def __init__(
        self,
        *,
        party: str,
        job: str,
        peers: set[str],
        address: Address,
        sink: FrameSink,
        comm: CrossSiloCommConfig,
        log: logging.LoggerAdapter[Any],
        trust: PeerTrust | None = None,
        sock: socket.socket | None = None,
        peer_table: Peers | None = None,
        counters: Counters | None = None,
        tracing: Tracing | None = None,
    ) -> None:
        self._tracing = tracing
        #: This party's counters (:mod:`silo.stats`); a server used alone keeps its own.
        self._counters = counters if counters is not None else Counters()
        #: The runtime's shared peer states; a server used alone keeps its own.
        self._peer_table = peer_table or Peers(
            peers, timeout_s=comm.timeout_s, clock=time.monotonic
        )
        self._party = party
        self._job = job
        self._peers = peers
        self._address = address
        self._sink = sink
        self._comm = comm
        self._log = log
        self._trust = trust
        self._ssl = trust.server_context if trust is not None else None
        self._sock = sock
        self._runner: web.AppRunner | None = None
        #: Every peer's open websocket, with the ACKs owed on it.
        self._sockets: weakref.WeakKeyDictionary[web.WebSocketResponse, AckBatch] = (
            weakref.WeakKeyDictionary()
        )
        self._prefault_slots = PrefaultSlots()
        self._closed = False
        self._gate = Gate(
            party=party,
            job=job,
            peers=peers,
            peer_table=self._peer_table,
            log=log,
            trust=trust,
            timeout_s=comm.timeout_s,
        )
        self._bulk = BulkListener(
            refuse=self._gate.refuse,
            heard=lambda peer: self._peer_table.heard(peer, outgoing=False),
            on_frame=self._stream_frame,
            on_whole=self._stream_whole,
            on_too_large=self._stream_too_large,
            limit=comm.messages_max_size_in_bytes,
            timeout=comm.timeout_s,
            log=log,
            slots=self._prefault_slots,
        )

    async def start(self) -> None:
        """Bind and listen. Raises :class:`AddressInUseError` naming the address if it is taken."""
        app = web.Application(client_max_size=_CONTROL_MAX)
        app.router.add_get(WS_PATH, self._handle_ws)
        app.router.add_post(DATA_PATH, self._handle_data)
        app.router.add_post(CONTROL_PATH, self._handle_control)
        app.router.add_get(BULK_PATH, self._bulk.handle)
        runner = web.AppRunner(
            app, handle_signals=False, access_log=None, shutdown_timeout=_SHUTDOWN_GRACE
        )
        await runner.setup()
        site: web.BaseSite
        if self._sock is not None:
            site = web.SockSite(runner, self._sock, ssl_context=self._ssl)
        else:
            site = web.TCPSite(
                runner,
                self._address.host,
                self._address.port,
                ssl_context=self._ssl,
                reuse_address=True,
            )
        try:
            await site.start()
        except OSError as exc:
            await runner.cleanup()
            if exc.errno == errno.EADDRINUSE:
                raise AddressInUseError(
                    f"party {self._party!r} cannot listen on {self._address}: "
                    f"the address is already in use"
                ) from exc
            raise TransportError(
                f"party {self._party!r} cannot listen on {self._address}: {exc}"
            ) from exc
        self._runner = runner

    async def aclose(self, *, goodbye: bool = True) -> None:
        """Close every peer's websocket, then the listener. Idempotent.

        The close code (``CLOSE_GOODBYE`` with ``goodbye``, else ``CLOSE_ABORT``) is informative
        only: peers learn of a clean end from the GOODBYE frame sent before.
        """
        if self._closed:
            return
        self._closed = True
        code = CLOSE_GOODBYE if goodbye else CLOSE_ABORT

        async def close(ws: web.WebSocketResponse, acks: AckBatch) -> None:
            try:
                await asyncio.wait_for(acks.drain(), 1.0)
                await asyncio.wait_for(ws.close(code=code, message=b"silo shutdown"), 1.0)
            except (OSError, asyncio.TimeoutError, RuntimeError):
                pass

        await asyncio.gather(*(close(ws, acks) for ws, acks in list(self._sockets.items())))
        self._bulk.close()
        if self._runner is not None:
            await self._runner.cleanup()

    def _dispatch(
        self,
        header: Header,
        peer: str,
        value: object = None,
        decode_error: SerializationError | None = None,
        size: int = 0,
        checked: bool = False,
    ) -> str | None:
        """Hand a frame of ``size`` bytes that arrived on ``peer``'s connection to the runtime
        (its job and source already ``checked``, or checked here first). Returns a reason to
        refuse it, or ``None``."""
        if not checked:
            if header.job != self._job:
                return self._gate.job_mismatch(header.job)
            impostor = self._gate.impostor(header, peer)
            if impostor is not None:
                return impostor
        if header.msg_id and not self._peer_table.accept(header.src, header.msg_id):
            return None
        if self._tracing is not None:
            self._tracing.received(header)
        sink = self._sink
        if header.kind is Kind.ERROR:
            verdict, reason = self._admit(header.src, header.object_id, size)
            if verdict is not Verdict.STORE:
                return reason
        if header.kind is Kind.DATA:
            if decode_error is not None:
                sink.deliver_refused(header.src, header.object_id, decode_error)
                return f"party {self._party!r} refused object {header.object_id}: {decode_error}"
            sink.deliver_data(header.src, header.object_id, value, header.call)
        elif header.kind is Kind.ERROR:
            sink.deliver_error(header.src, header.object_id, header.error_info(), header.call)
        elif header.kind is Kind.ABORT:
            sink.deliver_abort(header.src, header.error_info())
        elif header.kind is Kind.GOODBYE:
            self._log.debug("%s finished", header.src)
            reason = f"{header.src} shut down before sending what {self._party} awaits"
            self._peer_table.fire(header.src, LinkEvent.GOODBYE, reason)
        else:
            return f"unexpected {header.kind.name} frame"
        return None

    def _too_large(self, length: int) -> str:
        limit = self._comm.messages_max_size_in_bytes
        return (
            f"a frame of {length} bytes exceeds party {self._party!r}'s "
            f"messages_max_size_in_bytes ({limit})"
        )

    def _refuse_object(self, src: str, object_id: ObjectId, reason: str) -> None:
        """The object will not arrive: fail it here too, so nobody waits for it (unless
        nothing here will ever ask for it)."""
        if self._admit(src, object_id, 0)[0] is Verdict.STORE:
            self._sink.deliver_refused(
                src, object_id, FrameRejected(reason, peer=src, object_id=object_id)
            )

    def _admit(self, src: str, object_id: ObjectId, size: int) -> tuple[Verdict, str | None]:
        """Whether the runtime keeps what a frame carries for ``object_id``: the verdict and,
        for a refusal, the reason to answer with (a drop is answered ACK)."""
        admission = self._sink.admit(src, object_id, size)
        if admission.verdict is Verdict.DROP:
            self._log.debug("dropped object %s from %s: %s", object_id, src, admission.reason)
        refusal = admission.reason if admission.verdict is Verdict.REFUSE else None
        return admission.verdict, refusal

    def _receive_inline(self, frame: bytes, peer: str) -> tuple[Kind, int, str | None]:
        """Decode and dispatch one whole frame from ``peer``'s connection; returns
        ``(kind, msg_id, refusal or None)``.

        A heartbeat returns msg_id 0: it is not answered.
        """
        header, body = decode_frame(frame)
        kind = header.kind
        if kind is Kind.HEARTBEAT:
            note_activity(self._peer_table, peer, header.extra, self._log)
            return kind, 0, None
        count = self._counters.peer(peer)
        count.frames_received += 1
        count.bytes_received += len(frame)
        if kind is not Kind.DATA:
            return kind, header.msg_id, self._dispatch(header, peer, size=len(frame))
        return kind, header.msg_id, self._deliver_data(header, body, len(frame), peer)

    def _deliver_data(self, header: Header, body: Any, size: int, peer: str) -> str | None:
        """Check, decode and dispatch a DATA frame of ``size`` bytes from ``peer``'s connection;
        returns a refusal or None.

        A frame of ``peer`` over the size limit, or one the allow-list refuses, also fails the
        object here.
        """
        if header.job != self._job:
            return self._gate.job_mismatch(header.job)
        impostor = self._gate.impostor(header, peer)
        if impostor is not None:
            return impostor
        if size > self._comm.messages_max_size_in_bytes:
            reason = self._too_large(size)
            self._refuse_object(header.src, header.object_id, reason)
            return reason
        verdict, refusal = self._admit(header.src, header.object_id, size)
        if verdict is not Verdict.STORE:
            return refusal
        try:
            value = decode_data(header, body, self._comm.serializing_allowed_list)
        except SerializationError as exc:
            return self._dispatch(header, peer, decode_error=exc, checked=True)
        return self._dispatch(header, peer, value, checked=True)

    def _answer(self, msg_id: int, refusal: str | None) -> bytes:
        if refusal is None:
            return encode_control(Kind.ACK, self._job, self._party, msg_id).head
        if not self._gate.warned(refusal):
            self._log.warning("refused a frame: %s", refusal)
        return encode_control(Kind.REJECT, self._job, self._party, msg_id, extra=refusal).head

    async def _handle_ws(self, request: web.Request) -> web.StreamResponse:
        refusal = self._gate.refuse(request)
        if refusal is not None:
            self._gate.note_refusal(request, refusal)
            return refusal
        ws = web.WebSocketResponse(max_msg_size=WS_MAX_MESSAGE, compress=False, autoping=True)
        await ws.prepare(request)
        acks = self._sockets[ws] = AckBatch(ws, self._job, self._party)
        peer = request.headers[HEADER_PARTY]
        self._peer_table.heard(peer, outgoing=False)
        beats = asyncio.get_running_loop().create_task(self._heartbeats(ws))
        try:
            async for msg in ws:
                if msg.type is not WSMsgType.BINARY:
                    if msg.type is WSMsgType.ERROR:
                        self._log.warning("websocket from %s failed: %s", peer, ws.exception())
                    continue
                self._peer_table.heard(peer, outgoing=False)
                try:
                    kind, msg_id, refusal_text = self._receive_inline(msg.data, peer)
                except ProtocolError as exc:
                    self._log.warning("malformed frame from %s, closing its channel: %s", peer, exc)
                    await ws.close(code=1002, message=str(exc)[:120].encode())
                    break
                if msg_id == 0:
                    continue
                if kind is Kind.DATA and refusal_text is None:
                    acks.add(msg_id)
                    continue
                acks.flush()
                try:
                    await ws.send_bytes(self._answer(msg_id, refusal_text))
                except ConnectionError:
                    break
        finally:
            acks.close()
            beats.cancel()
            await asyncio.gather(beats, return_exceptions=True)
        return ws

    async def _heartbeats(self, ws: web.WebSocketResponse) -> None:
        """This side's heartbeat on a peer's websocket, every ``heartbeat_interval_ms`` (the
        first one interval after the handshake, which the dialer already counts as heard)."""
        while not ws.closed:
            await asyncio.sleep(self._comm.heartbeat_s)
            extra = activity_map(self._counters)
            beat = encode_control(Kind.HEARTBEAT, self._job, self._party, extra=extra).head
            try:
                await ws.send_bytes(beat)
            except (ConnectionError, RuntimeError):
                return

    async def _handle_data(self, request: web.Request) -> web.StreamResponse:
        refusal = self._gate.refuse(request)
        if refusal is not None:
            return refusal
        self._peer_table.heard(request.headers[HEADER_PARTY], outgoing=False)
        length = request.content_length
        limit = self._comm.messages_max_size_in_bytes
        if length is None:
            return web.Response(status=411, text="a data frame needs a Content-Length")
        if length > limit:
            text = self._too_large(length)
            self._log.warning("refused a frame: %s", text)
            object_id = _object_id(request.headers.get(HEADER_OBJECT, ""))
            if object_id is not None:
                self._refuse_object(request.headers[HEADER_PARTY], object_id, text)
            return refusal_response(413, text)
        transport = request.transport
        if transport is None:
            return web.Response(status=400, text="connection closed")
        try:
            header, parts = await receive_body(
                transport,
                request.protocol,
                request.content.read_nowait(),
                length,
                timeout=self._comm.timeout_s,
                slots=self._prefault_slots,
            )
        except ProtocolError as exc:
            self._log.warning(
                "dropped a data frame from %s: %s", request.headers.get(HEADER_PARTY), exc
            )
            return _closing(web.Response(status=400, text=str(exc)), request)
        peer = request.headers[HEADER_PARTY]
        impostor = self._gate.impostor(header, peer)
        if impostor is not None:
            return _closing(refusal_response(403, impostor), request)
        count = self._counters.peer(peer)
        count.frames_received += 1
        count.bytes_received += length
        refusal_text = self._deliver_data(header, parts, length, peer)
        return _closing(web.Response(body=self._answer(header.msg_id, refusal_text)), request)

    def _stream_frame(self, header: Header, parts: list[Any], size: int, peer: str) -> bytes:
        """A whole DATA frame off ``peer``'s bulk stream: the answer to write back."""
        self._peer_table.heard(peer, outgoing=False)
        count = self._counters.peer(peer)
        count.frames_received += 1
        count.bytes_received += size
        return self._answer(header.msg_id, self._deliver_data(header, parts, size, peer))

    def _stream_whole(self, frame: bytes, msg_id: int, peer: str) -> bytes:
        """A small frame read whole off ``peer``'s stream (a control stream's ERROR or ABORT):
        handled as on the websocket; the answer to write back."""
        self._peer_table.heard(peer, outgoing=False)
        try:
            _, msg_id, refusal = self._receive_inline(frame, peer)
        except ProtocolError as exc:
            refusal = f"malformed frame: {exc}"
        return self._answer(msg_id, refusal)

    def _stream_too_large(self, size: int, msg_id: int, object_id: ObjectId, peer: str) -> bytes:
        self._peer_table.heard(peer, outgoing=False)
        text = self._too_large(size)
        self._refuse_object(peer, object_id, text)
        return self._answer(msg_id, text)

    async def _handle_control(self, request: web.Request) -> web.StreamResponse:
        refusal = self._gate.refuse(request)
        if refusal is not None:
            return refusal
        self._peer_table.heard(request.headers[HEADER_PARTY], outgoing=False)
        if (request.content_length or 0) > _CONTROL_MAX:
            return web.Response(status=413, text="control frame too large")
        try:
            body = await asyncio.wait_for(request.read(), self._comm.timeout_s)
        except asyncio.TimeoutError:
            text = f"control frame incomplete after {self._comm.timeout_in_ms} ms"
            self._log.warning(
                "dropped a control frame from %s: %s", request.headers[HEADER_PARTY], text
            )
            return _closing(web.Response(status=408, text=text), request)
        try:
            header, _ = decode_frame(body)
            if header.kind is Kind.DATA:
                raise ProtocolError("data frames do not belong on the control path")
        except ProtocolError as exc:
            return web.Response(status=400, text=str(exc))
        peer = request.headers[HEADER_PARTY]
        impostor = self._gate.impostor(header, peer)
        if impostor is not None:
            return refusal_response(403, impostor)
        count = self._counters.peer(peer)
        count.frames_received += 1
        count.bytes_received += len(body)
        refusal_text = self._dispatch(header, peer, size=len(body))
        return web.Response(body=self._answer(header.msg_id, refusal_text))


def _object_id(text: str) -> ObjectId | None:
    seq, _, index = text.partition(",")
    if seq.isdigit() and index.isdigit():
        return (int(seq), int(index))
    return None


def _closing(response: web.Response, request: web.Request) -> web.Response:
    """The answer to a request whose body was read outside aiohttp's parser: aiohttp is told the
    body is over, and the connection is closed after the answer rather than reused."""
    request.content.feed_eof()
    response.force_close()
    return response
