"""Explaining a slow ``silo.get``: what it waits for, from whom, and what that party is doing.

:class:`SlowGets` (one per runtime) keeps the gets that are waiting. If one is still waiting
after ``slow_get_warning_s`` (config top level, default 30), one WARNING line says which object
it waits for, from which party, and what that party last reported doing in its heartbeats
(:mod:`silo.activity`)::

    waiting 31 s for object (12, 0) from bob; bob reports: running train (call 12) for 29 s,
    0 bytes in flight

and the same line again at every further multiple of the interval (the times are counted from
the start of the get, so a late timer does not shift the next one).

A get costs a small record added to a set and removed when it ends, however it ends: there is no
timer per get. One timer per runtime, armed only while gets wait, fires when the earliest of them
is due and re-arms itself for the next one.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence

from .activity import activity_map, describe, parse_activity, seconds
from .graph import FedObject
from .log import PartyLogger
from .objects import ObjectTable
from .peers import Peers
from .stats import Counters

__all__ = ["SlowGets"]


class _Wait:
    """One waiting get: its objects, when it began, when it is next due to warn."""

    __slots__ = ("due", "objs", "start")

    def __init__(self, objs: Sequence[FedObject], start: float, due: float) -> None:
        self.objs = objs
        self.start = start
        self.due = due


class SlowGets:
    """The gets of one runtime that are waiting, and the warning about those that wait long.

    Loop thread only.
    """

    def __init__(
        self,
        *,
        party: str,
        loop: asyncio.AbstractEventLoop,
        interval: float,
        log: PartyLogger,
        table: ObjectTable,
        counters: Counters,
        peers: Peers,
        stopped: Callable[[], bool],
    ) -> None:
        self._party = party
        self._loop = loop
        self.interval = interval
        self._log = log
        self._table = table
        self._counters = counters
        self._peers = peers
        self._stopped = stopped
        self._waits: set[_Wait] = set()
        self._timer: asyncio.TimerHandle | None = None

    def begin(self, objs: Sequence[FedObject]) -> _Wait:
        """A get of ``objs`` starts waiting; give the result to :meth:`end` when it ends."""
        loop = self._loop
        now = loop.time()
        wait = _Wait(objs, now, now + self.interval)
        self._waits.add(wait)
        if self._timer is None:
            self._timer = loop.call_at(wait.due, self._fire)
        return wait

    def end(self, wait: _Wait) -> None:
        """The get ended (returned, raised or was cancelled). Idempotent."""
        self._waits.discard(wait)

    def _fire(self) -> None:
        self._timer = None
        if self._stopped() or not self._waits:
            return
        loop = self._loop
        now = loop.time()
        for wait in list(self._waits):
            if wait.due > now:
                continue
            missing = [o for o in wait.objs if not self._table.future(o.id, o.owner).done()]
            if not missing:
                continue
            self._log.warning("%s", self.message(missing, now - wait.start))
            while wait.due <= now:
                wait.due += self.interval
        if self._waits:
            self._timer = loop.call_at(min(w.due for w in self._waits), self._fire)

    def message(self, missing: Sequence[FedObject], waited: float) -> str:
        """The warning for a get that has waited ``waited`` seconds for ``missing``."""
        first = missing[0]
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        if first.owner == self._party:
            here = parse_activity(activity_map(self._counters))
            doing = describe(f"{self._party} (this party)", here, 0)
            where = "computed here"
        else:
            table = self._peers
            record = table.record(first.owner)
            age = None if record.reported_at is None else table.now() - record.reported_at
            doing = describe(first.owner, record.activity, age)
            where = f"from {first.owner}"
        return f"waiting {seconds(waited)} for object {first.id}{more} {where}; {doing}"
