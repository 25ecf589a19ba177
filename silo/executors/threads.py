"""The ``threads`` executor: today's worker threads (:mod:`silo.workers`), one per actor."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from ..workers import WorkerPool
from .base import ActorWorker, Executor

__all__ = ["ThreadActor", "ThreadExecutor"]


class ThreadActor(ActorWorker):
    """The instance lives in this process; its methods run on one daemon thread of its own."""

    def __init__(self, name: str) -> None:
        self._pool = WorkerPool(f"silo-actor-{name}", 1)
        self._instance: Any = None

    async def construct(
        self, cls: Callable[..., Any], args: tuple[Any, ...], kwargs: Mapping[str, Any]
    ) -> None:
        self._instance = await self._pool.submit(cls, *args, **kwargs)

    def method(self, name: str) -> Callable[..., Any]:
        return getattr(self._instance, name)  # type: ignore[no-any-return]

    async def run(
        self, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: Mapping[str, Any]
    ) -> Any:
        return await self._pool.submit(fn, *args, **kwargs)

    def close(self) -> None:
        self._pool.close()
        self._instance = None


class ThreadExecutor(Executor):
    """Up to ``max_workers`` daemon threads for plain calls, started on demand."""

    kind = "threads"

    def __init__(self, party: str, max_workers: int) -> None:
        self._pool = WorkerPool(f"silo-{party}", max_workers)

    async def run(
        self, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: Mapping[str, Any]
    ) -> Any:
        return await self._pool.submit(fn, *args, **kwargs)

    def actor(self, name: str) -> ActorWorker:
        return ThreadActor(name)

    async def aclose(self) -> None:
        self._pool.close()
