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

from .divergence import running_call
from .executors import Runner
from .graph import FedObject, substitute
from .stats import Counters
from .tracing import Tracing
from .wire import ObjectId

__all__ = ["Execution", "fail_all"]


class Execution:
    """Mixed into :class:`~silo.runtime.Runtime`, which provides the state and hooks below."""

    _asked: set[ObjectId]
    _coroutine_functions: dict[object, bool]
    counters: Counters
    tracing: Tracing | None

    def future(self, object_id: ObjectId, owner: str) -> asyncio.Future[Any]:
        raise NotImplementedError

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
        running call ``seq`` (0: not known) in ``counters``.
        """
        token = 0
        span = None
        try:
            values = await self.resolve(deps) if deps else {}
            call_args, call_kwargs = substitute(args, kwargs, values)
            name = _call_name(fn)
            token = self.counters.call_started(name, seq)
            if self.tracing is not None:
                span = self.tracing.call_started(name, seq, deps)
            running = running_call.set(getattr(fn, "__qualname__", "a remote call"))
            try:
                if self._is_coroutine(fn):
                    result = await fn(*call_args, **call_kwargs)
                else:
                    result = await run(fn, call_args, call_kwargs)
            finally:
                running_call.reset(running)
        except Exception as exc:
            if span is not None and self.tracing is not None:
                self.tracing.end(span, exc)
                span = None
            fail_all(outputs, exc)
            return
        finally:
            self.counters.call_ended(token)
            if span is not None and self.tracing is not None:
                self.tracing.end(span, None)
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

    async def resolve(self, objs: list[FedObject]) -> dict[ObjectId, Any]:
        """The values of ``objs``; raises the first failure as soon as it is known."""
        futs = []
        for obj in objs:
            self._asked.add(obj.id)
            futs.append(self.future(obj.id, obj.owner))
        pending = [f for f in futs if not f.done()]
        if len(pending) == 1:
            # Shielded: cancelling the waiter (a get's timeout) must not cancel the object.
            await asyncio.shield(pending[0])
        while len(pending) > 1:
            done, still = await asyncio.wait(pending, return_when=asyncio.FIRST_EXCEPTION)
            for fut in done:
                exc = fut.exception()
                if exc is not None:
                    raise exc
            pending = list(still)
        return {obj.id: fut.result() for obj, fut in zip(objs, futs, strict=True)}


def _call_name(fn: Callable[..., Any]) -> str:
    name = getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None)
    return name if isinstance(name, str) else type(fn).__name__


def fail_all(outputs: list[asyncio.Future[Any]], exc: BaseException) -> None:
    """Fail every output not already settled."""
    for fut in outputs:
        if not fut.done():
            fut.set_exception(exc)
