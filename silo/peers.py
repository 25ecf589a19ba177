"""The peers: one source of truth for the state of every peer, shared by the runtime and the links.

Theory of operation
-------------------
Each peer's channel is a small state machine, written as one table (:data:`TRANSITIONS`) from
``(state, event)`` to the next state, with no I/O, as h11's ``_state.py`` does::

    CONNECTING --CONNECTED/HEARD--> UP --DROPPED--> RECONNECTING --CONNECTED/HEARD--> UP
        any live state --GOODBYE--> FINISHED    (the peer said it is leaving)
        any live state --SILENT---> LOST        (not heard from for timeout_in_ms)
        any live state --REFUSED--> REFUSED     (the peer refused our channel for good)
        any live state --CLOSE----> CLOSED      (this party closed the channel)

CONNECTING, UP and RECONNECTING are *live*: frames may still go to and come from the peer.
FINISHED, LOST, REFUSED and CLOSED are *terminal*. The rule for events the table does not list:
a terminal state ignores every event (late news of a peer that is over changes nothing, and the
reason it ended is kept); a live state lists every event, so a missing pair there is a bug and
raises :class:`LinkStateError`. The table is checked exhaustively by the tests and printed in
``docs/architecture.md``.

:class:`Peers` holds, per peer, its state, when it was last heard from (anything received, on any
channel: heartbeat, acknowledgement, data) and why it ended. The transport feeds it events; the
runtime and the transport subscribe to its terminal transitions with :meth:`Peers.subscribe`.
Silence is judged by :meth:`Peers.silent`, called by the transport's monitor every heartbeat.
Time comes from a clock passed in, so everything here is tested with a fake one.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from enum import Enum

from .activity import Activity
from .errors import SiloError

__all__ = [
    "LIVE",
    "TERMINAL",
    "TRANSITIONS",
    "Dedupe",
    "LinkEvent",
    "LinkState",
    "LinkStateError",
    "PeerRecord",
    "Peers",
    "next_state",
]


class LinkState(Enum):
    CONNECTING = "connecting"
    UP = "up"
    RECONNECTING = "reconnecting"
    FINISHED = "finished"
    LOST = "lost"
    REFUSED = "refused"
    CLOSED = "closed"


class LinkEvent(Enum):
    CONNECTED = "connected"
    HEARD = "heard"
    DROPPED = "dropped"
    GOODBYE = "goodbye"
    SILENT = "silent"
    REFUSED = "refused"
    CLOSE = "close"


LIVE = frozenset({LinkState.CONNECTING, LinkState.UP, LinkState.RECONNECTING})
TERMINAL = frozenset(set(LinkState) - LIVE)

_S, _E = LinkState, LinkEvent

#: The whole state machine. Pairs with a terminal state are absent on purpose (see the module doc).
TRANSITIONS: dict[tuple[LinkState, LinkEvent], LinkState] = {
    (_S.CONNECTING, _E.CONNECTED): _S.UP,
    (_S.CONNECTING, _E.HEARD): _S.UP,
    (_S.CONNECTING, _E.DROPPED): _S.CONNECTING,
    (_S.CONNECTING, _E.GOODBYE): _S.FINISHED,
    (_S.CONNECTING, _E.SILENT): _S.LOST,
    (_S.CONNECTING, _E.REFUSED): _S.REFUSED,
    (_S.CONNECTING, _E.CLOSE): _S.CLOSED,
    (_S.UP, _E.CONNECTED): _S.UP,
    (_S.UP, _E.HEARD): _S.UP,
    (_S.UP, _E.DROPPED): _S.RECONNECTING,
    (_S.UP, _E.GOODBYE): _S.FINISHED,
    (_S.UP, _E.SILENT): _S.LOST,
    (_S.UP, _E.REFUSED): _S.REFUSED,
    (_S.UP, _E.CLOSE): _S.CLOSED,
    (_S.RECONNECTING, _E.CONNECTED): _S.UP,
    (_S.RECONNECTING, _E.HEARD): _S.RECONNECTING,
    (_S.RECONNECTING, _E.DROPPED): _S.RECONNECTING,
    (_S.RECONNECTING, _E.GOODBYE): _S.FINISHED,
    (_S.RECONNECTING, _E.SILENT): _S.LOST,
    (_S.RECONNECTING, _E.REFUSED): _S.REFUSED,
    (_S.RECONNECTING, _E.CLOSE): _S.CLOSED,
}


class LinkStateError(SiloError):
    """Internal: an event a live state does not list. Always a bug in silo, never user input."""


def next_state(state: LinkState, event: LinkEvent) -> LinkState:
    """The state after ``event``. A terminal state stays as it is, whatever the event.

    Raises :class:`LinkStateError` for a pair the table misses in a live state.
    """
    if state in TERMINAL:
        return state
    try:
        return TRANSITIONS[(state, event)]
    except KeyError:
        raise LinkStateError(f"no transition from {state.name} on {event.name}") from None


class Dedupe:
    """Which message ids of one sender were already delivered, in bounded memory.

    Ids at or below ``watermark`` were all seen; ``above`` holds the seen ids past it. When more
    than ``limit`` ids wait above a gap (a frame the sender abandoned before sending it), the
    gap is given up: the watermark moves to the lowest id held.
    """

    def __init__(self, limit: int = 4096) -> None:
        self.watermark = 0
        self.above: set[int] = set()
        self._limit = limit

    def accept(self, msg_id: int) -> bool:
        """``True`` the first time ``msg_id`` is seen, ``False`` for a replay."""
        if msg_id <= self.watermark or msg_id in self.above:
            return False
        self.above.add(msg_id)
        if len(self.above) > self._limit:
            self.watermark = min(self.above) - 1
        while self.watermark + 1 in self.above:
            self.watermark += 1
            self.above.discard(self.watermark)
        return True


@dataclass
class PeerRecord:
    """What this party knows of one peer."""

    state: LinkState
    #: When anything last arrived from the peer, on any channel (``None``: never).
    last_heard: float | None
    #: Since when each direction has been silent: the start, or the last time something arrived
    #: on our own link to the peer (``out``: its answers and heartbeats) or on the channel it
    #: opened to us (``in``). Either one silent for ``timeout_in_ms`` loses the peer, so a link
    #: that stops forwarding one way is caught even while the other way still works.
    since_out: float
    since_in: float
    #: Why the peer's channel ended (set with the terminal state).
    reason: str = ""
    received: Dedupe | None = None
    #: What the peer last reported doing in a heartbeat (:mod:`silo.activity`), and when.
    activity: Activity | None = None
    reported_at: float | None = None

    @property
    def ever_heard(self) -> bool:
        return self.last_heard is not None


Listener = Callable[[str, LinkState, str], None]


class Peers:
    """The state of every peer of this party. Synchronous; the event loop is the only lock."""

    def __init__(self, names: Iterable[str], *, timeout_s: float, clock: Callable[[], float]):
        self._clock = clock
        self.timeout_s = timeout_s
        now = clock()
        self._records = {
            name: PeerRecord(LinkState.CONNECTING, None, now, now, received=Dedupe())
            for name in names
        }
        self._listeners: list[Listener] = []

    @property
    def names(self) -> list[str]:
        return list(self._records)

    def record(self, peer: str) -> PeerRecord:
        return self._records[peer]

    def state(self, peer: str) -> LinkState:
        return self._records[peer].state

    def is_live(self, peer: str) -> bool:
        return self._records[peer].state in LIVE

    def live(self) -> list[str]:
        return [p for p, r in self._records.items() if r.state in LIVE]

    def reason(self, peer: str) -> str:
        return self._records[peer].reason

    def subscribe(self, listener: Listener) -> None:
        """Call ``listener(peer, state, reason)`` on every move to a terminal state."""
        self._listeners.append(listener)

    def fire(self, peer: str, event: LinkEvent, reason: str = "") -> LinkState:
        """Apply ``event`` to ``peer``; returns the new state. Listeners run on a terminal move."""
        record = self._records[peer]
        old = record.state
        new = next_state(old, event)
        if new is old:
            return new
        record.state = new
        if new in TERMINAL:
            record.reason = reason or new.value
            for listener in list(self._listeners):
                listener(peer, new, record.reason)
        return new

    def heard(self, peer: str, *, outgoing: bool) -> None:
        """Anything arrived from ``peer``: on our link to it (``outgoing``) or on its link to us."""
        record = self._records.get(peer)
        if record is None:
            return
        now = self._clock()
        record.last_heard = now
        if outgoing:
            record.since_out = now
        else:
            record.since_in = now
        if record.state is not LinkState.UP:
            self.fire(peer, LinkEvent.HEARD)

    def reported(self, peer: str, activity: Activity) -> None:
        """Keep ``activity``, what ``peer`` reports doing now (an unknown peer is ignored)."""
        record = self._records.get(peer)
        if record is not None:
            record.activity = activity
            record.reported_at = self._clock()

    def now(self) -> float:
        """The time on this table's clock."""
        return self._clock()

    def accept(self, peer: str, msg_id: int) -> bool:
        """``True`` if frame ``msg_id`` from ``peer`` is new (it is then marked delivered)."""
        record = self._records[peer]
        assert record.received is not None
        return record.received.accept(msg_id)

    async def watch(self, interval_s: float) -> None:
        """Declare lost every live peer silent for ``timeout_s``, checked every ``interval_s``
        (each transport runs this as its monitor); runs until cancelled."""
        while True:
            await asyncio.sleep(interval_s)
            for peer, why in self.silent():
                self.fire(peer, LinkEvent.SILENT, why)

    def corroborate(self, peer: str, witness: str) -> bool:
        """``witness`` reports ``peer`` out of reach: if this party has not heard from ``peer``
        for half of ``timeout_s`` either, it loses ``peer`` now (its own monitor would, shortly)
        rather than end its program unaware. A peer heard from lately stays: the witness may
        be the one cut off. Returns whether ``peer`` was lost."""
        record = self._records.get(peer)
        if record is None or record.state not in LIVE or not record.ever_heard:
            return False
        silence = self._clock() - min(record.since_out, record.since_in)
        if silence < self.timeout_s / 2:
            return False
        why = (
            f"{peer} was not heard from for {round(silence * 1000)} ms, and {witness} lost it "
            f"too (its process is frozen or gone, or the link stopped forwarding)"
        )
        self.fire(peer, LinkEvent.SILENT, why)
        return True

    def silent(self) -> list[tuple[str, str]]:
        """Live peers not heard from for ``timeout_s``, each with the reason to give."""
        now = self._clock()
        out = []
        ms = round(self.timeout_s * 1000)
        for peer, record in self._records.items():
            silent_since = min(record.since_out, record.since_in)
            if record.state in LIVE and now - silent_since >= self.timeout_s:
                if record.ever_heard:
                    why = (
                        f"{peer} was not heard from for {ms} ms (its process is frozen or gone, "
                        f"or the link stopped forwarding)"
                    )
                else:
                    why = f"{peer} did not answer within {ms} ms"
                out.append((peer, why))
        return out
