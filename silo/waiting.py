"""Explaining a slow ``silo.get``: what it waits for, from whom, and what that party is doing.

:func:`watch_get` arms one timer per ``get`` on the runtime's loop. If the get is still waiting
after ``slow_get_warning_s`` (config top level, default 30), one WARNING line says which object
it waits for, from which party, and what that party last reported doing in its heartbeats
(:mod:`silo.activity`)::

    waiting 31 s for object (12, 0) from bob; bob reports: running train (call 12) for 29 s,
    0 bytes in flight

and the same line again at every further multiple of the interval (the times are counted from
the start of the get, so a late timer does not shift the next one). The timer is cancelled when
the get ends, however it ends; arming and cancelling it costs one timer handle per get.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import TYPE_CHECKING

from .activity import activity_map, describe, parse_activity, seconds
from .graph import FedObject

if TYPE_CHECKING:
    from .runtime import Runtime

__all__ = ["SlowGet", "watch_get"]


class SlowGet:
    """The timer of one get. :meth:`cancel` is idempotent."""

    __slots__ = ("_handle", "_objs", "_runtime", "_start", "_warnings", "interval")

    def __init__(self, runtime: Runtime, objs: Sequence[FedObject], interval: float) -> None:
        self._runtime = runtime
        self._objs = objs
        self.interval = interval
        loop = runtime.loop
        self._start = loop.time()
        self._warnings = 0
        self._handle: asyncio.TimerHandle | None = loop.call_at(self._start + interval, self._fire)

    def cancel(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _fire(self) -> None:
        self._handle = None
        runtime = self._runtime
        if runtime.closed:
            return
        missing = [o for o in self._objs if not runtime.future(o.id, o.owner).done()]
        if not missing:
            return
        loop = runtime.loop
        self._warnings += 1
        runtime.log.warning("%s", self.message(missing, loop.time() - self._start))
        self._handle = loop.call_at(self._start + (self._warnings + 1) * self.interval, self._fire)

    def message(self, missing: Sequence[FedObject], waited: float) -> str:
        """The warning for a get that has waited ``waited`` seconds for ``missing``."""
        runtime = self._runtime
        first = missing[0]
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        if first.owner == runtime.party:
            here = parse_activity(activity_map(runtime.counters))
            doing = describe(f"{runtime.party} (this party)", here, 0)
            where = "computed here"
        else:
            table = runtime.peer_table
            record = table.record(first.owner)
            age = None if record.reported_at is None else table.now() - record.reported_at
            doing = describe(first.owner, record.activity, age)
            where = f"from {first.owner}"
        return f"waiting {seconds(waited)} for object {first.id}{more} {where}; {doing}"


def watch_get(runtime: Runtime, objs: Sequence[FedObject]) -> SlowGet:
    """Arm the slow-get warning of a get of ``objs``; cancel the result when the get ends."""
    return SlowGet(runtime, objs, runtime.config.slow_get_warning_s)
