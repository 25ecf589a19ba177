"""The object table: one entry per object this party holds, released as a whole.

An entry is created on first use (a call here that produces or consumes the object, a ``get``, a
frame from a peer) and holds everything the runtime knows of that object: its future, the party
that owns it, whether this party's program or calls asked for it, and the peers it was pushed to.
When the program drops its last handle to the object and the future is settled, the entry goes,
all of it at once: nothing about a released object is left behind in some other collection.
A call of this party that failed while nobody asked for its result is logged when its entry goes
(or at shutdown), since nobody else was told.

A new entry whose value can never arrive starts failed: a peer that is already over
(:func:`unavailable`), or a runtime that stopped receiving (see :meth:`ObjectTable.future`).

Loop thread only.
"""

from __future__ import annotations

import asyncio
from collections.abc import Container, Iterator
from typing import Any

from .errors import FedRemoteError, PeerUnavailableError
from .graph import FedObject
from .log import PartyLogger
from .peers import LinkState, Peers
from .shutdown import ShutdownFuture, pending_error
from .wire import ObjectId

__all__ = ["Entry", "ObjectTable", "unavailable"]


def unavailable(peers: Peers, peer: str) -> PeerUnavailableError | None:
    """Why nothing more will come from ``peer`` (it finished, was lost or refused us), or
    ``None`` while it is live or when this party closed the channel itself."""
    state = peers.state(peer)
    if state in (LinkState.FINISHED, LinkState.LOST, LinkState.REFUSED):
        return PeerUnavailableError(peer, peers.reason(peer))
    return None


class Entry:
    """What this party knows of one object."""

    __slots__ = ("asked", "future", "owner", "pushed")

    def __init__(self, future: asyncio.Future[Any], owner: str) -> None:
        self.future = future
        self.owner = owner
        #: Whether a call or ``get`` of this party asked for the value.
        self.asked = False
        #: The peers the value was (or is being) pushed to.
        self.pushed: set[str] | None = None


class ObjectTable:
    """This party's objects by id."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        party: str,
        peers: Peers,
        shutdown: ShutdownFuture,
        log: PartyLogger,
    ) -> None:
        self._loop = loop
        self._log = log
        self._party = party
        self._peers = peers
        self._shutdown = shutdown
        self._entries: dict[ObjectId, Entry] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, object_id: object) -> bool:
        return object_id in self._entries

    def __iter__(self) -> Iterator[ObjectId]:
        return iter(list(self._entries))

    def pushes(self) -> int:
        """How many (object, peer) pushes the table remembers."""
        return sum(len(e.pushed) for e in self._entries.values() if e.pushed)

    def get(self, object_id: ObjectId) -> Entry | None:
        return self._entries.get(object_id)

    def entry(self, object_id: ObjectId, owner: str) -> Entry:
        """The entry of ``object_id``, created on first use with ``owner`` as its owner."""
        entry = self._entries.get(object_id)
        if entry is None:
            fut = self._loop.create_future()
            entry = self._entries[object_id] = Entry(fut, owner)
            if owner != self._party:
                why = unavailable(self._peers, owner) or self._stopped_receiving()
                if why is not None:
                    fut.set_exception(why)
        return entry

    def future(self, object_id: ObjectId, owner: str) -> asyncio.Future[Any]:
        """The future of ``object_id``, created on first use."""
        return self.entry(object_id, owner).future

    def _stopped_receiving(self) -> BaseException | None:
        """After an error shutdown, or once a clean one is over, nothing more will arrive.

        During a clean shutdown the channel is still open: this party's own calls may still be
        waiting for their inputs, and those will come.
        """
        request = self._shutdown.requested
        if request is None or not (request.reason.is_error or self._shutdown.finished):
            return None
        return pending_error(self._party, request)

    def ask(self, obj: FedObject) -> asyncio.Future[Any]:
        """This party needs the value of ``obj`` (a call's input, a ``get``): its future."""
        entry = self.entry(obj.id, obj.owner)
        entry.asked = True
        return entry.future

    def first_push(self, object_id: ObjectId, peer: str) -> bool:
        """Record that ``object_id`` goes to ``peer``; ``False`` if it already did."""
        entry = self.entry(object_id, self._party)
        entry.asked = True
        if entry.pushed is None:
            entry.pushed = {peer}
            return True
        if peer in entry.pushed:
            return False
        entry.pushed.add(peer)
        return True

    async def resolve(self, objs: list[FedObject]) -> dict[ObjectId, Any]:
        """The values of ``objs``; raises the first failure as soon as it is known.

        Cancelling the waiter (a get's timeout) does not cancel the objects.
        """
        futs = [self.ask(obj) for obj in objs]
        pending = [f for f in futs if not f.done()]
        if len(pending) == 1:
            await asyncio.shield(pending[0])
        while len(pending) > 1:
            done, still = await asyncio.wait(pending, return_when=asyncio.FIRST_EXCEPTION)
            for fut in done:
                exc = fut.exception()
                if exc is not None:
                    raise exc
            pending = list(still)
        return {obj.id: fut.result() for obj, fut in zip(objs, futs, strict=True)}

    def remove(self, object_id: ObjectId) -> None:
        """Remove a settled entry, all of it; a call of this party that failed while nobody
        asked for its result is logged then (see :meth:`warn_unasked`). Idempotent."""
        entry = self._entries.get(object_id)
        if entry is None:
            return
        assert entry.future.done(), "only a settled object leaves the table"
        del self._entries[object_id]
        self._warn_if_unasked(object_id, entry)

    def forget(self, object_id: ObjectId) -> None:
        """Drop an entry nothing can ask for (a peer pushed an id no call here has)."""
        entry = self._entries.pop(object_id, None)
        if entry is not None and entry.future.done() and not entry.future.cancelled():
            entry.future.exception()

    def fail_pending(self, error: BaseException, *, owners: Container[str] | None = None) -> None:
        """Fail every object still awaited, or only those owned by ``owners``."""
        for entry in list(self._entries.values()):
            if not entry.future.done() and (owners is None or entry.owner in owners):
                entry.future.set_exception(error)

    def warn_unasked(self) -> None:
        """Log every failure of this party's calls that nobody asked for (at shutdown)."""
        for object_id, entry in list(self._entries.items()):
            if entry.future.done():
                self._warn_if_unasked(object_id, entry)

    def _warn_if_unasked(self, object_id: ObjectId, entry: Entry) -> None:
        """A call of this party failed and nobody asked for its result, so nobody was told:
        say so. Marks the exception retrieved."""
        fut = entry.future
        exc = None if fut.cancelled() else fut.exception()
        if (
            exc is not None
            and not isinstance(exc, FedRemoteError)
            and entry.owner == self._party
            and not entry.asked
        ):
            self._log.warning("object %s failed and nobody asked for it: %r", object_id, exc)
