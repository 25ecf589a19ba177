"""What a party keeps of the values and errors its peers push: never more than it will use.

Every party runs the same program, so an object id ``(seq, index)`` names the same value in
every party, and this party's own call counter (its *watermark*: the last sequence id its
program issued) tells how far its program got. Before a DATA or ERROR frame fills or creates an
entry in the object table, :meth:`Intake.admit` decides:

* the id has an entry here: **store** (the frame fills it, or is a duplicate the table ignores);
* the id is at or below the watermark, with no entry and no live :class:`FedObject` handle
  here: nothing in this party can ever ask for it (its handle was dropped and its value
  released, or the id was never issued): **drop** the value at once;
* at or below the watermark with a live handle to a peer's object: **store** (the program may
  still use it); this party's own objects never come from a peer, so no handle admits them;
* above the watermark: the peer's program is ahead of ours, which is legitimate; the value is
  **stored** as *unclaimed*, as long as the peer's unclaimed objects stay within ``max_count``
  objects and ``max_bytes`` bytes; beyond that the frame is **refused** with a reason naming
  the bound (the sender is told by a REJECT).

When this party's program issues a sequence id (:meth:`Intake.issue`), the unclaimed ids of that
sequence are claimed: the usual release rule of the table applies from then on (a value goes
when the program drops its last handle). Unclaimed ids the call does not have (an index beyond
its outputs, or any output of a call of this party's own) are returned as orphans, for the
runtime to forget. No I/O, no loop: synchronous
and unit-tested on its own.
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum

from .graph import FedObject
from .wire import ObjectId

__all__ = ["MAX_UNCLAIMED", "Admission", "Intake", "Verdict"]

#: Unclaimed objects one peer may have here at once (the bytes bound is
#: ``messages_max_size_in_bytes``).
MAX_UNCLAIMED = 10_000


class Verdict(Enum):
    STORE = "store"
    DROP = "drop"
    REFUSE = "refuse"


@dataclass(frozen=True)
class Admission:
    """What to do with a frame's value or error; ``reason`` says why it is dropped or refused."""

    verdict: Verdict
    reason: str = ""


STORE = Admission(Verdict.STORE)


class Intake:
    """The admission rule and the unclaimed values' accounting of one party.

    ``max_count`` and ``max_bytes`` bound each peer's unclaimed objects.
    """

    def __init__(self, party: str, *, max_count: int, max_bytes: int) -> None:
        self._party = party
        self._max_count = max_count
        self._max_bytes = max_bytes
        self._watermark = 0
        #: Peers' objects the program holds a handle to: added as it issues them, removed by
        #: :meth:`release` when it drops the handle (the handle's release callback).
        self._held: set[ObjectId] = set()
        self._unclaimed: dict[ObjectId, tuple[str, int]] = {}
        self._by_seq: dict[int, list[ObjectId]] = {}
        self._seqs: list[int] = []
        self._count: dict[str, int] = {}
        self._bytes: dict[str, int] = {}

    @classmethod
    def for_limit(cls, party: str, messages_max_size_in_bytes: int) -> Intake:
        """The bounds silo uses: :data:`MAX_UNCLAIMED` objects and one maximal message's bytes."""
        return cls(party, max_count=MAX_UNCLAIMED, max_bytes=messages_max_size_in_bytes)

    @property
    def watermark(self) -> int:
        return self._watermark

    def unclaimed(self, peer: str) -> tuple[int, int]:
        """``(objects, bytes)`` unclaimed from ``peer``."""
        return self._count.get(peer, 0), self._bytes.get(peer, 0)

    def issue(self, outputs: Sequence[FedObject]) -> list[ObjectId]:
        """This party's program issued ``outputs`` (one call's, one sequence id).

        Returns the unclaimed ids at or below that sequence that none of ``outputs`` names:
        nothing will ever use them, the runtime forgets them.
        """
        if not outputs:
            return []
        seq = outputs[0].seq
        self._watermark = max(self._watermark, seq)
        if outputs[0].owner != self._party:
            # Only a peer's objects arrive from peers: this party's own need no handle here.
            for obj in outputs:
                self._held.add(obj.id)
        orphans: list[ObjectId] = []
        while self._seqs and self._seqs[0] <= seq:
            for object_id in self._by_seq.pop(heapq.heappop(self._seqs)):
                self._claim(object_id)
                if object_id not in self._held:
                    orphans.append(object_id)
        return orphans

    def release(self, object_id: ObjectId) -> None:
        """The program dropped its handle to ``object_id``."""
        self._held.discard(object_id)

    def admit(self, src: str, object_id: ObjectId, nbytes: int, *, known: bool) -> Admission:
        """Decide about a frame of ``nbytes`` from ``src`` for ``object_id``; ``known`` says
        whether the object table has an entry for it. A stored unclaimed value is counted."""
        if known or object_id in self._unclaimed:
            return STORE
        seq = object_id[0]
        if seq <= self._watermark:
            if object_id in self._held:
                return STORE
            return Admission(
                Verdict.DROP,
                f"party {self._party!r} is past object {object_id} (at call {self._watermark}) "
                f"and holds no handle to it",
            )
        count, size = self.unclaimed(src)
        if count + 1 > self._max_count or size + nbytes > self._max_bytes:
            return Admission(
                Verdict.REFUSE,
                f"party {self._party!r} refused object {object_id} from {src!r}: it is ahead of "
                f"this party's program (at call {self._watermark}) and {src!r} already has "
                f"{count} objects ({size} bytes) waiting here unclaimed; the bound is "
                f"{self._max_count} objects and {self._max_bytes} bytes",
            )
        self._unclaimed[object_id] = (src, nbytes)
        self._count[src] = count + 1
        self._bytes[src] = size + nbytes
        if seq not in self._by_seq:
            self._by_seq[seq] = []
            heapq.heappush(self._seqs, seq)
        self._by_seq[seq].append(object_id)
        return STORE

    def _claim(self, object_id: ObjectId) -> None:
        src, nbytes = self._unclaimed.pop(object_id)
        self._count[src] -= 1
        self._bytes[src] -= nbytes
