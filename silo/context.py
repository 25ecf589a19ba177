"""Which runtime is current.

``init`` sets a ``ContextVar`` in the task that called it, so several parties can share one
process and one loop (``simulate``), each task seeing its own. Where no context has one (a later
notebook cell, a callback), the single active runtime of the process is used; with several
active, :class:`NoRuntimeError` says what to do.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextvars import ContextVar

from .core import Core
from .errors import NoRuntimeError
from .shutdown import closed_error

__all__ = [
    "ActiveRuntimes",
    "active_runtimes",
    "current_party_name",
    "current_runtime",
    "set_current",
]

_current: ContextVar[Core | None] = ContextVar("silo_runtime", default=None)


class ActiveRuntimes:
    """The runtimes of this process that are started and not yet shut down."""

    def __init__(self) -> None:
        self._runtimes: list[Core] = []

    def add(self, runtime: Core) -> None:
        self._runtimes.append(runtime)

    def discard(self, runtime: Core) -> None:
        if runtime in self._runtimes:
            self._runtimes.remove(runtime)

    def __iter__(self) -> Iterator[Core]:
        return iter(list(self._runtimes))

    def __len__(self) -> int:
        return len(self._runtimes)


#: The one process-wide registry: "the single active runtime of the process" is a process fact.
active_runtimes = ActiveRuntimes()


def set_current(runtime: Core | None) -> None:
    _current.set(runtime)


def current_party_name() -> str | None:
    """The party whose runtime is current in this context (not the process's only one), or
    ``None``: what tells parties' output apart when several share a process."""
    runtime = _current.get()
    return None if runtime is None else runtime.party


def current_runtime() -> Core:
    """The runtime of this context, else the only active one.

    Raises :class:`NoRuntimeError` when there is none, or several and none is current here;
    :class:`RuntimeClosedError` when this context's runtime is shut down and no other is active.
    """
    runtime = _current.get()
    if runtime is not None and not runtime.closed:
        return runtime
    active = list(active_runtimes)
    if len(active) == 1:
        only: Core = active[0]
        return only
    if not active:
        if runtime is not None:
            raise closed_error(runtime.party, runtime.shutdown_request)
        raise NoRuntimeError("no silo runtime is active: call silo.init(...) first")
    names = ", ".join(sorted(rt.party for rt in active))
    raise NoRuntimeError(
        f"{len(active)} silo runtimes are active in this process (parties {names}) and none is "
        f"current here: call this from the task that ran silo.init(...) or from the main "
        f"function given to silo.simulate(...)"
    )
