"""Telling that the parties' programs diverged: which call each party issued at each id.

Every party runs the same program, so the n-th ``.remote()`` is the same call everywhere; that is
what makes an object id name the same value in every party. A program that branches on its party
(or on anything else that differs) and issues different calls breaks this silently: values land
on the wrong ids. So each DATA and ERROR frame carries the name of the call that produced it
(``train``, ``Counter.inc``), and the receiver compares it with the name of its own call at that
id. A mismatch is a :class:`~silo.errors.DivergenceError` that fails the job in every party.

:class:`CallLog` is the runtime's record of its own calls' names. Memory is bounded like the
object table's: a name is kept per object id from ``.remote()`` until the program drops that
object's handle (:meth:`CallLog.forget`). A name a peer sent for an id this party has not reached
yet is kept until the program reaches it (the number of such values is bounded by
:mod:`silo.intake`), then compared.

A call issued from inside a remote call would run in one party only, shifting every later id in
that party: :func:`check_not_nested` refuses it at once.
"""

from __future__ import annotations

from contextvars import ContextVar

from .errors import DivergenceError, SiloError
from .wire import MAX_CALL_NAME, ObjectId

__all__ = ["CallLog", "check_not_nested", "running_call"]

#: The name of the remote call running in this context (on the loop or in a worker thread).
running_call: ContextVar[str | None] = ContextVar("silo_running_call", default=None)


def check_not_nested(call: str) -> None:
    """Raise :class:`SiloError` if ``call.remote()`` is issued inside a remote call."""
    outer = running_call.get()
    if outer is not None:
        raise SiloError(
            f"{call}.remote() was called inside the remote call {outer}: every party must issue "
            f"the same calls in the same order, and a call made inside a call is made only in "
            f"the party that runs it, so the parties' call ids would shift. Issue it from the "
            f"program instead (return from {outer} what the next call needs)"
        )


class CallLog:
    """The names of this party's calls by object id, and what peers said ahead of them."""

    def __init__(self, party: str) -> None:
        self.party = party
        self._names: dict[ObjectId, str] = {}
        self._ahead: dict[ObjectId, tuple[str, str]] = {}
        self._issued = 0

    def __len__(self) -> int:
        return len(self._names) + len(self._ahead)

    def issue(self, seq: int, num_returns: int, name: str) -> DivergenceError | None:
        """Record the call ``name`` issued at ``seq``; returns the divergence if a peer already
        sent one of its outputs from a different call."""
        name = name[:MAX_CALL_NAME]
        self._issued = seq
        names = self._names
        for index in range(num_returns):
            names[(seq, index)] = name
        if not self._ahead:
            return None
        for index in range(num_returns):
            said = self._ahead.pop((seq, index), None)
            if said is not None and said[1] != name:
                return self._diverged(seq, said[0], said[1], name)
        return None

    def name(self, object_id: ObjectId) -> str:
        """The name of this party's call that produced ``object_id``; ``""`` if forgotten."""
        return self._names.get(object_id, "")

    def check(self, src: str, object_id: ObjectId, call: str) -> DivergenceError | None:
        """Compare ``call``, the name ``src`` sent for ``object_id``, with this party's call."""
        if not call:
            return None
        mine = self._names.get(object_id)
        if mine is None:
            if object_id[0] > self._issued:
                self._ahead[object_id] = (src, call)
            return None
        if mine == call:
            return None
        return self._diverged(object_id[0], src, call, mine)

    def forget(self, object_id: ObjectId) -> None:
        """The object is gone here: its name is no longer needed. Idempotent."""
        self._names.pop(object_id, None)
        self._ahead.pop(object_id, None)

    def _diverged(self, seq: int, src: str, theirs: str, mine: str) -> DivergenceError:
        ran = sorted([(src, theirs), (self.party, mine)])
        return DivergenceError(
            src,
            f"programs diverged at call {seq}: "
            + ", ".join(f"{party} ran {name}" for party, name in ran),
            seq,
        )
