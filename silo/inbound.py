"""What arrives from peers, and what the runtime does when a peer is over.

The runtime's side of :class:`~silo.transport.base.FrameSink`: values, error frames, refusals,
aborts. Every method is synchronous and fast: it fills or fails futures of the object table and,
for a broken job, asks for shutdown. The state of each peer is not kept here: it lives in the
shared :class:`~silo.peers.Peers`, and :meth:`Inbound.peer_over` is its listener.
"""

from __future__ import annotations

import asyncio
from collections.abc import Container
from typing import TYPE_CHECKING, Any

from .divergence import CallLog
from .errors import DivergenceError, FedRemoteError, PeerUnavailableError, SiloError
from .log import PartyLogger
from .peers import LinkEvent, LinkState, Peers
from .shutdown import Reason, ShutdownRequest
from .tracebacks import headline
from .wire import ErrorInfo, ObjectId

if TYPE_CHECKING:
    from .transport import Transport

__all__ = ["Inbound"]


class Inbound:
    """Mixed into :class:`~silo.runtime.Runtime`, which provides the state and hooks below."""

    party: str
    log: PartyLogger
    peer_table: Peers
    _objects: dict[ObjectId, asyncio.Future[Any]]
    _owner_of: dict[ObjectId, str]
    call_log: CallLog

    def future(self, object_id: ObjectId, owner: str) -> asyncio.Future[Any]:
        raise NotImplementedError

    @property
    def transport(self) -> Transport:
        raise NotImplementedError

    @property
    def shutdown_request(self) -> ShutdownRequest | None:
        raise NotImplementedError

    def request_shutdown(
        self, reason: Reason, error: BaseException | None = None, detail: str = ""
    ) -> bool:
        raise NotImplementedError

    def unavailable(self, peer: str) -> PeerUnavailableError | None:
        """Why nothing more will come from ``peer`` (it finished, was lost or refused us), or
        ``None`` while it is live or when this party closed the channel itself."""
        state = self.peer_table.state(peer)
        if state in (LinkState.FINISHED, LinkState.LOST, LinkState.REFUSED):
            return PeerUnavailableError(peer, self.peer_table.reason(peer))
        return None

    def _store(self, src: str, object_id: ObjectId) -> asyncio.Future[Any] | None:
        fut = self.future(object_id, src)
        owner = self._owner_of[object_id]
        if owner != src:
            self.log.warning("ignored object %s from %s: it belongs to %s", object_id, src, owner)
            return None
        return None if fut.done() else fut

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
        if fut is not None:
            fut.set_exception(self._as_seen_here(src, info))

    def _diverges(self, src: str, object_id: ObjectId, call: str) -> bool:
        error = self.call_log.check(src, object_id, call)
        if error is None:
            return False
        self.diverged(error)
        return True

    def diverged(self, error: DivergenceError) -> None:
        """The parties' programs diverged: every pending get raises ``error``; shut down (the
        ABORT carries the message, so every party raises a DivergenceError)."""
        self.log.error("%s", error)
        self.fail_pending(error)
        self.request_shutdown(Reason.REMOTE_ERROR, error, str(error))

    def _as_seen_here(self, src: str, info: ErrorInfo) -> FedRemoteError:
        """The error an error frame from ``src`` means here.

        Another party may report *this* party lost (it was frozen, or a partition cut it off
        from a third party, who passed the news on): here the party out of reach is the one
        that reports it, never this party itself.
        """
        error = info.to_exception()
        if isinstance(error, PeerUnavailableError) and error.src_party == self.party:
            return PeerUnavailableError(
                src, f"{src} lost contact with {self.party} ({error.reason})"
            )
        if isinstance(error, DivergenceError) and error.src_party == self.party:
            return DivergenceError(src, error.message, error.seq)
        return error

    def deliver_refused(self, src: str, object_id: ObjectId, error: SiloError) -> None:
        self.log.error("object %s from %s refused: %s", object_id, src, error)
        fut = self._store(src, object_id)
        if fut is not None:
            fut.set_exception(error)

    def deliver_abort(self, src: str, info: ErrorInfo) -> None:
        """``src`` stopped on an error: every pending get raises that error; shut down."""
        error = self._as_seen_here(src, info)
        # One line per failure: the program's get (or the end of the program) raises this
        # error, and that is where it is reported; the log keeps it for debugging.
        self.log.debug("party %s aborted: %s", src, str(error).splitlines()[0])
        self.fail_pending(error)
        self.request_shutdown(Reason.REMOTE_ERROR, error, f"{src} aborted")
        self.peer_table.fire(src, LinkEvent.GOODBYE, f"{src} aborted: {headline(error)}")

    def peer_over(self, peer: str, state: LinkState, reason: str) -> None:
        """The listener of :class:`~silo.peers.Peers`: ``peer`` reached a terminal ``state``.

        What this party awaits from the peer fails with :class:`PeerUnavailableError` naming it,
        now and whenever it is first awaited later. A peer lost after it was heard from, or one
        that refused our channel, breaks the job: every pending get fails with that error and
        this party shuts down on it (its ABORT carries the error, so every other party raises
        ``PeerUnavailableError`` naming the same peer). A peer that finished, or that was never
        heard from at all, fails only what depends on it; the runtime goes on.
        """
        error = self.unavailable(peer)
        if error is None:
            return
        self.fail_pending(error, owners=(peer,))
        if state is LinkState.FINISHED:
            self.log.debug("%s", reason)
            return
        self.log.error("%s", reason)
        breaks_job = state is LinkState.REFUSED or self.peer_table.record(peer).ever_heard
        if breaks_job and self.shutdown_request is None:
            self.fail_pending(error)
            self.request_shutdown(Reason.REMOTE_ERROR, error, reason)

    def fail_pending(self, error: BaseException, *, owners: Container[str] | None = None) -> None:
        """Fail every object still awaited, or only those owned by ``owners``."""
        for object_id, fut in self._objects.items():
            if not fut.done() and (owners is None or self._owner_of[object_id] in owners):
                fut.set_exception(error)
