"""Running a call pinned to this party: wait for its inputs, run it, fill its outputs.

Coroutine functions run on the loop; plain functions and actor methods where the party's
executor runs them (:mod:`silo.executors`: threads, processes or a Dask cluster). A failed input
fails the outputs without running the call; an exception from the call becomes the outputs'
exception, its own type kept.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable, Mapping
from typing import Any

from .actors import Actor, fail_all
from .config import ExecutorConfig
from .divergence import running_call
from .errors import ActorKilledError
from .executors import Executor, Runner, create_executor
from .graph import FedObject, substitute
from .objects import ObjectTable
from .stats import Counters
from .tasks import TaskSupervisor
from .tracing import Tracing
from .wire import began_in

__all__ = ["Execution"]


class Execution:
    """Runs this party's calls and owns its actors and its executor (:meth:`start` makes it).
    ``aclose`` is idempotent.

    Every call and actor is a task of the runtime's :class:`~silo.tasks.TaskSupervisor`, so a
    failure nobody awaits still reaches the loop's exception handler.
    """

    def __init__(
        self,
        *,
        party: str,
        table: ObjectTable,
        tasks: TaskSupervisor,
        counters: Counters,
        tracing: Tracing | None,
        executor: ExecutorConfig,
    ) -> None:
        self._party = party
        self._executor_config = executor
        self._executor: Executor | None = None
        self._table = table
        self._tasks = tasks
        self._counters = counters
        self._tracing = tracing
        self._coroutine_functions: dict[object, bool] = {}
        self._actors: dict[int, Actor] = {}

    async def start(self) -> None:
        """Make and start the executor; raises :class:`~silo.errors.WorkerLostError` if its
        cluster cannot be reached."""
        self._executor = await create_executor(self._executor_config, self._party)

    @property
    def executor(self) -> Executor:
        assert self._executor is not None, "execution not started"
        return self._executor

    # ------------------------------------------------------------------ calls

    def run(
        self,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: Mapping[str, Any],
        deps: list[FedObject],
        outputs: list[asyncio.Future[Any]],
        seq: int,
    ) -> None:
        """Start the call ``seq`` of ``fn``: it waits for ``deps``, runs, fills ``outputs``."""
        self._tasks.spawn(
            self.execute(fn, args, kwargs, deps, outputs, self.executor.run, seq=seq),
            f"silo-call-{getattr(fn, '__name__', 'fn')}-{seq}",
        )

    async def execute(
        self,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: Mapping[str, Any],
        deps: list[FedObject],
        outputs: list[asyncio.Future[Any]],
        run: Runner,
        seq: int = 0,
    ) -> None:
        """Wait for the inputs, run ``fn`` (on the loop if async, else with ``run``), fill outputs.

        A failed input fails the outputs without running ``fn``; an exception from ``fn``
        becomes the outputs' exception, its own type kept. While ``fn`` runs it is counted as
        running call ``seq`` (0: not known).
        """
        token = 0
        span = None
        tracing = self._tracing
        try:
            values = await self._table.resolve(deps) if deps else {}
            call_args, call_kwargs = substitute(args, kwargs, values)
            name = _call_name(fn)
            token = self._counters.call_started(name, seq)
            if tracing is not None:
                span = tracing.call_started(name, seq, deps)
            running = running_call.set(getattr(fn, "__qualname__", "a remote call"))
            try:
                if self._is_coroutine(fn):
                    result = await fn(*call_args, **call_kwargs)
                else:
                    result = await run(fn, call_args, call_kwargs)
            except Exception as exc:
                began_in(exc, name, seq)
                raise
            finally:
                running_call.reset(running)
        except Exception as exc:
            if span is not None and tracing is not None:
                tracing.end(span, exc)
                span = None
            fail_all(outputs, exc)
            return
        finally:
            self._counters.call_ended(token)
            if span is not None and tracing is not None:
                tracing.end(span, None)
        if len(outputs) == 1:
            if not outputs[0].done():
                outputs[0].set_result(result)
            return
        try:
            items = list(result)
            if len(items) != len(outputs):
                raise ValueError(
                    f"{getattr(fn, '__qualname__', fn)} was declared with "
                    f"num_returns={len(outputs)} but returned {len(items)} values"
                )
        except (TypeError, ValueError) as exc:
            fail_all(outputs, exc)
            return
        for fut, item in zip(outputs, items, strict=True):
            if not fut.done():
                fut.set_result(item)

    def _is_coroutine(self, fn: Callable[..., Any]) -> bool:
        key = getattr(fn, "__func__", fn)
        flag = self._coroutine_functions.get(key)
        if flag is None:
            flag = self._coroutine_functions[key] = inspect.iscoroutinefunction(fn)
        return flag

    # ------------------------------------------------------------------ actors

    @property
    def actors(self) -> Mapping[int, Actor]:
        """The live actors of this party by id; an actor leaves once it has stopped."""
        return self._actors

    def create_actor(
        self,
        actor_id: int,
        cls: type,
        args: tuple[Any, ...],
        kwargs: Mapping[str, Any],
        deps: list[FedObject],
    ) -> None:
        """Construct an instance of ``cls`` here once ``deps`` are there."""
        actor = Actor(
            cls=cls,
            name=f"{cls.__name__}#{actor_id}",
            execute=self.execute,
            worker=self.executor.actor(f"{cls.__name__}#{actor_id}"),
            spawn=lambda coro, name: self._tasks.spawn(coro, name, self._tasks.actors),
        )
        self._actors[actor_id] = actor
        actor.task.add_done_callback(lambda _: self._actors.pop(actor_id, None))
        actor.construct(args, kwargs, deps)

    def call_actor(
        self,
        actor_id: int,
        method: str,
        args: tuple[Any, ...],
        kwargs: Mapping[str, Any],
        deps: list[FedObject],
        outputs: list[asyncio.Future[Any]],
    ) -> None:
        """Queue ``method`` on the actor; fails ``outputs`` if it was killed."""
        actor = self._actors.get(actor_id)
        if actor is None:
            # Created here (every party issues the same calls) and since stopped by kill.
            fail_all(
                outputs, ActorKilledError(f"actor #{actor_id} was killed; cannot run .{method}")
            )
        else:
            actor.call(method, args, kwargs, deps, outputs)

    def finish_actor(self, actor_id: int) -> None:
        """No call can reach the actor any more: it stops once its queued calls have run."""
        actor = self._actors.get(actor_id)
        if actor is not None:
            actor.finish()

    def kill_actor(self, actor_id: int) -> None:
        actor = self._actors.get(actor_id)
        if actor is not None:
            actor.kill()

    def finish_all(self) -> None:
        """Clean shutdown: every actor stops once its queued calls have run."""
        for actor in list(self._actors.values()):
            actor.finish()

    async def aclose(self) -> None:
        """Stop every actor and the executor now (a running call ends on its own); closes the
        Dask client, never the user's cluster. Bounded in time."""
        for actor in list(self._actors.values()):
            actor.close()
        if self._executor is not None:
            await self._executor.aclose()


def _call_name(fn: Callable[..., Any]) -> str:
    name = getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None)
    return name if isinstance(name, str) else type(fn).__name__
