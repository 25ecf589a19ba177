"""Worker threads for plain functions and actor methods.

The threads are daemons: a user function stuck in a long computation never keeps the process
alive after the runtime decided to exit (``exit_on_sending_failure``, SIGTERM), unlike
``concurrent.futures`` workers, which the interpreter joins at exit. Results come back to the
loop with ``call_soon_threadsafe``; the loop never blocks on a thread.
"""

from __future__ import annotations

import asyncio
import contextvars
import queue
import threading
from collections.abc import Callable
from typing import Any

__all__ = ["WorkerPool"]

_Job = tuple[
    asyncio.AbstractEventLoop,
    "asyncio.Future[Any]",
    contextvars.Context,
    Callable[..., Any],
    tuple[Any, ...],
    dict[str, Any],
]


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

    def submit(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> asyncio.Future[Any]:
        """Run ``fn(*args, **kwargs)`` in a worker, in a copy of the caller's context."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Any] = loop.create_future()
        if self._closed:
            raise RuntimeError(f"worker pool {self._name} is closed")
        self._queue.put((loop, fut, contextvars.copy_context(), fn, args, kwargs))
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
        return fut

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
            loop, fut, ctx, fn, args, kwargs = job
            try:
                result = ctx.run(fn, *args, **kwargs)
            except BaseException as exc:
                outcome: tuple[bool, Any] = (False, exc)
            else:
                outcome = (True, result)
            del job, fn, args, kwargs
            try:
                loop.call_soon_threadsafe(_resolve, fut, *outcome)
            except RuntimeError:
                pass
            del outcome, fut
            with self._lock:
                self._idle += 1
