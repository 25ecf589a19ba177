"""What the transport and the runtime promise each other."""

from __future__ import annotations

import logging
import socket
from typing import Any, Protocol

from ..config import Address, CrossSiloCommConfig, TLSConfig
from ..errors import SiloError
from ..intake import Admission
from ..peers import Peers
from ..stats import Counters
from ..tracing import Tracing
from ..wire import PROTOCOL_VERSION, ErrorInfo, ObjectId

__all__ = [
    "CONTROL_PATH",
    "CONTROL_STREAMS",
    "DATA_PATH",
    "HEADER_JOB",
    "HEADER_OBJECT",
    "HEADER_PARTY",
    "HEADER_PROTOCOL",
    "HEADER_REFUSAL",
    "BULK_PATH",
    "BULK_STREAMS",
    "BULK_UPGRADE",
    "INLINE_LIMIT",
    "WS_MAX_MESSAGE",
    "WS_PATH",
    "FrameSink",
    "Transport",
    "TransportFactory",
]

#: The paths carry the protocol version (:data:`silo.wire.PROTOCOL_VERSION`, the one constant).
WS_PATH = f"/silo/v{PROTOCOL_VERSION}/ws"
DATA_PATH = f"/silo/v{PROTOCOL_VERSION}/data"
CONTROL_PATH = f"/silo/v{PROTOCOL_VERSION}/control"
#: Upgraded to a stream (:mod:`silo.transport.stream`): DATA frames over INLINE_LIMIT (bulk
#: streams) or control frames (control streams).
BULK_PATH = f"/silo/v{PROTOCOL_VERSION}/bulk"
BULK_UPGRADE = "silo-bulk"
#: Bulk streams a party keeps open towards one peer; a listener accepts twice as many from one
#: peer (room for streams a reconnection left behind) and answers 429 beyond, so an
#: authenticated peer cannot pile up connections.
BULK_STREAMS = 8
#: Control streams (the same upgrade; ERROR and ABORT frames) a party keeps open
#: towards one peer, apart from its bulk streams, so a control frame never waits behind a
#: large transfer.
CONTROL_STREAMS = 2
HEADER_JOB = "X-Silo-Job"
HEADER_PARTY = "X-Silo-Party"
HEADER_PROTOCOL = "X-Silo-Protocol"
HEADER_REFUSAL = "X-Silo-Refusal"
HEADER_OBJECT = "X-Silo-Object"

#: DATA frames up to this size travel as one websocket message; larger ones go on a bulk stream
#: (a long-lived connection per peer and frame in flight, read straight into each buffer's final
#: memory), so nothing large is joined, masked or copied in user space, and small frames never
#: queue behind a large transfer.
INLINE_LIMIT = 64 << 10
#: The largest websocket message a listener takes (peers before the bulk streams sent up to
#: 4 MiB inline).
WS_MAX_MESSAGE = (4 << 20) + (64 << 10)


class FrameSink(Protocol):
    """The receiving side of the runtime. Every method is synchronous and must not block."""

    def admit(self, src: str, object_id: ObjectId, nbytes: int) -> Admission:
        """Asked before a value or error of ``nbytes`` for ``object_id`` is decoded and
        delivered: store it, drop it (it will never be used), or refuse it (REJECT)."""

    def deliver_data(self, src: str, object_id: ObjectId, value: object, call: str = "") -> None:
        """A value ``src`` pushed, produced there by the call named ``call`` (``""``: unknown)."""

    def deliver_error(
        self, src: str, object_id: ObjectId, info: ErrorInfo, call: str = ""
    ) -> None: ...

    def deliver_refused(self, src: str, object_id: ObjectId, error: SiloError) -> None:
        """This party refused the object (not allowed, too large): it fails here too."""

    def deliver_abort(self, src: str, info: ErrorInfo) -> None: ...


class Transport(Protocol):
    """What the runtime asks of its channel to the peers; two implementations: the aiohttp one
    (:class:`silo.transport.TcpTransport`) and the in-memory one of ``silo.simulate``
    (:class:`silo.transport.memory.MemoryTransport`, joined by :class:`silo.transport.hub.Hub`).

    Both deliver what arrives into the runtime's :class:`FrameSink`, feed the shared
    :class:`~silo.peers.Peers` table with :class:`~silo.peers.LinkEvent` events, and count frames
    and bytes in the runtime's :class:`~silo.stats.Counters`. Values go through
    :mod:`silo.wire` both ways: what a peer receives is a copy, decoded by the restricted
    unpickler.
    """

    async def start(self) -> None:
        """Start reaching the peers in the background; returns once this party can be reached."""

    async def send_data(
        self, peer: str, object_id: ObjectId, value: object, call: str = ""
    ) -> None:
        """Send ``value`` and wait for ``peer`` to store it. Raises
        :class:`~silo.errors.SerializationError` if it cannot be encoded,
        :class:`~silo.errors.FrameRejected` if the peer refused it,
        :class:`~silo.errors.SendingFailure` once the peer is over or the retries are spent."""

    async def send_error(
        self, peer: str, object_id: ObjectId, info: ErrorInfo, call: str = ""
    ) -> None:
        """Tell ``peer`` that ``object_id`` failed; raises as :meth:`send_data`."""

    async def send_abort(self, peer: str, info: ErrorInfo) -> None:
        """Tell ``peer`` this party stopped on an error; raises as :meth:`send_data`."""

    async def say_goodbye(self, timeout: float) -> None:
        """Tell every peer still up that this party finished, bounded by ``timeout``; never
        raises for a peer that cannot be told."""

    async def wait_peers(self, timeout: float) -> list[str]:
        """Wait until every peer can be reached; returns those that could not in time."""

    async def aclose(self, *, goodbye: bool = True) -> None:
        """Stop; every frame still waiting fails. Idempotent."""


class TransportFactory(Protocol):
    """Makes a runtime's :class:`Transport` (``Runtime(transport_factory=...)``); the aiohttp
    :class:`silo.transport.TcpTransport` class is one."""

    def __call__(
        self,
        *,
        party: str,
        job: str,
        addresses: dict[str, Address],
        sink: FrameSink,
        comm: CrossSiloCommConfig,
        log: logging.LoggerAdapter[Any],
        peer_table: Peers,
        tls: TLSConfig | None = None,
        sock: socket.socket | None = None,
        counters: Counters | None = None,
        tracing: Tracing | None = None,
    ) -> Transport: ...
