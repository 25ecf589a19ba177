"""The single-shot shutdown future: the first request wins; the rest change nothing. And what a
stopped runtime means to its callers, decided in one place (silo.shutdown)."""

from __future__ import annotations

import asyncio

import pytest

from silo.errors import FedRemoteError, RuntimeClosedError
from silo.shutdown import (
    Reason,
    ShutdownFuture,
    ShutdownRequest,
    abort_info,
    closed_error,
    ending_error,
    pending_error,
)


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


def test_closed_and_pending_errors() -> None:
    assert str(closed_error("alice", None)) == "the silo runtime of party 'alice' is shut down"
    intended = ShutdownRequest(Reason.INTENDED)
    assert str(closed_error("alice", intended)).endswith("is shut down (intended)")
    assert isinstance(pending_error("alice", intended), RuntimeClosedError)
    remote = FedRemoteError("bob")
    assert pending_error("alice", ShutdownRequest(Reason.REMOTE_ERROR, remote)) is remote
    own = pending_error("alice", ShutdownRequest(Reason.PROGRAM_ERROR, ValueError("x")))
    assert type(own) is FedRemoteError and own.src_party == "alice"


def test_abort_info_hides_a_signal_unless_exposed() -> None:
    signal = ShutdownRequest(Reason.SIGNAL, KeyboardInterrupt(), "SIGINT")
    assert abort_info("alice", signal, expose=False).type_name is None
    shown = abort_info("alice", signal, expose=True)
    assert (shown.type_name, shown.message) == ("KeyboardInterrupt", "party alice stopped: SIGINT")
    program_error = ShutdownRequest(Reason.PROGRAM_ERROR, ValueError("v"))
    failed = abort_info("alice", program_error, expose=True)
    assert (failed.origin, failed.type_name, failed.message) == ("alice", "ValueError", "v")


@pytest.mark.parametrize(
    ("reason", "program_raised", "raises"),
    [
        (Reason.SIGNAL, True, True),
        (Reason.SIGNAL, False, True),
        (Reason.REMOTE_ERROR, False, True),
        (Reason.PROGRAM_ERROR, False, True),
        (Reason.SENDING_FAILURE, False, True),
        (Reason.REMOTE_ERROR, True, False),
        (Reason.PROGRAM_ERROR, True, False),
    ],
)
def test_ending_error(reason: Reason, program_raised: bool, raises: bool) -> None:
    error = ValueError("stopped")
    ending = ending_error(ShutdownRequest(reason, error), program_raised=program_raised)
    assert (ending is error) is raises
    assert ending_error(None, program_raised=False) is None
    assert ending_error(ShutdownRequest(Reason.INTENDED), program_raised=False) is None
