"""The channel between parties: an aiohttp server per party and a :class:`PeerLink` per peer.

:class:`TcpTransport` is the real implementation of :class:`~silo.transport.base.Transport`; the
in-memory one of ``silo.simulate`` is :mod:`silo.transport.memory`.

The transport also watches the peers' silence: every ``heartbeat_interval_ms`` its monitor asks
the shared :class:`~silo.peers.Peers` which live peer has not been heard from for
``timeout_in_ms`` and declares it lost.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from typing import Any

from ..config import Address, CrossSiloCommConfig, TLSConfig
from ..errors import SendingFailure
from ..peers import Peers
from ..stats import Counters
from ..tracing import Tracing
from ..wire import (
    ErrorInfo,
    Kind,
    ObjectId,
    OutFrame,
    encode_control,
    encode_data,
)
from .base import FrameSink, Transport, TransportFactory
from .link import PeerLink
from .server import Server
from .tls import PeerTrust

__all__ = ["FrameSink", "PeerLink", "Server", "TcpTransport", "Transport", "TransportFactory"]


class TcpTransport:
    """This party's server and its links to every peer. ``aclose`` is idempotent."""

    def __init__(
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
    ) -> None:
        self._party = party
        self._job = job
        self._comm = comm
        self._log = log
        self.peer_table = peer_table
        self._monitor: asyncio.Task[None] | None = None
        self._tracing = tracing
        peers = {p: a for p, a in addresses.items() if p != party}
        counters = counters if counters is not None else Counters()
        trust = PeerTrust(tls, party=party, parties=addresses, log=log) if tls else None
        self.server = Server(
            party=party,
            job=job,
            peers=set(peers),
            address=addresses[party],
            sink=sink,
            comm=comm,
            log=log,
            peer_table=peer_table,
            trust=trust,
            sock=sock,
            counters=counters,
            tracing=tracing,
        )
        self.links = {
            p: PeerLink(
                party=party,
                job=job,
                peer=p,
                address=a,
                comm=comm,
                log=log,
                peers=peer_table,
                ssl_context=trust.client_context(p, a) if trust else None,
                counters=counters,
            )
            for p, a in peers.items()
        }

    async def start(self) -> None:
        """Listen, then start connecting to every peer in the background."""
        await self.server.start()
        for link in self.links.values():
            link.start()
        self._monitor = asyncio.get_running_loop().create_task(
            self.peer_table.watch(self._comm.heartbeat_s), name=f"silo-monitor-{self._party}"
        )

    async def send_data(
        self, peer: str, object_id: ObjectId, value: object, call: str = ""
    ) -> None:
        """Send ``value``, produced by the call named ``call`` (its fingerprint), to ``peer``."""
        link = self.links[peer]
        frame = encode_data(self._job, self._party, link.next_msg_id(), object_id, value, call)
        await self._send(link, frame)

    async def _send(self, link: PeerLink, frame: OutFrame, *, control: bool = False) -> None:
        """Send ``frame`` on ``link``, as a traced send when tracing is on (:mod:`silo.tracing`)."""
        if self._tracing is None:
            await link.send(frame, control=control)
        else:
            await self._tracing.send(frame, link.peer, lambda f: link.send(f, control=control))

    async def send_error(
        self, peer: str, object_id: ObjectId, info: ErrorInfo, call: str = ""
    ) -> None:
        link = self.links[peer]
        frame = encode_control(
            Kind.ERROR,
            self._job,
            self._party,
            link.next_msg_id(),
            object_id,
            info.to_wire(call),
        )
        await self._send(link, frame, control=True)

    async def send_abort(self, peer: str, info: ErrorInfo) -> None:
        link = self.links[peer]
        frame = encode_control(
            Kind.ABORT, self._job, self._party, link.next_msg_id(), extra=info.to_wire()
        )
        await link.send(frame, control=True)

    async def say_goodbye(self, timeout: float) -> None:
        """Tell every peer still up that this party finished; each GOODBYE is acknowledged.

        Only peers whose link is open right now are told (the others were never reached or are
        reconnecting: they will see this party lost after ``timeout_in_ms``). Bounded by
        ``timeout``; a peer that cannot be told is logged.
        """

        async def one(peer: str) -> None:
            link = self.links[peer]
            frame = encode_control(Kind.GOODBYE, self._job, self._party, link.next_msg_id())
            try:
                await asyncio.wait_for(link.send(frame), timeout)
            except (SendingFailure, asyncio.TimeoutError) as exc:
                self._log.info("could not say goodbye to %s: %r", peer, exc)

        table = self.peer_table
        await asyncio.gather(*(one(p) for p in table.live() if self.links[p].connected))

    async def wait_peers(self, timeout: float) -> list[str]:
        """Wait until every peer's listener answered; returns the peers that did not in time."""
        results = await asyncio.gather(
            *(link.wait_connected(timeout) for link in self.links.values())
        )
        return [p for p, ok in zip(self.links, results, strict=True) if not ok]

    async def aclose(self, *, goodbye: bool = True) -> None:
        """Close links, then the server (saying goodbye if ``goodbye``); every step runs even if
        one fails."""
        errors: list[BaseException] = []
        if self._monitor is not None:
            self._monitor.cancel()
            await asyncio.gather(self._monitor, return_exceptions=True)
        for link in self.links.values():
            try:
                await link.aclose()
            except Exception as exc:
                errors.append(exc)
        try:
            await self.server.aclose(goodbye=goodbye)
        except Exception as exc:
            errors.append(exc)
        if errors:
            raise errors[0]
