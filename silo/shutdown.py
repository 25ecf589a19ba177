"""The single-shot shutdown future.

Theory of operation
-------------------
A runtime can be asked to stop by many hands, often at nearly the same moment: the program's own
``silo.shutdown()``, the end of ``async with silo.init(...)``, an exception escaping the program,
a peer's error frame, a sending failure, SIGINT or SIGTERM. Each of them calls
:meth:`ShutdownFuture.request` with a :class:`ShutdownRequest`. The first call resolves the
future and wins; every later call returns ``False`` and changes nothing. The runtime attaches its
teardown to the future once, so the teardown (and with it the sending-failure handler, the error
broadcast and the decision to flush or drop pending sends) runs exactly once, with the winning
request's reason.

Everyone who wants to know when the runtime is gone awaits :meth:`wait_finished`, which resolves
when the teardown has completed, whoever started it.

There is no lock (the event loop is single-threaded, and ``request`` has no await point), no
signal sent to ourselves and no ``KeyboardInterrupt`` injected anywhere.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum

__all__ = ["Reason", "ShutdownFuture", "ShutdownRequest"]


class Reason(Enum):
    """Why the runtime is stopping."""

    INTENDED = "intended"
    PROGRAM_ERROR = "program error"
    REMOTE_ERROR = "remote error"
    SENDING_FAILURE = "sending failure"
    SIGNAL = "signal"

    @property
    def is_error(self) -> bool:
        return self is not Reason.INTENDED


@dataclass(frozen=True)
class ShutdownRequest:
    reason: Reason
    error: BaseException | None = None
    detail: str = ""


class ShutdownFuture:
    """One shutdown per runtime: the first :meth:`request` wins, the rest are no-ops."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._requested: asyncio.Future[ShutdownRequest] = loop.create_future()
        self._finished: asyncio.Future[None] = loop.create_future()

    def request(self, request: ShutdownRequest) -> bool:
        """Ask for shutdown. Returns ``True`` for the first caller only. Never raises."""
        if self._requested.done():
            return False
        self._requested.set_result(request)
        return True

    @property
    def requested(self) -> ShutdownRequest | None:
        """The winning request, or ``None`` while the runtime runs."""
        return self._requested.result() if self._requested.done() else None

    def on_requested(self, callback: Callable[[ShutdownRequest], None]) -> None:
        """Run ``callback(request)`` once, as soon as the first request lands."""

        def _fire(fut: asyncio.Future[ShutdownRequest]) -> None:
            callback(fut.result())

        self._requested.add_done_callback(_fire)

    async def wait_requested(self) -> ShutdownRequest:
        return await asyncio.shield(self._requested)

    def mark_finished(self) -> None:
        """Called by the teardown when it is complete. Idempotent."""
        if not self._finished.done():
            self._finished.set_result(None)

    @property
    def finished(self) -> bool:
        return self._finished.done()

    async def wait_finished(self) -> None:
        """Wait until the teardown has completed; cancelling the waiter does not cancel it."""
        await asyncio.shield(self._finished)
