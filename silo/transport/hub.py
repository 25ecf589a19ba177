"""The switchboard of one ``silo.simulate`` call: every party's
:class:`~silo.transport.memory.MemoryTransport` joins one :class:`Hub`.

The hub keeps one FIFO queue of frames for all parties and delivers it from a loop callback, in
order (what delivering adds is delivered in the same pass), so with the same program frames are
delivered in the same order on every run. A frame for a party that has not joined yet waits for
it. The hub also carries heartbeats between joined parties, and a fault plan
(:mod:`silo.faults`): kills, freezes, drops and delays.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

from ..activity import activity_map
from ..config import Address, CrossSiloCommConfig, TLSConfig
from ..faults import KINDS, Delay, Drop, Fault, Freeze, Kill
from ..peers import LinkEvent, Peers
from ..stats import Counters
from ..tracing import Tracing
from .base import FrameSink
from .memory import Frame, MemoryTransport

__all__ = ["Hub"]


class _Dropping:
    """A drop fault and how many frames it may still lose (``None``: all)."""

    def __init__(self, fault: Drop) -> None:
        self.fault = fault
        self.left = fault.count


class Hub:
    """The switchboard of one simulation: every party's :class:`MemoryTransport` joins it.

    Loop thread only. One per simulation: its queue and its fault plan belong to that run.
    """

    def __init__(self, parties: Sequence[str], faults: Sequence[Fault] = ()) -> None:
        self.parties = list(parties)
        self._members: dict[str, MemoryTransport] = {}
        self._left: set[str] = set()
        self._joined = {p: asyncio.Event() for p in self.parties}
        self._queue: deque[Callable[[], None]] = deque()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._draining = False
        self._backlog: dict[str, list[Frame]] = {}
        self._sent = dict.fromkeys(self.parties, 0)
        self._stops = {f.party: f for f in faults if isinstance(f, (Kill, Freeze))}
        self._drops = [_Dropping(f) for f in faults if isinstance(f, Drop)]
        self._delays = [f for f in faults if isinstance(f, Delay)]
        #: Links a drop of every frame cuts: their heartbeats are lost too.
        self._severed = {
            (f.src, f.dst)
            for f in faults
            if isinstance(f, Drop) and f.count is None and f.kinds == frozenset(KINDS.values())
        }
        self.killed: set[str] = set()
        self.frozen: set[str] = set()
        #: Frames a freeze stopped; kept so their senders' futures stay referenced.
        self.held: list[Frame] = []
        self._kill_hooks: dict[str, Callable[[], None]] = {}

    def transport(
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
    ) -> MemoryTransport:
        """A :class:`~silo.transport.base.TransportFactory`: ``party``'s transport on this hub.

        Raises ``ValueError`` for a party the hub was not made for.
        """
        if party not in self._joined:
            raise ValueError(f"party {party!r} is not one of this hub's {self.parties}")
        return MemoryTransport(
            self,
            party=party,
            job=job,
            sink=sink,
            comm=comm,
            log=log,
            peer_table=peer_table,
            counters=counters,
            tracing=tracing,
        )

    def on_kill(self, party: str, hook: Callable[[], None]) -> None:
        """Call ``hook`` when a kill fault stops ``party`` (at once if it already has)."""
        self._kill_hooks[party] = hook
        if party in self.killed:
            hook()

    # ------------------------------------------------------------------ members

    def join(self, member: MemoryTransport) -> None:
        """``member`` starts: it and every party already there hear each other."""
        self._loop = asyncio.get_running_loop()
        party = member.party
        self._members[party] = member
        stop = self._stops.get(party)
        if stop is not None and stop.after_frames == 0:
            self._stop(stop)
        for other in self._members.values():
            if other is not member and not self._cut(party, other.party):
                member.hear(other.party)
                other.hear(party)
        self._joined[party].set()
        for frame in self._backlog.pop(party, []):
            self._enqueue(frame)

    def leave(self, member: MemoryTransport) -> None:
        """``member`` closed: frames for it are lost from now on."""
        if self._members.get(member.party) is member:
            del self._members[member.party]
            self._left.add(member.party)

    def reachable(self, party: str) -> bool:
        return party in self._members and party not in self.killed

    async def wait_joined(self, parties: Sequence[str], timeout: float) -> list[str]:
        """Wait until ``parties`` joined, ``timeout`` at most; returns those that did not."""
        waits = [asyncio.ensure_future(self._joined[p].wait()) for p in parties]
        if waits:
            await asyncio.wait(waits, timeout=timeout)
        for wait in waits:
            wait.cancel()
        return [p for p in parties if not self._joined[p].is_set()]

    def beat(self, member: MemoryTransport) -> None:
        """``member``'s heartbeat: its peers hear it and what it reports doing."""
        party = member.party
        if party in self.frozen or party in self.killed:
            return
        activity = activity_map(member.counters)
        for peer, other in self._members.items():
            if peer != party and peer not in self.frozen and (party, peer) not in self._severed:
                other.hear(party, activity)

    def _cut(self, a: str, b: str) -> bool:
        return bool({a, b} & (self.frozen | self.killed))

    # ------------------------------------------------------------------ frames

    def post(self, frame: Frame) -> None:
        """Route a frame a party sends (a first write or a retry), applying the fault plan."""
        src = frame.src
        first = frame.attempts == 1
        if src in self.frozen:
            self.held.append(frame)
        elif self._dropped(frame):
            timeout = frame.sender.comm.timeout_s
            self._call_later(timeout, lambda: self._unanswered(frame))
        else:
            late = max((d.seconds for d in self._delays if _matches(d, frame)), default=0.0)
            if late > 0:
                self._call_later(late, lambda: self._enqueue(frame))
            else:
                self._enqueue(frame)
        if first:
            self._sent[src] += 1
            stop = self._stops.get(src)
            if stop is not None and self._sent[src] == stop.after_frames:
                self._stop(stop)

    def _dropped(self, frame: Frame) -> bool:
        for dropping in self._drops:
            if _matches(dropping.fault, frame) and dropping.left != 0:
                if dropping.left is not None:
                    dropping.left -= 1
                return True
        return False

    def _unanswered(self, frame: Frame) -> None:
        """A lost frame's answer is overdue: written again, or failed, as the real link does."""
        if frame.answer.done():
            return
        sender = frame.sender
        comm = sender.comm
        if frame.control:
            why = f"no progress for {comm.timeout_in_ms} ms (no answer came)"
        elif frame.attempts >= comm.retry_policy.max_attempts:
            why = f"not acknowledged after {frame.attempts} attempts"
        else:
            frame.attempts += 1
            sender.counters.peer(frame.dst).retries += 1
            self.post(frame)
            return
        frame.answer.set_exception(sender.failure(frame.dst, why, frame.header))

    def _call_later(self, delay: float, callback: Callable[[], None]) -> None:
        assert self._loop is not None
        self._loop.call_later(delay, callback)

    def _enqueue(self, item: Frame | Callable[[], None]) -> None:
        if isinstance(item, Frame):
            frame = item
            self._queue.append(lambda: self._deliver(frame))
        else:
            self._queue.append(item)
        if not self._draining:
            self._draining = True
            assert self._loop is not None
            self._loop.call_soon(self._drain)

    def _drain(self) -> None:
        """Deliver the queue in order, including what delivering it adds."""
        try:
            while self._queue:
                self._queue.popleft()()
        finally:
            self._draining = False

    def _deliver(self, frame: Frame) -> None:
        dst = frame.dst
        if dst in self.killed or dst in self._left:
            return
        if dst in self.frozen:
            self.held.append(frame)
            return
        member = self._members.get(dst)
        if member is None:
            self._backlog.setdefault(dst, []).append(frame)
            return
        try:
            refusal = member.receive(frame)
        except Exception as exc:
            if not frame.answer.done():
                frame.answer.set_exception(exc)
            return
        if not frame.answer.done():
            frame.answer.set_result(refusal)

    # ------------------------------------------------------------------ faults

    def _stop(self, fault: Kill | Freeze) -> None:
        party = fault.party
        if isinstance(fault, Freeze):
            self.frozen.add(party)
            return
        self.killed.add(party)
        reason = (
            f"{party} is gone: killed by the fault plan after {fault.after_frames} frame(s) "
            f"(silo.faults.kill)"
        )
        member = self._members.get(party)
        if member is not None:
            member.die(reason)
        # After the frames it sent: its peers receive those, then learn it is gone.
        self._enqueue(lambda: self._lost(party, reason))
        hook = self._kill_hooks.get(party)
        if hook is not None:
            hook()

    def _lost(self, party: str, reason: str) -> None:
        for peer, member in list(self._members.items()):
            if peer != party:
                member.peer_table.fire(party, LinkEvent.SILENT, reason)


def _matches(fault: Drop | Delay, frame: Frame) -> bool:
    return fault.src == frame.src and fault.dst == frame.dst and frame.header.kind in fault.kinds
