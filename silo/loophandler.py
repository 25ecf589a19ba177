"""The loop's exception handler: where a failed runtime task that nobody awaits is reported.

Theory of operation. A runtime-owned task (a call, a push, an actor, see ``Runtime.spawn``) is
awaited by nobody, so its failure must not wait for the task to be garbage collected (when asyncio
would report "exception was never retrieved", maybe never). Its done callback hands the failure,
at once and synchronously, to ``loop.call_exception_handler`` with the task in the context. The
handler is the one path of such failures:

* one :class:`Dispatcher` per loop, installed by the first runtime started on that loop, which
  remembers the handler that was there before (the user's, or ``None``);
* every runtime on the loop registers with it, and unregisters when it shuts down, in any order;
  the last one to leave puts the previous handler back (unless the user replaced the dispatcher
  meanwhile: their handler then stays);
* for each report, the runtime that owns the task (still in its task sets while the callback
  runs) handles it: synchronously, no I/O (it logs, records the shutdown request, whose teardown
  queues the ABORT frame to every peer). Anything no runtime owns goes to the previous handler, or
  to ``loop.default_exception_handler``.

If the user replaced the loop's handler after silo installed its own, the runtime cannot count on
the loop to reach it: :func:`report` then hands the failure to the runtime directly, so an
exception is never lost.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, Protocol

__all__ = ["Dispatcher", "Owner", "report"]

Handler = Callable[[asyncio.AbstractEventLoop, dict[str, Any]], object]


class Owner(Protocol):
    """What the dispatcher asks of a runtime."""

    def owns(self, task_or_future: object) -> bool: ...

    def internal_error(self, exc: BaseException, what: str) -> None: ...


class Dispatcher:
    """The exception handler of one loop, shared by every runtime on it.

    Not thread-safe: used on its loop's thread only.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.previous: Handler | None = loop.get_exception_handler()
        self._owners: list[Owner] = []

    @classmethod
    def join(cls, loop: asyncio.AbstractEventLoop, owner: Owner) -> Dispatcher:
        """Register ``owner`` with the loop's dispatcher, installing one if none is there."""
        current = loop.get_exception_handler()
        dispatcher = current if isinstance(current, Dispatcher) else cls(loop)
        if current is not dispatcher:
            loop.set_exception_handler(dispatcher)
        if owner not in dispatcher._owners:
            dispatcher._owners.append(owner)
        return dispatcher

    def leave(self, owner: Owner) -> None:
        """Unregister ``owner``; the last to leave restores the previous handler. Idempotent."""
        if owner in self._owners:
            self._owners.remove(owner)
        if not self._owners and self.loop.get_exception_handler() is self:
            self.loop.set_exception_handler(self.previous)

    @property
    def owners(self) -> list[Owner]:
        return list(self._owners)

    def __call__(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        source = context.get("task") or context.get("future")
        exc = context.get("exception")
        if source is not None and isinstance(exc, BaseException):
            for owner in self._owners:
                if owner.owns(source):
                    owner.internal_error(exc, str(context.get("message", "unhandled error")))
                    return
        if self.previous is not None:
            self.previous(loop, context)
        else:
            loop.default_exception_handler(context)


def report(owner: Owner, task: asyncio.Task[Any], exc: BaseException) -> None:
    """Hand the failure of ``owner``'s task to the loop's exception handler.

    Falls back to ``owner.internal_error`` when the loop's handler is not a dispatcher that knows
    ``owner`` (replaced by the user, or the runtime is already unregistered), so it is never lost.
    """
    loop = task.get_loop()
    message = f"runtime task {task.get_name()} failed"
    handler = loop.get_exception_handler()
    if isinstance(handler, Dispatcher) and owner in handler.owners:
        loop.call_exception_handler({"message": message, "exception": exc, "task": task})
    else:
        owner.internal_error(exc, message)
