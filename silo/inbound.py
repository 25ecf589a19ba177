"""What arrives from peers, and the peer states it moves.

The runtime's side of :class:`~silo.transport.base.FrameSink`: values, error frames, refusals,
aborts, a peer's goodbye, a lost or silent peer. Every method is synchronous and fast: it fills
or fails futures of the object table and, for a broken job, asks for shutdown.
"""

from __future__ import annotations

import asyncio
from collections.abc import Container
from enum import Enum
from typing import TYPE_CHECKING, Any

from .errors import PeerUnavailableError, SiloError
from .log import PartyLogger
from .shutdown import Reason, ShutdownRequest
from .wire import ErrorInfo, ObjectId

if TYPE_CHECKING:
    from .transport import Transport

__all__ = ["Inbound", "PeerState"]


class PeerState(Enum):
    LIVE = "live"
    FINISHED = "finished"
    LOST = "lost"
    ABORTED = "aborted"
    UNREACHABLE = "unreachable"
    SILENT = "silent"


class Inbound:
    """Mixed into :class:`~silo.runtime.Runtime`, which provides the state and hooks below."""

    party: str
    log: PartyLogger
    _objects: dict[ObjectId, asyncio.Future[Any]]
    _owner_of: dict[ObjectId, str]
    _peer_state: dict[str, PeerState]
    #: Why a peer will send nothing more (it finished, was lost or never came): what an object
    #: awaited from it fails with, now or when it is first awaited later.
    _unavailable: dict[str, PeerUnavailableError]

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

    def peer_state(self, peer: str) -> PeerState:
        return self._peer_state[peer]

    def _store(self, src: str, object_id: ObjectId) -> asyncio.Future[Any] | None:
        fut = self.future(object_id, src)
        owner = self._owner_of[object_id]
        if owner != src:
            self.log.warning("ignored object %s from %s: it belongs to %s", object_id, src, owner)
            return None
        return None if fut.done() else fut

    def deliver_data(self, src: str, object_id: ObjectId, value: object) -> None:
        fut = self._store(src, object_id)
        if fut is not None:
            fut.set_result(value)

    def deliver_error(self, src: str, object_id: ObjectId, info: ErrorInfo) -> None:
        fut = self._store(src, object_id)
        if fut is not None:
            fut.set_exception(info.to_exception())

    def deliver_refused(self, src: str, object_id: ObjectId, error: SiloError) -> None:
        self.log.error("object %s from %s refused: %s", object_id, src, error)
        fut = self._store(src, object_id)
        if fut is not None:
            fut.set_exception(error)

    def deliver_abort(self, src: str, info: ErrorInfo) -> None:
        error = info.to_exception()
        self.log.error("party %s aborted: %s", src, str(error).splitlines()[0])
        self._peer_state[src] = PeerState.ABORTED
        self.fail_pending(error, owners=self._peer_state)
        self.request_shutdown(Reason.REMOTE_ERROR, error, f"{src} aborted")

    def deliver_goodbye(self, src: str) -> None:
        self.log.debug("%s finished", src)
        self.transport.links[src].peer_finished()
        why = f"{src} shut down before sending what {self.party} awaits"
        self._unreachable(src, PeerState.FINISHED, why)

    def peer_lost(self, peer: str, reason: str) -> None:
        """The peer vanished: fail what we await from anyone (the job is broken) and shut down.

        During a shutdown already under way, only what we await from that peer fails.
        """
        error = self._unreachable(peer, PeerState.LOST, reason)
        if error is not None and self.shutdown_request is None:
            self.log.error("%s", error)
            self.fail_pending(error, owners=self._peer_state)
            self.request_shutdown(Reason.REMOTE_ERROR, error, reason)

    def peer_silent(self, peer: str, reason: str) -> None:
        """Fail what this party awaits from a peer that never came; the runtime goes on."""
        if self._unreachable(peer, PeerState.SILENT, reason) is not None:
            self.log.error("%s", reason)

    def _unreachable(self, peer: str, state: PeerState, reason: str) -> PeerUnavailableError | None:
        """A live peer will send nothing more: fail what we await from it, now and later.

        Returns the error, or ``None`` if the peer was no longer live.
        """
        if self._peer_state[peer] is not PeerState.LIVE:
            return None
        self._peer_state[peer] = state
        error = self._unavailable[peer] = PeerUnavailableError(peer, reason)
        self.fail_pending(error, owners=(peer,))
        return error

    def fail_pending(self, error: BaseException, *, owners: Container[str] | None = None) -> None:
        """Fail every object still awaited, or only those owned by ``owners``."""
        for object_id, fut in self._objects.items():
            if not fut.done() and (owners is None or self._owner_of[object_id] in owners):
                fut.set_exception(error)
