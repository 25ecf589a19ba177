"""The single-shot shutdown future: the first request wins; the rest change nothing."""

from __future__ import annotations

import asyncio

from silo.shutdown import Reason, ShutdownFuture, ShutdownRequest


async def test_first_request_wins_and_callback_runs_once() -> None:
    future = ShutdownFuture(asyncio.get_running_loop())
    seen: list[ShutdownRequest] = []
    future.on_requested(seen.append)
    first = ShutdownRequest(Reason.PROGRAM_ERROR, ValueError("x"))
    assert future.requested is None
    assert future.request(first) is True
    assert future.request(ShutdownRequest(Reason.INTENDED)) is False
    assert future.request(ShutdownRequest(Reason.SIGNAL)) is False
    await asyncio.sleep(0)
    assert seen == [first]
    assert future.requested is first
    assert await future.wait_requested() is first


async def test_waiters_resume_when_finished_and_cancelling_a_waiter_is_harmless() -> None:
    future = ShutdownFuture(asyncio.get_running_loop())
    waiters = [asyncio.ensure_future(future.wait_finished()) for _ in range(3)]
    await asyncio.sleep(0)
    waiters[0].cancel()
    future.mark_finished()
    future.mark_finished()
    results = await asyncio.gather(*waiters, return_exceptions=True)
    assert isinstance(results[0], asyncio.CancelledError)
    assert results[1:] == [None, None]
    assert future.finished


def test_reasons_other_than_intended_are_errors() -> None:
    assert not Reason.INTENDED.is_error
    assert all(r.is_error for r in Reason if r is not Reason.INTENDED)
