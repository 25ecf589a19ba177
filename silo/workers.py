"""Worker threads for plain functions and actor methods.

The threads are daemons: a user function stuck in a long computation never keeps the process
alive after the runtime decided to exit (``exit_on_sending_failure``, SIGTERM), unlike
``concurrent.futures`` workers, which the interpreter joins at exit.

A result comes back to the loop in one of two ways:

* **Handed back** (``call_soon_threadsafe``): the loop went on with its work, and the worker
  wakes it when the call is over. This costs a self-pipe write, a wake-up of the loop and an
  extra loop iteration, and each side waits for the other's GIL: on a small virtual machine about
  0.15 ms per call, several times a tiny call's own work.
* **Waited for** (``QUICK_WAIT_S`` at most): a call of a function whose last run took under
  ``QUICK_S`` is likely to be over before the loop could do anything else, so the loop waits for it
  on a lock, with the GIL released, and takes the result from there: one wake-up each way, no
  self-pipe, no extra iteration. If the call is not over in time, the loop goes on and the
  result is handed back as above. The loop thus never waits more than ``QUICK_WAIT_S`` per call,
  and only for functions seen to be quick; user code always runs on the worker thread.
"""

from __future__ import annotations

import asyncio
import contextvars
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

__all__ = ["QUICK_S", "QUICK_WAIT_S", "WorkerPool"]

#: A function whose last run took less than this is waited for (see the module doc).
QUICK_S = 100e-6
#: The longest the loop waits for a quick function's result before going on.
QUICK_WAIT_S = 300e-6
#: Functions remembered as quick or not, per pool; forgotten all at once beyond this.
_REMEMBERED = 4096

# A job's state, guarded by its pool's lock.
_RUNNING, _WAITED, _DONE, _GAVE_UP = range(4)


class _Job:
    __slots__ = ("args", "ctx", "done", "fn", "fut", "key", "kwargs", "loop", "outcome", "state")

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        fut: asyncio.Future[Any],
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        key: object,
        waited: bool,
    ) -> None:
        self.loop = loop
        self.fut = fut
        self.ctx = contextvars.copy_context()
        self.fn: Callable[..., Any] | None = fn
        self.args: tuple[Any, ...] = args
        self.kwargs: dict[str, Any] = kwargs
        self.key = key
        self.outcome: tuple[bool, Any] | None = None
        self.state = _WAITED if waited else _RUNNING
        #: Held while a waited job runs; released by the worker when it is over.
        self.done: threading.Lock | None = None
        if waited:
            self.done = threading.Lock()
            self.done.acquire()


def _resolve(fut: asyncio.Future[Any], ok: bool, value: Any) -> None:
    if fut.cancelled():
        return
    if ok:
        fut.set_result(value)
    else:
        fut.set_exception(value)


class WorkerPool:
    """Up to ``max_workers`` daemon threads, started on demand. ``close`` is idempotent."""

    def __init__(self, name: str, max_workers: int) -> None:
        self._name = name
        self._max = max_workers
        self._queue: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._threads = 0
        self._idle = 0
        self._closed = False
        #: Whether each function's last run was quick (``QUICK_S``), by function.
        self._quick: dict[object, bool] = {}

    def submit(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> asyncio.Future[Any]:
        """Run ``fn(*args, **kwargs)`` in a worker, in a copy of the caller's context.

        Call from the loop. The future is already done when the call was waited for.
        """
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Any] = loop.create_future()
        if self._closed:
            raise RuntimeError(f"worker pool {self._name} is closed")
        key = getattr(fn, "__func__", fn)
        job = _Job(loop, fut, fn, args, kwargs, key, self._quick.get(key, False))
        self._queue.put(job)
        with self._lock:
            start = self._idle == 0 and self._threads < self._max
            if start:
                self._threads += 1
            else:
                self._idle -= 1
        if start:
            threading.Thread(
                target=self._work, name=f"{self._name}-{self._threads}", daemon=True
            ).start()
        if job.done is not None:
            self._wait(job)
        return fut

    def _wait(self, job: _Job) -> None:
        """Wait for a quick job (the GIL released) and settle its future here if it ends in
        time; else leave it to the worker to hand the result back."""
        assert job.done is not None
        over = job.done.acquire(timeout=QUICK_WAIT_S)
        if not over:
            with self._lock:
                if job.state != _DONE:
                    job.state = _GAVE_UP
                    return
        outcome = job.outcome
        assert outcome is not None
        job.outcome = None
        _resolve(job.fut, *outcome)

    def close(self) -> None:
        """Let every worker finish its current item and stop; does not wait for them."""
        if self._closed:
            return
        self._closed = True
        with self._lock:
            count = self._threads
        for _ in range(count):
            self._queue.put(None)

    def _work(self) -> None:
        while True:
            job = self._queue.get()
            if job is None:
                return
            fn, args, kwargs = job.fn, job.args, job.kwargs
            assert fn is not None
            job.fn, job.args, job.kwargs = None, (), {}
            started = time.perf_counter()
            try:
                outcome: tuple[bool, Any] = (True, job.ctx.run(fn, *args, **kwargs))
            except BaseException as exc:
                outcome = (False, exc)
            quick = time.perf_counter() - started < QUICK_S
            del fn, args, kwargs
            quick_map = self._quick
            if quick_map.get(job.key) is not quick:
                if len(quick_map) >= _REMEMBERED:
                    quick_map.clear()
                quick_map[job.key] = quick
            job.outcome = outcome
            with self._lock:
                self._idle += 1
                handed = job.state != _WAITED
                job.state = _DONE
            if handed:
                job.outcome = None
                try:
                    job.loop.call_soon_threadsafe(_resolve, job.fut, *outcome)
                except RuntimeError:
                    pass
            else:
                assert job.done is not None
                job.done.release()
            del outcome, job
