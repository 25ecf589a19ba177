"""Actors living in this party: one instance, its methods run one at a time in submission order.

Each actor has one worker from the party's executor (:mod:`silo.executors`): a daemon thread of
its own, a worker process of its own, or a Dask actor; so an instance always runs in the same
place (as in Ray) and never blocks the loop. Calls queue in submission order; a call waits for
its inputs in turn, so a later call never overtakes an earlier one.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from .errors import ActorKilledError
from .executors import ActorWorker, Runner
from .graph import FedObject

__all__ = ["Actor", "Execute", "fail_all"]

#: ``execute(fn, args, kwargs, deps, outputs, run)``: resolve inputs, run, fill the outputs.
Execute = Callable[
    [
        Callable[..., Any],
        tuple[Any, ...],
        Mapping[str, Any],
        list[FedObject],
        list["asyncio.Future[Any]"],
        Runner,
    ],
    Awaitable[None],
]


@dataclass
class _Call:
    method: str | None
    args: tuple[Any, ...]
    kwargs: Mapping[str, Any]
    deps: list[FedObject]
    outputs: list[asyncio.Future[Any]]


class Actor:
    """An actor instance owned by this party. ``close`` is idempotent."""

    def __init__(
        self,
        *,
        cls: type,
        name: str,
        execute: Execute,
        worker: ActorWorker,
        spawn: Callable[[Awaitable[None], str], asyncio.Task[None]],
    ) -> None:
        self.name = name
        self._cls = cls
        self._execute = execute
        self._queue: asyncio.Queue[_Call | None] = asyncio.Queue()
        self._worker = worker
        self._broken: BaseException | None = None
        self._killed = False
        self._task = spawn(self._serve(), f"silo-actor-{name}")

    def construct(
        self, args: tuple[Any, ...], kwargs: Mapping[str, Any], deps: list[FedObject]
    ) -> None:
        self._queue.put_nowait(_Call(None, args, kwargs, deps, []))

    def call(
        self,
        method: str,
        args: tuple[Any, ...],
        kwargs: Mapping[str, Any],
        deps: list[FedObject],
        outputs: list[asyncio.Future[Any]],
    ) -> None:
        if self._killed:
            fail_all(
                outputs, ActorKilledError(f"actor {self.name} was killed; cannot run .{method}")
            )
            return
        self._queue.put_nowait(_Call(method, args, kwargs, deps, outputs))

    def kill(self) -> None:
        """Stop the actor: queued calls fail with :class:`ActorKilledError`; a running one ends."""
        if self._killed:
            return
        self._killed = True
        while not self._queue.empty():
            item = self._queue.get_nowait()
            if item is not None:
                fail_all(
                    item.outputs,
                    ActorKilledError(f"actor {self.name} was killed before .{item.method} ran"),
                )
        self._queue.put_nowait(None)

    def finish(self) -> None:
        """Stop once the calls already queued have run (clean shutdown)."""
        if not self._killed:
            self._killed = True
            self._queue.put_nowait(None)

    @property
    def task(self) -> asyncio.Task[None]:
        """The task serving the calls; done once the actor is stopped."""
        return self._task

    def close(self) -> None:
        self._killed = True
        self._task.cancel()
        self._worker.close()

    async def _serve(self) -> None:
        while True:
            item = await self._queue.get()
            if item is None:
                self._worker.close()
                return
            if item.method is None:
                await self._construct(item)
                continue
            if self._broken is not None:
                fail_all(item.outputs, self._broken)
                continue
            method = self._worker.method(item.method)
            await self._execute(
                method, item.args, item.kwargs, item.deps, item.outputs, self._worker.run
            )

    async def _construct(self, item: _Call) -> None:
        done: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        await self._execute(
            self._cls, item.args, item.kwargs, item.deps, [done], self._worker.construct
        )
        if done.exception() is not None:
            self._broken = done.exception()


def fail_all(outputs: list[asyncio.Future[Any]], exc: BaseException) -> None:
    """Fail every output not already settled."""
    for fut in outputs:
        if not fut.done():
            fut.set_exception(exc)
