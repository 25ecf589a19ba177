"""What arrives from peers, and what the runtime does when a peer is over.

The runtime's side of :class:`~silo.transport.base.FrameSink`: values, error frames, refusals,
aborts. Every method is synchronous and fast: it fills or fails futures of the object table and,
for a broken job, asks for shutdown. The state of each peer is not kept here: it lives in the
shared :class:`~silo.peers.Peers`, and :meth:`Inbound.peer_over` is its listener.

Loop thread only.
"""

from __future__ import annotations

import asyncio
from typing import Any

from .divergence import CallLog
from .errors import DivergenceError, FedRemoteError, PeerUnavailableError, SiloError
from .intake import Admission, Intake
from .log import PartyLogger
from .objects import ObjectTable, unavailable
from .peers import LinkEvent, LinkState, Peers
from .shutdown import Reason, ShutdownFuture, ShutdownRequest
from .tracebacks import headline
from .wire import ErrorInfo, ObjectId

__all__ = ["Inbound"]


class Inbound:
    """This party's :class:`~silo.transport.base.FrameSink`."""

    def __init__(
        self,
        *,
        party: str,
        log: PartyLogger,
        table: ObjectTable,
        call_log: CallLog,
        intake: Intake,
        peers: Peers,
        shutdown: ShutdownFuture,
    ) -> None:
        self._party = party
        self._log = log
        self._table = table
        self._call_log = call_log
        self._intake = intake
        self._peers = peers
        self._shutdown = shutdown
        peers.subscribe(self.peer_over)

    def admit(self, src: str, object_id: ObjectId, nbytes: int) -> Admission:
        """Whether to keep what a frame from ``src`` carries for ``object_id`` (see
        :mod:`silo.intake`): values for ids this party will never use are not kept."""
        return self._intake.admit(src, object_id, nbytes, known=object_id in self._table)

    def _store(self, src: str, object_id: ObjectId) -> asyncio.Future[Any] | None:
        entry = self._table.entry(object_id, src)
        if entry.owner != src:
            self._log.warning(
                "ignored object %s from %s: it belongs to %s", object_id, src, entry.owner
            )
            return None
        return None if entry.future.done() else entry.future

    def deliver_data(self, src: str, object_id: ObjectId, value: object, call: str = "") -> None:
        if call and self._diverges(src, object_id, call):
            return
        fut = self._store(src, object_id)
        if fut is not None:
            fut.set_result(value)

    def deliver_error(self, src: str, object_id: ObjectId, info: ErrorInfo, call: str = "") -> None:
        if call and self._diverges(src, object_id, call):
            return
        fut = self._store(src, object_id)
        if fut is None:
            return
        error = self._as_seen_here(src, info)
        fut.set_exception(error)
        if isinstance(error, PeerUnavailableError) and error.src_party != src:
            # ``src`` lost a third party: if it is silent here too, lose it now, so this
            # party's end says a peer failed whether that news or its own monitor comes first.
            self._peers.corroborate(error.src_party, src)

    def _diverges(self, src: str, object_id: ObjectId, call: str) -> bool:
        error = self._call_log.check(src, object_id, call)
        if error is None:
            return False
        self.diverged(error)
        return True

    def diverged(self, error: DivergenceError) -> None:
        """The parties' programs diverged: every pending get raises ``error``; shut down (the
        ABORT carries the message, so every party raises a DivergenceError)."""
        self._log.error("%s", error)
        self._table.fail_pending(error)
        self._request(Reason.REMOTE_ERROR, error, str(error))

    def _request(self, reason: Reason, error: BaseException, detail: str) -> None:
        self._shutdown.request(ShutdownRequest(reason, error, detail))

    def _as_seen_here(self, src: str, info: ErrorInfo) -> FedRemoteError:
        """The error an error frame from ``src`` means here.

        Another party may report *this* party lost (it was frozen, or a partition cut it off
        from a third party, who passed the news on): here the party out of reach is the one
        that reports it, never this party itself.
        """
        error = info.to_exception()
        if isinstance(error, PeerUnavailableError) and error.src_party == self._party:
            return PeerUnavailableError(
                src, f"{src} lost contact with {self._party} ({error.reason})"
            )
        if isinstance(error, DivergenceError) and error.src_party == self._party:
            return DivergenceError(src, error.message, error.seq)
        return error

    def deliver_refused(self, src: str, object_id: ObjectId, error: SiloError) -> None:
        self._log.error("object %s from %s refused: %s", object_id, src, error)
        fut = self._store(src, object_id)
        if fut is not None:
            fut.set_exception(error)

    def deliver_abort(self, src: str, info: ErrorInfo) -> None:
        """``src`` stopped on an error: every pending get raises that error; shut down."""
        error = self._as_seen_here(src, info)
        # One line per failure: the program's get (or the end of the program) raises this
        # error, and that is where it is reported; the log keeps it for debugging.
        self._log.debug("party %s aborted: %s", src, str(error).splitlines()[0])
        self._table.fail_pending(error)
        self._request(Reason.REMOTE_ERROR, error, f"{src} aborted")
        self._peers.fire(src, LinkEvent.GOODBYE, f"{src} aborted: {headline(error)}")

    def peer_over(self, peer: str, state: LinkState, reason: str) -> None:
        """The listener of :class:`~silo.peers.Peers`: ``peer`` reached a terminal ``state``.

        What this party awaits from the peer fails with :class:`PeerUnavailableError` naming it,
        now and whenever it is first awaited later. A peer lost after it was heard from, or one
        that refused our channel, breaks the job: every pending get fails with that error and
        this party shuts down on it (its ABORT carries the error, so every other party raises
        ``PeerUnavailableError`` naming the same peer). A peer that finished, or that was never
        heard from at all, fails only what depends on it; the runtime goes on.
        """
        error = unavailable(self._peers, peer)
        if error is None:
            return
        self._table.fail_pending(error, owners=(peer,))
        if state is LinkState.FINISHED:
            self._log.debug("%s", reason)
            return
        self._log.error("%s", reason)
        breaks_job = state is LinkState.REFUSED or self._peers.record(peer).ever_heard
        if breaks_job and self._shutdown.requested is None:
            self._table.fail_pending(error)
            self._request(Reason.REMOTE_ERROR, error, reason)
