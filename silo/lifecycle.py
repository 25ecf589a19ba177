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
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any

from . import context
from .errors import BarrierTimeoutError, FedRemoteError, SendingFailure
from .loophandler import Dispatcher
from .shutdown import Reason, ShutdownRequest, abort_info
from .tracebacks import headline
from .wire import ErrorInfo

if TYPE_CHECKING:
    from .runtime import Runtime

__all__ = ["barrier", "install_hooks", "run_failure_handler", "teardown"]

_SIGNALS = (signal.SIGINT, signal.SIGTERM)
_BROADCAST_TIMEOUT = 2.0


async def barrier(runtime: Runtime) -> None:
    """Wait until every peer answers, within ``timeout_in_ms``; else shut down and raise."""
    missing = await runtime.transport.wait_peers(runtime.comm.timeout_s)
    if missing:
        error = BarrierTimeoutError(
            f"barrier_on_initializing: party {runtime.party!r} got no answer from "
            f"{', '.join(missing)} within {runtime.comm.timeout_in_ms} ms",
            missing,
        )
        await runtime.shutdown()
        raise error


def run_failure_handler(
    runtime: Runtime, handler: Callable[[SendingFailure], object] | None, failure: SendingFailure
) -> None:
    """Run the user's ``sending_failure_handler``; an async one becomes a runtime task."""
    if handler is None:
        return
    try:
        outcome = handler(failure)
    except Exception as exc:
        runtime.log.error("sending_failure_handler raised %r", exc, exc_info=exc)
        return
    if asyncio.iscoroutine(outcome):
        runtime.spawn(_logged(runtime, outcome), "silo-sending-failure-handler", runtime.aux_tasks)


async def _logged(runtime: Runtime, handler: Coroutine[Any, Any, object]) -> None:
    """An async handler's exception is logged, as a plain handler's is; it fails nothing."""
    try:
        await handler
    except Exception as exc:
        runtime.log.error("sending_failure_handler raised %r", exc, exc_info=exc)


# ---------------------------------------------------------------------- loop hooks


def install_hooks(runtime: Runtime) -> None:
    """Route SIGINT/SIGTERM and unclaimed exceptions of runtime tasks to the runtime.

    The exception handler is the loop's :class:`~silo.loophandler.Dispatcher`, shared by every
    runtime on the loop; see :mod:`silo.loophandler`.
    """
    loop = runtime.loop
    runtime.loop_handler = Dispatcher.join(loop, runtime)
    if threading.current_thread() is not threading.main_thread():
        return
    if not any(rt.loop is loop for rt in context.active_runtimes):
        for sig in _SIGNALS:
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.add_signal_handler(sig, _on_signal, loop, sig)


def _on_signal(loop: asyncio.AbstractEventLoop, sig: signal.Signals) -> None:
    for runtime in context.active_runtimes:
        if runtime.loop is loop:
            runtime.log.warning("received %s: shutting down", sig.name)
            if not runtime.request_shutdown(Reason.SIGNAL, _signal_error(sig), sig.name):
                hurry(runtime)


def hurry(runtime: Runtime) -> None:
    """A signal during a shutdown already under way: stop waiting for calls and sends."""
    for task in [*runtime.pending_calls, *runtime.pending_sends, *runtime.actor_tasks]:
        task.cancel()


def _signal_error(sig: signal.Signals) -> BaseException:
    if sig == signal.SIGINT:
        return KeyboardInterrupt()
    return SystemExit(128 + int(sig))


def _uninstall_hooks(runtime: Runtime) -> None:
    loop = runtime.loop
    if runtime.loop_handler is not None:
        runtime.loop_handler.leave(runtime)
    if not any(rt.loop is loop for rt in context.active_runtimes):
        for sig in _SIGNALS:
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.remove_signal_handler(sig)


# ---------------------------------------------------------------------- teardown


async def _bounded(aws: list[Any], timeout: float) -> None:
    if aws:
        await asyncio.wait([asyncio.ensure_future(a) for a in aws], timeout=timeout)


async def _cancel_all(tasks: set[asyncio.Task[Any]]) -> None:
    pending = [t for t in tasks if not t.done()]
    for task in pending:
        task.cancel()
    if pending:
        await asyncio.wait(pending, timeout=1.0)


async def _broadcast_abort(runtime: Runtime, info: ErrorInfo) -> None:
    """Tell every peer still there that this party stopped on an error; bounded per peer."""

    async def one(peer: str) -> None:
        try:
            await asyncio.wait_for(runtime.transport.send_abort(peer, info), _BROADCAST_TIMEOUT)
        except SendingFailure as exc:
            # A peer that stopped meanwhile (it aborted too) needs no word from us.
            over = peer not in runtime.peer_table.live()
            runtime.log.log(
                logging.DEBUG if over else logging.WARNING,
                "the error broadcast could not reach %s: %s",
                peer,
                str(exc).splitlines()[0],
            )
        except asyncio.TimeoutError:
            runtime.log.warning(
                "the error broadcast to %s timed out after %s s", peer, _BROADCAST_TIMEOUT
            )

    await asyncio.gather(*(one(p) for p in runtime.peer_table.live()))


async def teardown(runtime: Runtime, request: ShutdownRequest) -> None:
    """Stop the runtime once; every step runs even if an earlier one fails."""
    log = runtime.log
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
            await _stop_after_error(runtime, request)
        else:
            await _stop_cleanly(runtime)
        _warn_unasked_failures(runtime)
    except Exception as exc:
        log.error("error during shutdown: %r", exc, exc_info=exc)
    finally:
        await _bounded(list(runtime.aux_tasks), _BROADCAST_TIMEOUT)
        await _release(runtime, goodbye=not request.reason.is_error)
        if request.reason is Reason.SENDING_FAILURE and runtime.comm.exit_on_sending_failure:
            log.error("exit_on_sending_failure: exiting with status 1")
            runtime.loop.call_soon(runtime.exit_process or _exit_process)
        elif (
            request.reason is Reason.SIGNAL
            and runtime.main_task is not None
            and not runtime.program_done
        ):
            runtime.main_task.cancel(f"silo: {request.detail}")


async def _stop_cleanly(runtime: Runtime) -> None:
    for actor in runtime.actors.values():
        actor.finish()
    while runtime.pending_calls or runtime.pending_sends or runtime.actor_tasks:
        await asyncio.wait([*runtime.pending_calls, *runtime.pending_sends, *runtime.actor_tasks])
    await runtime.transport.say_goodbye(min(runtime.comm.timeout_s, _BROADCAST_TIMEOUT))


async def _stop_after_error(runtime: Runtime, request: ShutdownRequest) -> None:
    runtime.fail_pending(runtime.shutdown_error())
    await _cancel_all(runtime.pending_calls | runtime.actor_tasks)
    if runtime.comm.continue_waiting_for_data_sending_on_error:
        await _bounded(list(runtime.pending_sends), runtime.comm.timeout_s)
    await _cancel_all(runtime.pending_sends)
    info = abort_info(runtime.party, request, expose=runtime.comm.expose_error_trace)
    await _broadcast_abort(runtime, info)


def _warn_unasked_failures(runtime: Runtime) -> None:
    for object_id, fut in runtime.objects().items():
        if fut.done():
            runtime.warn_if_unasked(object_id, fut)


async def _release(runtime: Runtime, *, goodbye: bool) -> None:
    for actor in runtime.actors.values():
        actor.close()
    await runtime.executor.aclose()
    try:
        await runtime.transport.aclose(goodbye=goodbye)
    except Exception as exc:
        runtime.log.warning("closing the channel failed: %r", exc)
    context.active_runtimes.discard(runtime)
    _uninstall_hooks(runtime)
    runtime.mark_finished()
    runtime.log.debug("shut down")


def _exit_process() -> None:
    raise SystemExit(1)
