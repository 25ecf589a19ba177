"""Who may speak to this party's listener: the checks every request and frame passes first.

:class:`Gate` refuses a request of another protocol version or job, or from a party that is not
a peer, or (with TLS) whose certificate does not name the party it claims to be; and a frame
whose source is not its connection's party. An identity refusal is logged once (an impostor may
retry without end). A peer of this job that keeps dialing with another job or protocol version
is refused for good after a short grace, which ends its link here too: the job cannot run.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from aiohttp import web

from ..peers import LinkEvent, Peers
from ..wire import PROTOCOL_VERSION, Header
from .base import HEADER_JOB, HEADER_PARTY, HEADER_PROTOCOL, HEADER_REFUSAL
from .tls import PeerTrust

__all__ = ["Gate", "refusal_response"]

_REFUSAL_GRACE_S = 0.5
_WARNED_MAX = 256


class Gate:
    """The listener's checks for ``party`` of ``job``, whose peers are ``peers``."""

    def __init__(
        self,
        *,
        party: str,
        job: str,
        peers: set[str],
        peer_table: Peers,
        log: logging.LoggerAdapter[Any],
        trust: PeerTrust | None,
        timeout_s: float,
    ) -> None:
        self._party = party
        self._job = job
        self._peers = peers
        self._peer_table = peer_table
        self._log = log
        self._trust = trust
        self._warned: set[str] = set()
        self._first_refusal: dict[str, float] = {}
        self._refusal_grace = min(_REFUSAL_GRACE_S, timeout_s / 8)

    def refuse(self, request: web.Request) -> web.Response | None:
        """The refusal of ``request`` (protocol, job, party, certificate), or ``None``; checked
        before anything else of it is read."""
        job = request.headers.get(HEADER_JOB)
        party = request.headers.get(HEADER_PARTY)
        protocol = request.headers.get(HEADER_PROTOCOL)
        if protocol != str(PROTOCOL_VERSION):
            return refusal_response(
                400,
                f"party {self._party!r} speaks silo protocol {PROTOCOL_VERSION}, not {protocol!r}",
            )
        if job != self._job:
            return refusal_response(409, self.job_mismatch(job))
        if party not in self._peers:
            return refusal_response(403, f"party {party!r} is not a peer of job {self._job!r}")
        if self._trust is not None:
            transport = request.transport
            ssl_object = transport.get_extra_info("ssl_object") if transport else None
            reason = self._trust.client_refusal(ssl_object, party)
            if reason is not None:
                self.warn_once(reason)
                return refusal_response(403, reason)
        return None

    def warn_once(self, text: str) -> None:
        """Log an identity refusal once; at most 256 distinct ones are remembered."""
        if len(self._warned) < _WARNED_MAX and text not in self._warned:
            self._warned.add(text)
            self._log.warning("%s", text)

    def warned(self, text: str) -> bool:
        """Whether ``text`` was already logged by :meth:`warn_once`."""
        return text in self._warned

    def impostor(self, header: Header, peer: str) -> str | None:
        """Why a frame whose source is not ``peer``, the party of its connection, is refused."""
        if header.src == peer:
            return None
        how = "whose certificate names" if self._trust else "whose X-Silo-Party header is"
        text = (
            f"refused a frame that claims to come from {header.src!r} on a connection "
            f"{how} {peer!r}"
        )
        self.warn_once(text)
        return text

    def note_refusal(self, request: web.Request, answer: web.Response) -> None:
        """A peer of this job keeps dialing with another job or protocol: the job cannot run.

        Its channel is refused for good once its handshakes have been refused for the grace
        (a peer still finishing a previous job on these ports stops sooner).
        """
        party = request.headers.get(HEADER_PARTY)
        if party not in self._peers or answer.status not in (400, 409):
            return
        if self._trust is not None:
            # Only the party itself may end its channel: a client that merely claims its name
            # (no certificate, or another party's) is refused and changes nothing.
            transport = request.transport
            ssl_object = transport.get_extra_info("ssl_object") if transport else None
            if self._trust.client_refusal(ssl_object, party) is not None:
                return
        now = asyncio.get_running_loop().time()
        first = self._first_refusal.setdefault(party, now)
        if now - first >= self._refusal_grace:
            job = request.headers.get(HEADER_JOB)
            protocol = request.headers.get(HEADER_PROTOCOL)
            reason = (
                f"{self._party} refused the channel of {party}: {party} runs job {job!r} "
                f"(protocol {protocol}), {self._party} runs job {self._job!r} "
                f"(protocol {PROTOCOL_VERSION})"
            )
            self._peer_table.fire(party, LinkEvent.REFUSED, reason)

    def job_mismatch(self, job: str | None) -> str:
        return (
            f"a frame of job {job!r} was refused by party {self._party!r}, "
            f"which runs job {self._job!r}"
        )


def refusal_response(status: int, text: str) -> web.Response:
    """A refusal whose reason is also in a header, where a websocket client can read it."""
    ascii_text = text.encode("ascii", "backslashreplace").decode("ascii")
    return web.Response(status=status, text=text, headers={HEADER_REFUSAL: ascii_text})
