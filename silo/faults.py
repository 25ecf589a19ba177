"""Faults to inject into ``silo.simulate``, to test a federated program's failure handling.

A fault plan is a list given to ``silo.simulate(main, parties, faults=[...])``; it is carried out
by the in-memory transport's hub (:mod:`silo.transport.hub`), so a test of what the program does
when a party dies takes milliseconds::

    from silo import faults

    await silo.simulate(main, ["alice", "bob"], faults=[faults.kill("bob", after_frames=1)])

The kinds of fault, each a frozen dataclass made by the function of the same name:

* :func:`kill`: the party dies right after it sent its ``after_frames``-th frame (``0``: as soon
  as it starts). Its program and runtime stop dead: nothing more leaves it, no GOODBYE, no ABORT.
  Its peers are told at once (the in-memory hub sees the process go, so no timeout is waited
  for): each marks it lost, and what they await from it fails with
  :class:`~silo.errors.PeerUnavailableError` naming it, as when a real party is lost. In the
  result of ``simulate`` the party's entry is a :class:`Killed`.
* :func:`freeze`: after its ``after_frames``-th frame the party stops responding: no frame and no
  heartbeat goes in or out of it any more. Its peers find out by the silence, after
  ``timeout_in_ms`` (give a small one in tests), and raise ``PeerUnavailableError`` naming it.
  Its own program keeps running, cut off: it sees its peers silent in turn.
* :func:`drop`: frames from ``src`` to ``dst`` (of the given kinds; the first ``count`` of them,
  or all) are lost on the way. As on a real link, an unacknowledged data or goodbye frame is
  sent again after ``timeout_in_ms``, up to ``retry_policy.max_attempts`` writes, and an error or
  abort frame fails after one ``timeout_in_ms``: the sender then has a
  :class:`~silo.errors.SendingFailure`. Heartbeats still flow, except when the drop takes every
  frame of every kind (``drop(src, dst)`` alone): that cuts the link, so ``dst`` also stops
  hearing ``src`` and declares it lost after ``timeout_in_ms``, as on a real partition.
* :func:`delay`: frames from ``src`` to ``dst`` (of the given kinds) arrive ``seconds`` late.

A frame here is what ``Runtime.stats()`` counts as sent: a DATA, ERROR, ABORT or GOODBYE frame,
to any peer. Each fault names parties; :func:`check_plan` refuses an unknown party or two
kill/freeze faults for one party with a ``ValueError`` naming it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TypeAlias

from .wire import Kind

__all__ = [
    "KINDS",
    "Delay",
    "Drop",
    "Fault",
    "Freeze",
    "Kill",
    "Killed",
    "check_plan",
    "delay",
    "drop",
    "freeze",
    "kill",
]

#: The kinds of frame a drop or delay may select, by name.
KINDS: dict[str, Kind] = {
    "data": Kind.DATA,
    "error": Kind.ERROR,
    "abort": Kind.ABORT,
    "goodbye": Kind.GOODBYE,
}


@dataclass(frozen=True)
class Kill:
    """``party`` dies right after its ``after_frames``-th frame (see the module doc)."""

    party: str
    after_frames: int = 0

    def __repr__(self) -> str:
        return f"kill({self.party!r}, after_frames={self.after_frames})"


@dataclass(frozen=True)
class Freeze:
    """``party`` stops responding after its ``after_frames``-th frame (see the module doc)."""

    party: str
    after_frames: int = 0

    def __repr__(self) -> str:
        return f"freeze({self.party!r}, after_frames={self.after_frames})"


@dataclass(frozen=True)
class Drop:
    """Frames of ``kinds`` from ``src`` to ``dst`` are lost: the first ``count``, or all."""

    src: str
    dst: str
    kinds: frozenset[Kind]
    count: int | None = None

    def __repr__(self) -> str:
        return f"drop({self.src!r}, {self.dst!r}, kinds={_names(self.kinds)}, count={self.count})"


@dataclass(frozen=True)
class Delay:
    """Frames of ``kinds`` from ``src`` to ``dst`` arrive ``seconds`` late."""

    src: str
    dst: str
    seconds: float
    kinds: frozenset[Kind]

    def __repr__(self) -> str:
        return f"delay({self.src!r}, {self.dst!r}, {self.seconds}, kinds={_names(self.kinds)})"


Fault: TypeAlias = "Kill | Freeze | Drop | Delay"


@dataclass(frozen=True)
class Killed:
    """The entry of ``simulate``'s result for a party a :func:`kill` fault stopped."""

    party: str
    after_frames: int


def _names(kinds: frozenset[Kind]) -> list[str]:
    return [name for name, kind in KINDS.items() if kind in kinds]


def _name(value: object, what: str) -> str:
    if not isinstance(value, str) or not value:
        raise TypeError(f"{what}: expected a party name, got {value!r}")
    return value


def _frames(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"after_frames: expected an integer >= 0, got {value!r}")
    return value


def _kinds(kinds: Iterable[str] | str | None) -> frozenset[Kind]:
    if kinds is None:
        return frozenset(KINDS.values())
    names = [kinds] if isinstance(kinds, str) else list(kinds)
    unknown = [k for k in names if k not in KINDS]
    if unknown or not names:
        raise ValueError(f"kinds: expected some of {sorted(KINDS)}, got {kinds!r}")
    return frozenset(KINDS[k] for k in names)


def _pair(src: object, dst: object) -> tuple[str, str]:
    a, b = _name(src, "src"), _name(dst, "dst")
    if a == b:
        raise ValueError(f"src and dst are the same party {a!r}: frames go between two parties")
    return a, b


def kill(party: str, *, after_frames: int = 0) -> Kill:
    """Kill ``party`` right after its ``after_frames``-th frame (``0``: at once)."""
    return Kill(_name(party, "party"), _frames(after_frames))


def freeze(party: str, *, after_frames: int = 0) -> Freeze:
    """Freeze ``party`` after its ``after_frames``-th frame (``0``: from the start)."""
    return Freeze(_name(party, "party"), _frames(after_frames))


def drop(
    src: str, dst: str, *, kinds: Iterable[str] | str | None = None, count: int | None = None
) -> Drop:
    """Lose frames from ``src`` to ``dst``: those of ``kinds`` (names in :data:`KINDS`; all kinds
    by default), the first ``count`` of them (every one if ``None``)."""
    a, b = _pair(src, dst)
    if count is not None and (isinstance(count, bool) or not isinstance(count, int) or count < 1):
        raise ValueError(f"count: expected an integer >= 1 or None, got {count!r}")
    return Drop(a, b, _kinds(kinds), count)


def delay(src: str, dst: str, seconds: float, *, kinds: Iterable[str] | str | None = None) -> Delay:
    """Make frames from ``src`` to ``dst`` (of ``kinds``; all by default) ``seconds`` late."""
    a, b = _pair(src, dst)
    if (
        isinstance(seconds, bool)
        or not isinstance(seconds, (int, float))
        or not math.isfinite(seconds)
        or seconds < 0
    ):
        raise ValueError(f"seconds: expected a finite number >= 0, got {seconds!r}")
    return Delay(a, b, float(seconds), _kinds(kinds))


def check_plan(faults: Iterable[object], parties: Sequence[str]) -> list[Fault]:
    """The faults of a plan, checked against ``parties``.

    Raises ``TypeError`` for anything that is not a fault (made by :func:`kill`, :func:`freeze`,
    :func:`drop` or :func:`delay`), ``ValueError`` for a party not in ``parties`` or a party
    both killed and frozen, or killed or frozen twice.
    """
    if isinstance(faults, (str, bytes)) or not isinstance(faults, Iterable):
        raise TypeError(f"faults: expected a list of faults, got {faults!r}")
    plan: list[Fault] = []
    stopped: set[str] = set()
    for fault in faults:
        if not isinstance(fault, (Kill, Freeze, Drop, Delay)):
            raise TypeError(
                f"faults: expected faults made by silo.faults.kill, freeze, drop or delay, "
                f"got {fault!r}"
            )
        named = [fault.party] if isinstance(fault, (Kill, Freeze)) else [fault.src, fault.dst]
        for party in named:
            if party not in parties:
                raise ValueError(f"{fault!r}: unknown party {party!r}, expected one of {parties}")
        if isinstance(fault, (Kill, Freeze)):
            if fault.party in stopped:
                raise ValueError(
                    f"{fault!r}: party {fault.party!r} is already killed or frozen by the plan"
                )
            stopped.add(fault.party)
        plan.append(fault)
    return plan
