"""Worker threads (silo.workers): user code always runs on a worker thread; a function seen to
be quick is waited for (its future is settled when ``submit`` returns), any other is handed
back through the loop; the loop never waits longer than ``QUICK_WAIT_S`` for one call."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from silo.workers import QUICK_WAIT_S, WorkerPool


def where(x: int) -> tuple[int, int]:
    return x + 1, threading.get_ident()


def fails(x: int) -> int:
    raise KeyError(f"no {x}")


async def test_a_quick_function_runs_on_a_worker_and_is_waited_for() -> None:
    pool = WorkerPool("test", 1)
    try:
        value, thread = await pool.submit(where, 1)  # first run: not known to be quick
        assert value == 2 and thread != threading.get_ident()
        futures = [pool.submit(where, i) for i in range(20)]
        # A handed-back result is settled only when the loop runs its callbacks, which it does
        # not between these submits: a future done already was waited for. (Each wait may
        # time out on a busy machine, so not every one is.)
        assert any(f.done() for f in futures)
        results = await asyncio.gather(*futures)
        assert [r[0] for r in results] == list(range(1, 21))
        assert all(r[1] != threading.get_ident() for r in results)
    finally:
        pool.close()


async def test_a_quick_function_that_raises_keeps_its_exception() -> None:
    pool = WorkerPool("test", 1)
    try:
        for i in range(5):
            with pytest.raises(KeyError, match=f"no {i}"):
                await pool.submit(fails, i)
    finally:
        pool.close()


async def test_a_quick_function_turned_slow_does_not_hold_the_loop() -> None:
    """Seen quick, then taking 0.3 s: the loop waits at most QUICK_WAIT_S for it and goes on;
    the result is handed back later; the function counts as slow from then on."""
    delay = {"s": 0.0}

    def sometimes_slow(x: int) -> int:
        time.sleep(delay["s"])
        return x

    pool = WorkerPool("test", 1)
    loop = asyncio.get_running_loop()
    try:
        for i in range(3):
            assert await pool.submit(sometimes_slow, i) == i
        delay["s"] = 0.3
        started = loop.time()
        fut = pool.submit(sometimes_slow, 7)
        held = loop.time() - started
        assert not fut.done()
        assert held < QUICK_WAIT_S + 0.05, held
        assert await fut == 7
        started = loop.time()
        fut = pool.submit(sometimes_slow, 8)
        assert loop.time() - started < 0.05 and not fut.done()  # now known slow: not waited
        assert await fut == 8
    finally:
        pool.close()


async def test_a_cancelled_waiter_does_not_break_the_worker() -> None:
    pool = WorkerPool("test", 1)
    try:
        fut = pool.submit(time.sleep, 0.05)
        fut.cancel()
        assert (await pool.submit(where, 1))[0] == 2
    finally:
        pool.close()
