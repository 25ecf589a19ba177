"""Counters of what a party does: frames and bytes per peer, calls run, calls running now.

Theory of operation
-------------------
One :class:`Counters` per runtime, owned by it and handed to the transport. Everything that
increments it runs on the party's event loop (the transport's readers and writers, the call
wrappers of :mod:`silo.execution`), so the fields are plain ``int``/``float`` attributes bumped
without locks, and a frame costs a few attribute increments: no allocation, no call. Worker threads
never touch it: a plain function's call is counted on the loop, around the await of its thread.

:meth:`Counters.snapshot` copies the numbers into frozen :class:`Stats` / :class:`PeerStats`
values, which is what ``Runtime.stats()`` returns. What each number counts:

* ``frames_sent`` / ``bytes_sent``: frames this party sent to the peer (DATA, ERROR, ABORT,
  GOODBYE; not heartbeats nor the ACK/REJECT answers), each counted once, with its whole length
  (header and body), however many times it was written.
* ``frames_received`` / ``bytes_received``: the same kinds of frames that arrived from the peer,
  counted as they arrive (a frame the peer replayed after a reconnection counts again).
* ``retries``: extra writes of a frame (replays on a new connection, re-sent requests).
* ``reconnects``: times the websocket to the peer was opened again after it had been up.
* ``calls_run`` / ``call_time_s``: calls of this party that ran (returned or raised), and their
  total run time, inputs' wait excluded. ``calls_running``: calls running right now.
* ``bytes_in_flight``: bytes of frames sent and not acknowledged yet, to every peer.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import NamedTuple

__all__ = ["Counters", "PeerCounters", "PeerStats", "RunningCall", "Stats"]


@dataclass(frozen=True)
class PeerStats:
    """What crossed the channel with one peer (see the module doc for each number)."""

    frames_sent: int
    bytes_sent: int
    frames_received: int
    bytes_received: int
    retries: int
    reconnects: int


class RunningCall(NamedTuple):
    """A call of this party running now: its name, sequence id, and since when (a tuple: one
    is made per call, on the hot path)."""

    name: str
    seq: int
    started: float


@dataclass(frozen=True)
class Stats:
    """A snapshot of a party's counters, returned by ``Runtime.stats()``."""

    party: str
    calls_run: int
    call_time_s: float
    calls_running: int
    bytes_in_flight: int
    peers: Mapping[str, PeerStats]

    @property
    def bytes_sent(self) -> int:
        return sum(p.bytes_sent for p in self.peers.values())

    @property
    def bytes_received(self) -> int:
        return sum(p.bytes_received for p in self.peers.values())


class PeerCounters:
    """The live counters of one peer; incremented in place by the transport."""

    __slots__ = (
        "bytes_received",
        "bytes_sent",
        "frames_received",
        "frames_sent",
        "reconnects",
        "retries",
    )

    def __init__(self) -> None:
        self.frames_sent = 0
        self.bytes_sent = 0
        self.frames_received = 0
        self.bytes_received = 0
        self.retries = 0
        self.reconnects = 0

    def snapshot(self) -> PeerStats:
        return PeerStats(
            self.frames_sent,
            self.bytes_sent,
            self.frames_received,
            self.bytes_received,
            self.retries,
            self.reconnects,
        )


class Counters:
    """A party's live counters. Loop thread only; never raises."""

    def __init__(
        self, peers: Iterable[str] = (), *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.clock = clock
        self._peers = {p: PeerCounters() for p in peers}
        self.calls_run = 0
        self.call_time_s = 0.0
        self.bytes_in_flight = 0
        self._running: dict[int, RunningCall] = {}
        self._tokens = itertools.count(1)

    def peer(self, name: str) -> PeerCounters:
        """The counters of ``name``, created on first use (a server used alone meets its peers
        as they come)."""
        counters = self._peers.get(name)
        if counters is None:
            counters = self._peers[name] = PeerCounters()
        return counters

    @property
    def calls_running(self) -> int:
        return len(self._running)

    def call_started(self, name: str, seq: int) -> int:
        """A call began to run; returns the token to give :meth:`call_ended`."""
        token = next(self._tokens)
        self._running[token] = RunningCall(name, seq, self.clock())
        return token

    def call_ended(self, token: int) -> None:
        """The call of ``token`` returned or raised. Idempotent."""
        call = self._running.pop(token, None)
        if call is not None:
            self.calls_run += 1
            self.call_time_s += self.clock() - call.started

    def longest_running(self) -> RunningCall | None:
        """The call running for the longest time, or ``None`` when none runs."""
        return next(iter(self._running.values()), None)

    def snapshot(self, party: str) -> Stats:
        peers = {name: c.snapshot() for name, c in self._peers.items()}
        return Stats(
            party=party,
            calls_run=self.calls_run,
            call_time_s=self.call_time_s,
            calls_running=len(self._running),
            bytes_in_flight=self.bytes_in_flight,
            peers=MappingProxyType(peers),
        )
