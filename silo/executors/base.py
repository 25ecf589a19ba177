"""What an executor is: the place where a party's plain functions and actors run.

An :class:`Executor` runs one plain call (:meth:`Executor.run`) and makes an
:class:`ActorWorker` per actor, which builds the instance where the executor runs it and then
runs its methods, one at a time, in the order they are awaited. Coroutine functions never reach
an executor: :mod:`silo.execution` runs them on the party's loop.

Every failure of a call (its own exception, a worker process killed, a Dask scheduler gone) is
raised from the awaitable; the caller turns it into the call's failed objects, so it is broadcast
like any other. A lost worker or cluster raises :class:`~silo.errors.WorkerLostError`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

__all__ = ["ActorWorker", "Executor", "MethodRef", "Runner"]

#: ``run(fn, args, kwargs)``: run one call somewhere and return its result (or raise).
Runner = Callable[[Callable[..., Any], tuple[Any, ...], Mapping[str, Any]], Awaitable[Any]]


class MethodRef:
    """A method of an actor whose instance lives in another process, named for the logs.

    Not a coroutine function, so :mod:`silo.execution` hands it to the actor's worker, which
    calls the method ``name`` on the instance where it lives.
    """

    def __init__(self, cls: Callable[..., Any], name: str) -> None:
        self.name = name
        self.__qualname__ = f"{getattr(cls, '__qualname__', cls)}.{name}"
        self.__name__ = name

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        raise TypeError(f"{self.__qualname__} runs only through its actor's worker")


class ActorWorker(ABC):
    """One actor's instance where its executor runs it. ``close`` is idempotent."""

    @abstractmethod
    async def construct(
        self, cls: Callable[..., Any], args: tuple[Any, ...], kwargs: Mapping[str, Any]
    ) -> None:
        """Build the instance; raises what the constructor raised (or WorkerLostError)."""

    @abstractmethod
    def method(self, name: str) -> Callable[..., Any]:
        """What to give :meth:`run` to call method ``name`` (the bound method when local)."""

    @abstractmethod
    async def run(
        self, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: Mapping[str, Any]
    ) -> Any:
        """Run one method got from :meth:`method`; the caller awaits one call at a time."""

    @abstractmethod
    def close(self) -> None:
        """Drop the instance and its worker at once; a running call ends or is abandoned."""


class Executor(ABC):
    """Runs a party's plain calls and hosts its actors. ``aclose`` is idempotent and bounded."""

    kind: str

    async def start(self) -> None:  # noqa: B027 - most executors need no start
        """Connect or start what the executor needs; raises WorkerLostError if it cannot."""

    @abstractmethod
    async def run(
        self, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: Mapping[str, Any]
    ) -> Any:
        """Run the plain call ``fn(*args, **kwargs)`` and return its result, or raise."""

    @abstractmethod
    def actor(self, name: str) -> ActorWorker:
        """A worker for one new actor (named ``name`` in threads, processes and logs)."""

    @abstractmethod
    async def aclose(self) -> None:
        """Release everything within a few seconds; never raises, never waits on user code."""
