"""The in-memory transport of ``silo.simulate``: each party's :class:`MemoryTransport`, joined to
the others by a switchboard (:class:`silo.transport.hub.Hub`).

No sockets and no threads: a frame a party sends is encoded by :mod:`silo.wire` as for the real
channel, its body copied (so the receiver never shares an object with the sender), and handed to
the hub, which delivers it in order into the receiver's
:class:`~silo.transport.base.FrameSink`, through the same checks as the real server: the size
limit, the runtime's admission, the restricted unpickler with ``serializing_allowed_list`` (a
refused value fails the object there and is answered REJECT, so the sender raises
:class:`~silo.errors.FrameRejected`), duplicate ids. The sender's ``send_*`` returns once the frame
was delivered.

Peer states go through each party's :class:`~silo.peers.Peers` table with the real events: a
party's peers are heard (``UP``) when both have joined the hub; every ``heartbeat_interval_ms``
each party is heard by its peers (and they learn what it reports doing, :mod:`silo.activity`); a
GOODBYE frame marks its sender ``FINISHED``; a silent peer is declared ``LOST`` by each party's
monitor after ``timeout_in_ms``, as by the real transport. Frames and bytes are counted in the
same :class:`~silo.stats.Counters`, with the lengths the real frames would have.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Sequence
from typing import Any, Protocol

from ..activity import note_activity
from ..config import CrossSiloCommConfig
from ..errors import FrameRejected, SendingFailure, SerializationError
from ..intake import Verdict
from ..peers import LinkEvent, LinkState, Peers
from ..stats import Counters
from ..tracing import Tracing
from ..wire import (
    ErrorInfo,
    Header,
    Kind,
    ObjectId,
    OutFrame,
    decode_data,
    encode_control,
    encode_data,
)
from .base import FrameSink

__all__ = ["Frame", "MemoryTransport", "Switchboard"]


class Frame:
    """One frame on its way: the sender, the copied body, and the future of its answer (``None``
    for ACK, the reason for REJECT)."""

    __slots__ = ("answer", "attempts", "control", "dst", "header", "nbytes", "parts", "sender")

    def __init__(
        self,
        sender: MemoryTransport,
        dst: str,
        frame: OutFrame,
        answer: asyncio.Future[str | None],
        control: bool,
    ) -> None:
        self.sender = sender
        self.dst = dst
        self.header = frame.header
        segments = frame.segments
        # The only copy: the receiver rebuilds its value over these private, writable buffers.
        self.parts: list[Any] = [bytes(s) for s in segments[:1]]
        self.parts.extend(bytearray(s) for s in segments[1:])
        self.nbytes = frame.nbytes
        self.answer = answer
        self.control = control
        self.attempts = 1

    @property
    def src(self) -> str:
        return self.sender.party


class Switchboard(Protocol):
    """What a :class:`MemoryTransport` asks of its hub (:class:`silo.transport.hub.Hub`)."""

    def join(self, member: MemoryTransport) -> None:
        """``member`` starts: it and the parties already there hear each other."""

    def leave(self, member: MemoryTransport) -> None:
        """``member`` closed: frames for it are lost from now on."""

    def post(self, frame: Frame) -> None:
        """Route ``frame`` (first write or retry); its answer is set once delivered."""

    def beat(self, member: MemoryTransport) -> None:
        """``member``'s heartbeat reaches its peers."""

    def reachable(self, party: str) -> bool:
        """Whether frames to ``party`` can be delivered now."""

    async def wait_joined(self, parties: Sequence[str], timeout: float) -> list[str]:
        """Wait until ``parties`` joined, ``timeout`` at most; returns those that did not."""


class MemoryTransport:
    """One party's side of a :class:`Hub`; a :class:`~silo.transport.base.Transport`.
    ``aclose`` is idempotent."""

    def __init__(
        self,
        hub: Switchboard,
        *,
        party: str,
        job: str,
        sink: FrameSink,
        comm: CrossSiloCommConfig,
        log: logging.LoggerAdapter[Any],
        peer_table: Peers,
        counters: Counters | None = None,
        tracing: Tracing | None = None,
    ) -> None:
        self._hub = hub
        self.party = party
        self._job = job
        self._sink = sink
        self.comm = comm
        self._log = log
        self.peer_table = peer_table
        self.counters = counters if counters is not None else Counters()
        self._tracing = tracing
        self._msg_ids = {p: itertools.count(1) for p in peer_table.names}
        self._pending: set[Frame] = set()
        self._tasks: list[asyncio.Task[None]] = []
        self._warned: set[str] = set()
        self._closed = False
        self._dead = False
        peer_table.subscribe(self._peer_over)

    async def start(self) -> None:
        """Join the hub and start the heartbeat and the silence monitor; returns at once."""
        loop = asyncio.get_running_loop()
        self._hub.join(self)
        if self._dead:
            return
        self._tasks = [
            loop.create_task(self._beats(), name=f"silo-beats-{self.party}"),
            loop.create_task(
                self.peer_table.watch(self.comm.heartbeat_s), name=f"silo-monitor-{self.party}"
            ),
        ]

    async def _beats(self) -> None:
        while True:
            await asyncio.sleep(self.comm.heartbeat_s)
            self._hub.beat(self)

    def hear(self, peer: str, activity: dict[str, Any] | None = None) -> None:
        """``peer`` was heard from, both ways (joined, or a heartbeat with ``activity``)."""
        if peer not in self._msg_ids or self._closed:
            return
        self.peer_table.heard(peer, outgoing=True)
        self.peer_table.heard(peer, outgoing=False)
        if activity is not None:
            note_activity(self.peer_table, peer, activity, self._log)

    # ------------------------------------------------------------------ sending

    async def send_data(
        self, peer: str, object_id: ObjectId, value: object, call: str = ""
    ) -> None:
        frame = encode_data(self._job, self.party, self._next_id(peer), object_id, value, call)
        await self._send(peer, frame)

    async def send_error(
        self, peer: str, object_id: ObjectId, info: ErrorInfo, call: str = ""
    ) -> None:
        fields = info.to_wire(call)
        frame = encode_control(
            Kind.ERROR, self._job, self.party, self._next_id(peer), object_id, fields
        )
        await self._send(peer, frame, control=True)

    async def send_abort(self, peer: str, info: ErrorInfo) -> None:
        extra = info.to_wire()
        frame = encode_control(Kind.ABORT, self._job, self.party, self._next_id(peer), extra=extra)
        await self._send(peer, frame, control=True)

    async def say_goodbye(self, timeout: float) -> None:
        """Tell every peer still up that this party finished, each bounded by ``timeout``."""

        async def one(peer: str) -> None:
            frame = encode_control(Kind.GOODBYE, self._job, self.party, self._next_id(peer))
            try:
                await asyncio.wait_for(self._send(peer, frame), timeout)
            except (SendingFailure, asyncio.TimeoutError) as exc:
                self._log.info("could not say goodbye to %s: %r", peer, exc)

        live = [p for p in self.peer_table.live() if self._hub.reachable(p)]
        await asyncio.gather(*(one(p) for p in live))

    async def wait_peers(self, timeout: float) -> list[str]:
        return await self._hub.wait_joined(self.peer_table.names, timeout)

    def _next_id(self, peer: str) -> int:
        return next(self._msg_ids[peer])

    async def _send(self, peer: str, frame: OutFrame, *, control: bool = False) -> None:
        if self._tracing is None:
            await self._write(peer, frame, control)
        else:
            await self._tracing.send(frame, peer, lambda f: self._write(peer, f, control))

    async def _write(self, peer: str, frame: OutFrame, control: bool) -> None:
        """Post ``frame`` to the hub and wait for its answer; raises as the real link does.

        In a party a kill fault stopped, never returns: the runtime cancels it.
        """
        if self._dead:
            await asyncio.get_running_loop().create_future()
        if not self.peer_table.is_live(peer):
            state = self.peer_table.state(peer)
            rejected = state is LinkState.REFUSED
            raise self.failure(peer, self.peer_table.reason(peer), frame.header, rejected)
        answer: asyncio.Future[str | None] = asyncio.get_running_loop().create_future()
        out = Frame(self, peer, frame, answer, control)
        count = self.counters.peer(peer)
        count.frames_sent += 1
        count.bytes_sent += out.nbytes
        self.counters.bytes_in_flight += out.nbytes
        self._pending.add(out)
        try:
            self._hub.post(out)
            refusal = await answer
        finally:
            self.counters.bytes_in_flight -= out.nbytes
            self._pending.discard(out)
        self.peer_table.heard(peer, outgoing=True)
        if refusal is not None:
            raise self.failure(peer, refusal, frame.header, rejected=True)

    def failure(
        self, peer: str, why: str, header: Header, rejected: bool = False
    ) -> SendingFailure:
        """The error of a frame to ``peer`` that failed for ``why``, worded as the real link's."""
        object_id = header.object_id if header.kind in (Kind.DATA, Kind.ERROR) else None
        what = f"object {object_id}" if object_id is not None else "a control frame"
        cls = FrameRejected if rejected else SendingFailure
        return cls(
            f"party {self.party!r} could not send {what} to {peer!r}: {why}",
            peer=peer,
            object_id=object_id,
        )

    def _peer_over(self, peer: str, state: LinkState, reason: str) -> None:
        """The peer's state became terminal: what waits for its answer fails (unless this party
        was killed: a dead party's sends never end, the runtime cancels them)."""
        if self._dead:
            return
        for frame in list(self._pending):
            if frame.dst == peer and not frame.answer.done():
                rejected = state is LinkState.REFUSED
                frame.answer.set_exception(self.failure(peer, reason, frame.header, rejected))

    # ------------------------------------------------------------------ receiving

    def receive(self, frame: Frame) -> str | None:
        """Check, decode and hand ``frame`` to the runtime; returns a refusal or ``None``."""
        header = frame.header
        src = frame.src
        self.peer_table.heard(src, outgoing=False)
        count = self.counters.peer(src)
        count.frames_received += 1
        count.bytes_received += frame.nbytes
        if header.msg_id and not self.peer_table.accept(src, header.msg_id):
            return None
        if self._tracing is not None:
            self._tracing.received(header)
        sink = self._sink
        kind = header.kind
        if kind is Kind.DATA:
            return self._receive_data(frame)
        if kind is Kind.ERROR:
            refusal = self._admit(src, header.object_id, frame.nbytes)
            if refusal is not None:
                return refusal or None
            sink.deliver_error(src, header.object_id, header.error_info(), header.call)
        elif kind is Kind.ABORT:
            sink.deliver_abort(src, header.error_info())
        elif kind is Kind.GOODBYE:
            self._log.debug("%s finished", src)
            reason = f"{src} shut down before sending what {self.party} awaits"
            self.peer_table.fire(src, LinkEvent.GOODBYE, reason)
        return None

    def _receive_data(self, frame: Frame) -> str | None:
        header = frame.header
        src = frame.src
        limit = self.comm.messages_max_size_in_bytes
        if frame.nbytes > limit:
            reason = (
                f"a frame of {frame.nbytes} bytes exceeds party {self.party!r}'s "
                f"messages_max_size_in_bytes ({limit})"
            )
            if self._admit(src, header.object_id, 0) is None:
                error = FrameRejected(reason, peer=src, object_id=header.object_id)
                self._sink.deliver_refused(src, header.object_id, error)
            return self._refuse(reason)
        refusal = self._admit(src, header.object_id, frame.nbytes)
        if refusal is not None:
            return refusal or None
        try:
            value = decode_data(header, frame.parts, self.comm.serializing_allowed_list)
        except SerializationError as exc:
            self._sink.deliver_refused(src, header.object_id, exc)
            return self._refuse(f"party {self.party!r} refused object {header.object_id}: {exc}")
        self._sink.deliver_data(src, header.object_id, value, header.call)
        return None

    def _admit(self, src: str, object_id: ObjectId, nbytes: int) -> str | None:
        """``None`` to store what a frame carries; ``""`` to drop it (answered ACK); else the
        reason it is refused."""
        admission = self._sink.admit(src, object_id, nbytes)
        if admission.verdict is Verdict.STORE:
            return None
        if admission.verdict is Verdict.DROP:
            self._log.debug("dropped object %s from %s: %s", object_id, src, admission.reason)
            return ""
        return self._refuse(admission.reason or "refused")

    def _refuse(self, reason: str) -> str:
        if reason not in self._warned:
            self._warned.add(reason)
            self._log.warning("refused a frame: %s", reason)
        return reason

    # ------------------------------------------------------------------ ending

    def die(self, reason: str) -> None:
        """A kill fault: stop dead. Nothing leaves any more; every peer is closed here."""
        self._dead = True
        for task in self._tasks:
            task.cancel()
        for peer in self.peer_table.names:
            self.peer_table.fire(peer, LinkEvent.CLOSE, reason)

    async def aclose(self, *, goodbye: bool = True) -> None:
        """Leave the hub; what still waits for an answer fails. Idempotent."""
        if self._closed:
            return
        self._closed = True
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for peer in self.peer_table.names:
            self.peer_table.fire(peer, LinkEvent.CLOSE, "this party closed the channel")
        self._hub.leave(self)
