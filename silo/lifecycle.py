"""How a runtime starts waiting for peers, hooks into the loop, and tears down exactly once.

The teardown is attached to the runtime's :class:`~silo.shutdown.ShutdownFuture`, so it runs once,
with the reason of whoever asked first:

* intended: wait for this party's calls and pending sends (flush), then send every peer still
  up a GOODBYE frame and wait for its acknowledgement (bounded), then close;
* an error (the program's, a peer's, a signal, a sending failure): fail every pending object with
  the error, broadcast an ABORT frame to every peer still there, and drop pending sends unless
  ``continue_waiting_for_data_sending_on_error`` is set.

Then, in every case and whatever failed before: stop actors and worker threads, close the
channel, restore the loop's signal and exception handlers, leave the registry, mark the runtime
finished. With ``exit_on_sending_failure`` and a sending failure, the process then exits with
status 1 (``SystemExit`` raised from a loop callback, which ends ``asyncio.run`` however the
program was parked; ``runtime.exit_process`` instead where set, as ``silo.fed`` does). After
SIGINT or SIGTERM, the task that called ``init`` is cancelled; the end of
``async with silo.init(...)`` turns that into ``KeyboardInterrupt`` (SIGINT) or
``SystemExit(143)`` (SIGTERM), as the signal would have done without silo.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import threading
from collections.abc import Callable

from .config import CrossSiloCommConfig
from .errors import BarrierTimeoutError, FedRemoteError, SendingFailure
from .execution import Execution
from .log import PartyLogger
from .loophandler import Dispatcher
from .objects import ObjectTable
from .peers import Peers
from .shutdown import Reason, ShutdownFuture, ShutdownRequest, abort_info, pending_error
from .tasks import TaskSupervisor
from .tracebacks import headline
from .transport import Transport
from .wire import ErrorInfo

__all__ = ["Lifecycle"]

_SIGNALS = (signal.SIGINT, signal.SIGTERM)
_BROADCAST_TIMEOUT = 2.0

#: The lifecycles started on each loop, in the order they started: who hears a signal there.
_on_loop: dict[asyncio.AbstractEventLoop, list[Lifecycle]] = {}


class Lifecycle:
    """How one party's runtime starts, hooks into its loop, and stops exactly once."""

    def __init__(
        self,
        *,
        party: str,
        comm: CrossSiloCommConfig,
        log: PartyLogger,
        loop: asyncio.AbstractEventLoop,
        shutdown: ShutdownFuture,
        table: ObjectTable,
        tasks: TaskSupervisor,
        peers: Peers,
        execution: Execution,
        transport: Transport,
    ) -> None:
        self._party = party
        self._comm = comm
        self._log = log
        self._loop = loop
        self._shutdown = shutdown
        self._table = table
        self._tasks = tasks
        self._peers = peers
        self._execution = execution
        self._transport = transport
        self._dispatcher: Dispatcher | None = None
        self._teardown_task: asyncio.Task[None] | None = None
        #: The task that called ``init``: cancelled after a signal while the program runs.
        self.main_task: asyncio.Task[object] | None = None
        #: Set when the program has left ``async with silo.init(...)``: a signal then no longer
        #: cancels it.
        self.program_done = False
        #: Called on the loop after the teardown when ``exit_on_sending_failure`` ends the
        #: process; ``None`` raises ``SystemExit(1)`` there. ``silo.fed`` sets its own, since its
        #: loop runs on a background thread where ``SystemExit`` would end only that thread.
        self.exit_process: Callable[[], None] | None = None
        shutdown.on_requested(self._begin_teardown)

    # ------------------------------------------------------------------ state

    @property
    def request(self) -> ShutdownRequest | None:
        """The request that stopped the runtime, or ``None`` while it runs."""
        return self._shutdown.requested

    def ask(self, reason: Reason, error: BaseException | None = None, detail: str = "") -> bool:
        """Ask for shutdown; the first request wins. Returns whether this one won."""
        return self._shutdown.request(ShutdownRequest(reason, error, detail))

    def pending_error(self) -> BaseException:
        """What a pending get raises once the runtime has stopped (see
        :func:`silo.shutdown.pending_error`)."""
        return pending_error(self._party, self._shutdown.requested)

    async def shutdown(self) -> None:
        """Intended shutdown: flush pending sends, say goodbye, close. Idempotent.

        If another shutdown (error, signal, sending failure) came first, waits for that one.
        """
        self.ask(Reason.INTENDED)
        await self._shutdown.wait_finished()

    async def wait_finished(self) -> None:
        """Wait until the teardown has completed, whoever started it; asks for nothing."""
        await self._shutdown.wait_finished()

    async def fail(self, error: BaseException) -> None:
        """The program failed with ``error``: broadcast it to every peer and shut down."""
        self.ask(Reason.PROGRAM_ERROR, error)
        await self._shutdown.wait_finished()

    # ------------------------------------------------------------------ start

    async def start(self) -> None:
        """Listen and start connecting to peers; route signals and unclaimed failures of runtime
        tasks here."""
        await self._execution.start()
        try:
            await self._transport.start()
        except BaseException:
            await self._execution.aclose()
            raise
        self.main_task = asyncio.current_task()
        self._install_hooks()

    async def barrier(self) -> None:
        """Wait until every peer answers, within ``timeout_in_ms``; else shut down and raise
        :class:`BarrierTimeoutError`."""
        missing = await self._transport.wait_peers(self._comm.timeout_s)
        if missing:
            error = BarrierTimeoutError(
                f"barrier_on_initializing: party {self._party!r} got no answer from "
                f"{', '.join(missing)} within {self._comm.timeout_in_ms} ms",
                missing,
            )
            await self.shutdown()
            raise error

    # ------------------------------------------------------------------ loop hooks

    def owns(self, task_or_future: object) -> bool:
        """Whether a task is this runtime's (asked by the loop's :class:`Dispatcher`)."""
        return self._tasks.owns(task_or_future)

    def internal_error(self, exc: BaseException, what: str) -> None:
        """A runtime-owned task failed and nobody awaits it: broadcast and shut down."""
        self._log.error("%s: %r", what, exc, exc_info=exc)
        self.ask(Reason.PROGRAM_ERROR, exc, what)

    def _install_hooks(self) -> None:
        """Join the loop's exception :class:`Dispatcher`; on the main thread, route SIGINT and
        SIGTERM to every runtime of the loop (installed by the first, removed by the last)."""
        loop = self._loop
        self._dispatcher = Dispatcher.join(loop, self)
        if threading.current_thread() is not threading.main_thread():
            return
        started = _on_loop.setdefault(loop, [])
        if not started:
            for sig in _SIGNALS:
                with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                    loop.add_signal_handler(sig, _on_signal, loop, sig)
        started.append(self)

    def _uninstall_hooks(self) -> None:
        if self._dispatcher is not None:
            self._dispatcher.leave(self)
        started = _on_loop.get(self._loop)
        if started is None or self not in started:
            return
        started.remove(self)
        if not started:
            del _on_loop[self._loop]
            for sig in _SIGNALS:
                with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                    self._loop.remove_signal_handler(sig)

    def on_signal(self, sig: signal.Signals, detail: str = "") -> None:
        """A signal (or, for ``silo.fed``, its stand-in): shut down with what it means; during
        a shutdown already under way, stop waiting for calls and sends."""
        self._log.warning("received %s: shutting down", detail or sig.name)
        if not self.ask(Reason.SIGNAL, _signal_error(sig), detail or sig.name):
            self.hurry()

    def hurry(self) -> None:
        """A signal during a shutdown already under way: stop waiting for calls and sends."""
        tasks = self._tasks
        for task in [*tasks.calls, *tasks.sends, *tasks.actors]:
            task.cancel()

    # ------------------------------------------------------------------ teardown

    def _begin_teardown(self, request: ShutdownRequest) -> None:
        self._teardown_task = self._loop.create_task(
            self._teardown(request), name=f"silo-teardown-{self._party}"
        )

    async def _teardown(self, request: ShutdownRequest) -> None:
        """Stop the runtime once; every step runs even if an earlier one fails."""
        log = self._log
        if request.reason.is_error:
            # A peer's failure is reported where the program raises it; this party's own, here.
            from_a_peer = request.reason is Reason.REMOTE_ERROR or isinstance(
                request.error, FedRemoteError
            )
            log.log(
                logging.DEBUG if from_a_peer else logging.WARNING,
                "shutting down after %s: %s",
                request.reason.value,
                request.detail or (headline(request.error) if request.error else ""),
            )
        else:
            log.info("shutting down")
        try:
            if request.reason.is_error:
                await self._stop_after_error(request)
            else:
                await self._stop_cleanly()
            self._table.warn_unasked()
        except Exception as exc:
            log.error("error during shutdown: %r", exc, exc_info=exc)
        finally:
            await _bounded(list(self._tasks.aux), _BROADCAST_TIMEOUT)
            await self._release(goodbye=not request.reason.is_error)
            if request.reason is Reason.SENDING_FAILURE and self._comm.exit_on_sending_failure:
                log.error("exit_on_sending_failure: exiting with status 1")
                self._loop.call_soon(self.exit_process or _exit_process)
            elif (
                request.reason is Reason.SIGNAL
                and self.main_task is not None
                and not self.program_done
            ):
                self.main_task.cancel(f"silo: {request.detail}")

    async def _stop_cleanly(self) -> None:
        tasks = self._tasks
        self._execution.finish_all()
        while tasks.calls or tasks.sends or tasks.actors:
            await asyncio.wait([*tasks.calls, *tasks.sends, *tasks.actors])
        await self._transport.say_goodbye(min(self._comm.timeout_s, _BROADCAST_TIMEOUT))

    async def _stop_after_error(self, request: ShutdownRequest) -> None:
        tasks = self._tasks
        self._table.fail_pending(self.pending_error())
        await _cancel_all(tasks.calls | tasks.actors)
        if self._comm.continue_waiting_for_data_sending_on_error:
            await _bounded(list(tasks.sends), self._comm.timeout_s)
        await _cancel_all(tasks.sends)
        info = abort_info(self._party, request, expose=self._comm.expose_error_trace)
        await self._broadcast_abort(info)

    async def _broadcast_abort(self, info: ErrorInfo) -> None:
        """Tell every peer still there that this party stopped on an error; bounded per peer."""

        async def one(peer: str) -> None:
            try:
                await asyncio.wait_for(self._transport.send_abort(peer, info), _BROADCAST_TIMEOUT)
            except SendingFailure as exc:
                # A peer that stopped meanwhile (it aborted too) needs no word from us.
                over = peer not in self._peers.live()
                self._log.log(
                    logging.DEBUG if over else logging.WARNING,
                    "the error broadcast could not reach %s: %s",
                    peer,
                    str(exc).splitlines()[0],
                )
            except asyncio.TimeoutError:
                self._log.warning(
                    "the error broadcast to %s timed out after %s s", peer, _BROADCAST_TIMEOUT
                )

        await asyncio.gather(*(one(p) for p in self._peers.live()))

    async def _release(self, *, goodbye: bool) -> None:
        await self._execution.aclose()
        try:
            await self._transport.aclose(goodbye=goodbye)
        except Exception as exc:
            self._log.warning("closing the channel failed: %r", exc)
        self._uninstall_hooks()
        self._shutdown.mark_finished()
        self._log.debug("shut down")


def _on_signal(loop: asyncio.AbstractEventLoop, sig: signal.Signals) -> None:
    for lifecycle in list(_on_loop.get(loop, ())):
        lifecycle.on_signal(sig)


def _signal_error(sig: signal.Signals) -> BaseException:
    if sig == signal.SIGINT:
        return KeyboardInterrupt()
    return SystemExit(128 + int(sig))


async def _bounded(aws: list[asyncio.Task[object]], timeout: float) -> None:
    if aws:
        await asyncio.wait(aws, timeout=timeout)


async def _cancel_all(tasks: set[asyncio.Task[object]]) -> None:
    pending = [t for t in tasks if not t.done()]
    for task in pending:
        task.cancel()
    if pending:
        await asyncio.wait(pending, timeout=1.0)


def _exit_process() -> None:
    raise SystemExit(1)
