"""One party's silo runtime on a background event-loop thread, for RayFed's synchronous API.

Theory of operation
-------------------
RayFed programs call ``fed.get`` deep inside synchronous libraries, so the runtime cannot live
on the caller's thread. A :class:`Session` owns a new event loop (uvloop where installed) running
forever on a daemon thread, as Dask's synchronous client does. The caller's thread hands work to
it: :meth:`Session.call` runs a plain function on the loop (``.remote()`` schedules there, so
sequence ids follow program order), :meth:`Session.run` runs a coroutine there (``fed.get``).
Both block only the calling thread, which may be the main thread or a task's worker thread; the
loop thread itself never blocks on them (a call from it raises instead of deadlocking).

What the async API gets from ``asyncio.run`` and ``loop.add_signal_handler`` is wired by hand:

* **Signals.** On the main thread, SIGINT (if Python's default handler is in place) and SIGTERM
  (if at its default) get a handler that asks the runtime for the same SIGNAL shutdown as the
  async API (the error broadcast to every peer), waits a bounded time for it, then raises
  ``KeyboardInterrupt`` (``SystemExit(143)`` for SIGTERM) wherever the main thread was.
* **Uncaught exceptions.** ``sys.excepthook`` is wrapped: an exception escaping the program is
  broadcast (``Lifecycle.fail``) before Python prints it.
* **Exit on sending failure.** ``SystemExit`` raised on the loop thread would end only that
  thread, so the session sets ``Lifecycle.exit_process`` to flush logging and the standard
  streams and call ``os._exit(1)``. That works wherever the main thread is parked
  (``time.sleep``, a blocking read); the price is that ``atexit`` handlers and the main thread's
  ``finally`` blocks do not run, as with RayFed, whose process is killed.
* **Forgotten shutdown.** An ``atexit`` hook shuts the session down (intended: pending sends
  are flushed). The loop thread is a daemon so the interpreter reaches ``atexit`` at all. A
  ``multiprocessing`` child ends with ``os._exit``, skipping ``atexit``; where ``multiprocessing``
  is in use, a ``multiprocessing.util.Finalize`` does the same there.
* **fork.** A child forked while a session runs inherits no loop thread; ``os.register_at_fork``
  drops the inherited session in the child, which can then call ``fed.init`` itself.
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Coroutine, Mapping
from types import FrameType, TracebackType
from typing import Any, TypeVar

from .. import context
from ..api import _start
from ..core import Core
from ..errors import ConfigError, SendingFailure, SiloError
from ..loop import loop_factory
from ..shutdown import Reason
from .exceptions import FedTaskError

__all__ = ["Session", "active", "begin", "end"]

T = TypeVar("T")

#: How long a signal or an uncaught exception waits for the error broadcast before going on.
_GRACE_S = 5.0
#: How often a blocked caller checks that the loop thread is still there.
_POLL_S = 1.0


def _exit_now() -> None:
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:
            pass
    os._exit(1)


class Session:
    """A runtime on its own loop thread. :meth:`close` is idempotent."""

    def __init__(self) -> None:
        self.loop = loop_factory()()
        self.runtime: Core | None = None
        self.pid = os.getpid()
        self.addresses: Mapping[str, str] = {}
        self.rayfed_config: Mapping[str, Any] = {}
        self.tls_config: Mapping[str, Any] | None = None
        self._restore: dict[int, Any] = {}
        self._closed = False
        self._thread = threading.Thread(target=self._serve, name="silo-fed-loop", daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    @property
    def on_loop_thread(self) -> bool:
        return threading.get_ident() == self._thread.ident

    @property
    def live(self) -> bool:
        return not self._closed and self.pid == os.getpid()

    def call(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(*args)`` on the loop thread and return its result (or raise its error)."""
        if self.on_loop_thread:
            return fn(*args)
        fut: concurrent.futures.Future[T] = concurrent.futures.Future()

        def run() -> None:
            if not fut.set_running_or_notify_cancel():
                return
            try:
                fut.set_result(fn(*args))
            except BaseException as exc:
                fut.set_exception(exc)

        self.loop.call_soon_threadsafe(run)
        return self._wait(fut, None)

    def _wait(self, fut: concurrent.futures.Future[T], timeout: float | None) -> T:
        """``fut.result(timeout)``, but never waiting on a loop thread that is gone."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            step = _POLL_S if deadline is None else min(_POLL_S, deadline - time.monotonic())
            try:
                return fut.result(max(step, 0.0))
            except concurrent.futures.TimeoutError:
                if deadline is not None and time.monotonic() >= deadline:
                    raise
                if not self._thread.is_alive():
                    raise SiloError(
                        "silo.fed: the event-loop thread of this party is gone"
                    ) from None

    def run(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        """Run ``coro`` on the loop, blocking this thread until it ends (or ``timeout``).

        Raises :class:`SiloError` on the loop thread itself, which must never block. An
        exception in this thread (a signal's ``KeyboardInterrupt``) cancels ``coro``.
        """
        if self.on_loop_thread:
            coro.close()
            raise SiloError(
                "silo.fed: a blocking call (fed.get, fed.shutdown) on silo's event-loop thread, "
                "from an async remote function, would deadlock: use `await silo.get(...)` there"
            )
        fut = asyncio.run_coroutine_threadsafe(coro, self.loop)
        try:
            return self._wait(fut, timeout)
        except BaseException:
            fut.cancel()
            raise

    async def _boot(self, **init_kwargs: Any) -> Core:
        runtime = await _start(**init_kwargs)
        runtime.lifecycle.exit_process = _exit_now
        return runtime

    def start(self, **init_kwargs: Any) -> Core:
        """Start the runtime (``silo.init``'s arguments); on failure, close and raise."""
        try:
            self.runtime = self.run(self._boot(**init_kwargs))
        except BaseException:
            self._stop_loop()
            raise
        if threading.current_thread() is threading.main_thread():
            self._install_signals()
        return self.runtime

    def _install_signals(self) -> None:
        defaults = {signal.SIGINT: signal.default_int_handler, signal.SIGTERM: signal.SIG_DFL}
        for sig, default in defaults.items():
            current = signal.getsignal(sig)
            if current == default:
                self._restore[sig] = current
                signal.signal(sig, self._on_signal)

    def restore_signals(self) -> None:
        """Put back the signal handlers this session replaced (main thread only)."""
        if threading.current_thread() is not threading.main_thread():
            return
        for sig, previous in self._restore.items():
            if signal.getsignal(sig) == self._on_signal:
                signal.signal(sig, previous)
        self._restore.clear()

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        sig = signal.Signals(signum)
        error: BaseException = (
            KeyboardInterrupt() if sig == signal.SIGINT else SystemExit(128 + signum)
        )
        self.stop_after(Reason.SIGNAL, error, sig.name)
        raise error

    def stop_after(self, reason: Reason, error: BaseException, detail: str) -> None:
        """Ask the runtime to stop on an error (broadcast to every peer); wait for it, bounded.

        A second request while one is under way stops waiting for calls and sends at once.
        """
        runtime = self.runtime
        if runtime is None or not self.live or self.on_loop_thread:
            return
        if isinstance(error, FedTaskError):
            error = error.cause
        lifecycle = runtime.lifecycle

        def request() -> bool:
            if reason is Reason.SIGNAL:
                runtime.log.warning("received %s: shutting down", detail)
            if not lifecycle.ask(reason, error, detail):
                lifecycle.hurry()
                return False
            return True

        try:
            if self.call(request):
                self.run(lifecycle.shutdown(), timeout=_GRACE_S)
        except concurrent.futures.TimeoutError:
            runtime.log.warning("the shutdown after %s is still under way; going on", detail)

    def close(self) -> None:
        """Intended shutdown (pending sends flushed), then stop the loop thread. Idempotent.

        If another shutdown came first (an error, a signal), waits for that one instead.
        """
        if self._closed:
            return
        if self.pid != os.getpid():
            self._closed = True
            return
        if self.on_loop_thread:
            raise SiloError(
                "silo.fed: fed.shutdown() cannot run on silo's event-loop thread (from an async "
                "remote function or the sending_failure_handler); call it from the program"
            )
        try:
            if self.runtime is not None:
                self.run(self.runtime.lifecycle.shutdown())
        finally:
            self.restore_signals()
            self._stop_loop()

    def _stop_loop(self) -> None:
        if self._closed:
            return
        self._closed = True

        async def finish() -> None:
            current = asyncio.current_task()
            tasks = [t for t in asyncio.all_tasks() if t is not current]
            for task in tasks:
                task.cancel()
            if tasks:
                await asyncio.wait(tasks, timeout=1.0)
            await self.loop.shutdown_asyncgens()
            self.loop.stop()

        if self._thread.is_alive():
            asyncio.run_coroutine_threadsafe(finish(), self.loop)
            self._thread.join()
        self.loop.close()


class _Registry:
    """The process's one session: RayFed's API is process-global (``fed.init`` once)."""

    def __init__(self) -> None:
        self.session: Session | None = None
        self.hooked = False
        self.previous_excepthook: Callable[..., Any] | None = None


_registry = _Registry()


def active() -> Session | None:
    """The live session of this process, or ``None``."""
    session = _registry.session
    if session is None or not session.live:
        return None
    return session


def begin(init_kwargs: Mapping[str, Any], rayfed_config: Mapping[str, Any]) -> Session:
    """Start this process's session with ``silo.init``'s arguments (``rayfed_config``: the
    ``config`` as the program gave it). Raises :class:`ConfigError` if one is already running,
    and whatever ``silo.init`` raises."""
    current = active()
    if current is not None:
        assert current.runtime is not None
        raise ConfigError(
            f"fed.init: this process already runs party {current.runtime.party!r} of job "
            f"{current.runtime.job!r}; call fed.shutdown() before fed.init() again"
        )
    _hook_process()
    session = Session()
    session.addresses = dict(init_kwargs["addresses"])
    session.tls_config = init_kwargs.get("tls_config")
    session.rayfed_config = rayfed_config
    session.start(**init_kwargs)
    _registry.session = session
    mp_util = sys.modules.get("multiprocessing.util")
    if mp_util is not None:
        mp_util.Finalize(None, end, exitpriority=100)
    return session


def end() -> None:
    """Shut this process's session down, if any. Idempotent."""
    session = _registry.session
    if session is None:
        return
    try:
        session.close()
    finally:
        if _registry.session is session:
            _registry.session = None


def _excepthook(tp: type[BaseException], value: BaseException, tb: TracebackType | None) -> None:
    session = active()
    if session is not None and isinstance(value, Exception):
        session.stop_after(Reason.PROGRAM_ERROR, value, f"the program raised {tp.__name__}")
    previous = _registry.previous_excepthook or sys.__excepthook__
    previous(tp, value, tb)


def _at_exit() -> None:
    try:
        end()
    except (SiloError, SendingFailure) as exc:
        logging.getLogger("silo").warning("silo.fed shutdown at exit failed: %s", exc)


def _forget_after_fork() -> None:
    session = _registry.session
    _registry.session = None
    if session is None:
        return
    if session.runtime is not None:
        context.active_runtimes.discard(session.runtime)
    session.restore_signals()


def _hook_process() -> None:
    if _registry.hooked:
        return
    _registry.hooked = True
    atexit.register(_at_exit)
    os.register_at_fork(after_in_child=_forget_after_fork)
    _registry.previous_excepthook = sys.excepthook
    sys.excepthook = _excepthook
