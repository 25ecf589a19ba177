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

What a stopped runtime means to its callers is decided here, once, from the winning request:
:func:`closed_error` (a new call or ``get`` after shutdown), :func:`pending_error` (what a get
still waiting raises), :func:`abort_info` (what the ABORT frame tells the peers) and
:func:`ending_error` (what the end of the program raises, for ``async with silo.init(...)`` and
``python -m silo run`` alike).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum

from .errors import FedRemoteError, RuntimeClosedError
from .wire import ErrorInfo

__all__ = [
    "Reason",
    "ShutdownFuture",
    "ShutdownRequest",
    "abort_info",
    "closed_error",
    "ending_error",
    "pending_error",
]


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


def closed_error(party: str, request: ShutdownRequest | None) -> RuntimeClosedError:
    """What using ``party``'s runtime raises once it is shut down (or shutting down)."""
    why = f" ({request.reason.value})" if request is not None else ""
    return RuntimeClosedError(f"the silo runtime of party {party!r} is shut down{why}")


def pending_error(party: str, request: ShutdownRequest | None) -> BaseException:
    """What a get still waiting in ``party`` raises once its runtime stopped on ``request``.

    After an intended shutdown, :class:`RuntimeClosedError`; after an error, the
    :class:`FedRemoteError` that stopped it, or one naming ``party`` for its own failure.
    """
    if request is None or not request.reason.is_error:
        return RuntimeClosedError(f"the silo runtime of party {party!r} is shut down")
    if isinstance(request.error, FedRemoteError):
        return request.error
    return FedRemoteError(party)


def abort_info(party: str, request: ShutdownRequest, *, expose: bool) -> ErrorInfo:
    """What the ABORT frame of ``party`` stopping on ``request`` tells its peers.

    The error itself (as an error frame would carry it) unless it is a signal's; for a signal, only
    which party stopped and on what (and with ``expose``, the signal's exception type).
    """
    error = request.error
    if isinstance(error, FedRemoteError) or (
        isinstance(error, Exception) and request.reason is not Reason.SIGNAL
    ):
        return ErrorInfo.from_exception(error, party=party, expose=expose)
    if not expose:
        return ErrorInfo(party)
    what = request.detail or request.reason.value
    return ErrorInfo(
        party, type(error).__name__ if error else "Shutdown", f"party {party} stopped: {what}", ""
    )


def ending_error(request: ShutdownRequest | None, *, program_raised: bool) -> BaseException | None:
    """What the end of a party's program raises, given how its runtime stopped.

    * After SIGINT or SIGTERM: what the signal means (``KeyboardInterrupt``,
      ``SystemExit(128 + n)``), whatever the interrupted program ran into.
    * The program raised anything else: ``None``, its own exception goes on.
    * It finished normally but the job did not (a peer failed or vanished, a runtime task failed,
      a sending failure stopped it; the program caught what its gets raised): that error.
    * Otherwise ``None``.
    """
    if request is None or request.error is None or not request.reason.is_error:
        return None
    if request.reason is Reason.SIGNAL or not program_raised:
        return request.error
    return None


class ShutdownFuture:
    """One shutdown per runtime: the first :meth:`request` wins, the rest are no-ops."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._requested: asyncio.Future[ShutdownRequest] = loop.create_future()
        self._finished: asyncio.Future[None] = loop.create_future()
        self._request: ShutdownRequest | None = None

    def request(self, request: ShutdownRequest) -> bool:
        """Ask for shutdown. Returns ``True`` for the first caller only. Never raises."""
        if self._requested.done():
            return False
        self._request = request
        self._requested.set_result(request)
        return True

    @property
    def requested(self) -> ShutdownRequest | None:
        """The winning request, or ``None`` while the runtime runs (read on every call the
        program makes, so it is a plain attribute)."""
        return self._request

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

    def on_finished(self, callback: Callable[[], None]) -> None:
        """Run ``callback()`` once the teardown is complete (at once if it is)."""
        self._finished.add_done_callback(lambda _: callback())

    @property
    def finished(self) -> bool:
        return self._finished.done()

    async def wait_finished(self) -> None:
        """Wait until the teardown has completed; cancelling the waiter does not cancel it."""
        await asyncio.shield(self._finished)
