"""What a party tells its peers it is doing, in the ``extra`` field of every heartbeat.

A heartbeat's ``extra`` is a small msgpack map, built by :func:`activity_map` from the party's
:class:`~silo.stats.Counters` each time a heartbeat goes out::

    {"running": 1, "inflight": 0, "call": "train", "seq": 12, "for_ms": 29000}

``running`` is the number of calls running, ``inflight`` the bytes sent and not acknowledged yet;
``call``, ``seq`` and ``for_ms`` (present only while a call runs) name the call running for the
longest time, its sequence id, and for how long it has run.

A peer's map is untrusted input: :func:`parse_activity` checks its size, its keys and their
types and raises ``ValueError`` for anything else; :func:`note_activity` logs that at debug level
and keeps nothing, so a malformed or oversized report never breaks the channel. Keys it does not
know (a newer silo's) are ignored. The latest report of each peer is kept in its
:class:`~silo.peers.PeerRecord`; :func:`describe` words it for the slow-get warning.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Protocol

from .stats import Counters

__all__ = [
    "MAX_ENTRIES",
    "MAX_NAME",
    "STALE_S",
    "Activity",
    "activity_map",
    "describe",
    "note_activity",
    "parse_activity",
    "seconds",
]

#: At most this many entries in a map, and this many characters in a call name.
MAX_ENTRIES = 16
MAX_NAME = 200
_MAX_INT = (1 << 63) - 1
_INT_KEYS = ("running", "inflight", "seq", "for_ms")
#: A report older than this is said to be old (heartbeats come every second by default).
STALE_S = 2.0


@dataclass(frozen=True)
class Activity:
    """A party's own report of what it is doing, as of when it was sent."""

    running: int
    in_flight: int
    call: str | None = None
    seq: int = 0
    for_s: float = 0.0


def activity_map(counters: Counters) -> dict[str, Any]:
    """The heartbeat ``extra`` describing what ``counters``' party is doing now."""
    extra: dict[str, Any] = {
        "running": counters.calls_running,
        "inflight": max(0, counters.bytes_in_flight),
    }
    call = counters.longest_running()
    if call is not None:
        extra["call"] = call.name[:MAX_NAME]
        extra["seq"] = call.seq
        extra["for_ms"] = max(0, round((counters.clock() - call.started) * 1000))
    return extra


def parse_activity(extra: object) -> Activity | None:
    """The :class:`Activity` in a heartbeat's ``extra`` (``None`` when it carries none).

    Raises ``ValueError`` naming the problem for a map that is too large, or whose known keys
    have the wrong type or range; unknown keys are ignored.
    """
    if extra is None:
        return None
    if not isinstance(extra, dict):
        raise ValueError(f"activity is not a map: {type(extra).__name__}")
    if len(extra) > MAX_ENTRIES:
        raise ValueError(f"activity has {len(extra)} entries, at most {MAX_ENTRIES} allowed")
    for key in _INT_KEYS:
        value = extra.get(key, 0)
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= _MAX_INT:
            raise ValueError(f"activity {key!r} is not a non-negative integer: {value!r:.50}")
    if "running" not in extra or "inflight" not in extra:
        raise ValueError("activity lacks 'running' or 'inflight'")
    call = extra.get("call")
    if call is not None and (not isinstance(call, str) or not 0 < len(call) <= MAX_NAME):
        raise ValueError(f"activity 'call' is not a name of 1-{MAX_NAME} characters: {call!r:.50}")
    return Activity(
        running=extra["running"],
        in_flight=extra["inflight"],
        call=call,
        seq=extra.get("seq", 0),
        for_s=extra.get("for_ms", 0) / 1000.0,
    )


class Reports(Protocol):
    """Where reported activity is kept (:class:`silo.peers.Peers`)."""

    def reported(self, peer: str, activity: Activity) -> None: ...


def note_activity(
    peers: Reports, peer: str, extra: object, log: logging.LoggerAdapter[Any] | logging.Logger
) -> None:
    """Keep the activity a heartbeat from ``peer`` reports; a malformed one is logged at debug
    level and ignored (the heartbeat still counts as hearing from the peer). Never raises."""
    try:
        activity = parse_activity(extra)
    except ValueError as exc:
        log.debug("ignored the activity reported by %s: %s", peer, exc)
        return
    if activity is not None:
        peers.reported(peer, activity)


def seconds(value: float) -> str:
    """A duration as people read it in a log line: ``0.5 s``, ``31 s``."""
    return f"{value:.1f} s" if value < 10 else f"{value:.0f} s"


def describe(peer: str, activity: Activity | None, age_s: float | None) -> str:
    """What ``peer`` last reported doing, ``age_s`` seconds ago (``None``: never), in words:
    ``bob reports: running train (call 12) for 29 s, 0 bytes in flight``."""
    if activity is None or age_s is None:
        return f"{peer} has reported nothing yet"
    if activity.call is not None:
        call_id = f" (call {activity.seq})" if activity.seq else ""
        doing = f"running {activity.call}{call_id} for {seconds(activity.for_s + age_s)}"
        if activity.running > 1:
            doing += f" and {activity.running - 1} more call(s)"
    else:
        doing = "running no call"
    report = f"{doing}, {activity.in_flight} bytes in flight"
    if age_s >= STALE_S:
        return f"{peer} has reported nothing for {seconds(age_s)}; it last reported: {report}"
    return f"{peer} reports: {report}"
