"""The loop's exception handler: the one path of runtime tasks' failures (silo.loophandler).

A runtime-owned task that raises is reported through the loop's exception handler and broadcast;
several runtimes on one loop share one dispatcher, each handling only its own tasks, and the
user's handler is back in place whatever order they shut down in.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import pytest

import silo
from silo import context
from silo.loophandler import Dispatcher
from silo.shutdown import Reason

from multiparty import addresses_for


@silo.remote
def seven() -> int:
    return 7


Context = dict[str, Any]


def _recorder() -> tuple[list[Context], Any]:
    seen: list[Context] = []

    def handler(loop: asyncio.AbstractEventLoop, ctx: Context) -> None:
        seen.append(ctx)

    return seen, handler


async def test_a_failed_runtime_task_goes_through_the_handler_and_is_broadcast(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    loop = asyncio.get_running_loop()
    user_seen, user_handler = _recorder()
    loop.set_exception_handler(user_handler)
    dispatched: list[Context] = []
    original_call = Dispatcher.__call__

    def spy(self: Dispatcher, loop: asyncio.AbstractEventLoop, ctx: Context) -> None:
        dispatched.append(ctx)
        original_call(self, loop, ctx)

    monkeypatch.setattr(Dispatcher, "__call__", spy)

    details: dict[str, str] = {}

    async def main(party: str) -> None:
        runtime = context.current_runtime()
        assert isinstance(loop.get_exception_handler(), Dispatcher)
        if party == "alice":

            async def broken_send(*args: Any, **kwargs: Any) -> None:
                raise RuntimeError("the channel is broken in a way nobody expects")

            monkeypatch.setattr(runtime.transport, "send_data", broken_send)
        obj = seven.party("alice").remote()
        if party == "bob":
            with pytest.raises(silo.FedRemoteError) as info:
                await silo.get(obj, timeout=10)
            details[party] = info.value.src_party
            return
        with contextlib.suppress(silo.FedRemoteError):
            await silo.get(obj)  # pushes obj to bob (the push fails); may see the shutdown
        await runtime.lifecycle.wait_finished()
        assert runtime.shutdown_request is not None
        details[party] = runtime.shutdown_request.detail

    try:
        # alice's program finished, but its runtime failed: the end of its program raises that
        # (silo.shutdown.ending_error), and simulate raises the origin error.
        with pytest.raises(RuntimeError, match="broken in a way nobody expects"):
            await silo.simulate(main, ["alice", "bob"])
    finally:
        restored = loop.get_exception_handler()
        loop.set_exception_handler(None)
    assert details["bob"] == "alice"
    assert details["alice"].startswith("runtime task silo-push-(1, 0)-bob failed")
    assert [type(c["exception"]) for c in dispatched] == [RuntimeError]
    assert dispatched[0]["task"].get_name() == "silo-push-(1, 0)-bob"
    assert user_seen == []
    assert restored is user_handler


async def _two_runtimes() -> tuple[silo.Runtime, silo.Runtime]:
    """Two runtimes on this loop, of two single-party jobs (so neither aborts the other)."""
    first = await silo.init(addresses_for(["alice"]), "alice", logging_level="warning")
    second = await silo.init(addresses_for(["bob"]), "bob", logging_level="warning")
    return first, second


@pytest.mark.parametrize("order", ["first-started-leaves-first", "last-started-leaves-first"])
async def test_two_runtimes_on_one_loop_restore_the_user_handler(order: str) -> None:
    loop = asyncio.get_running_loop()
    user_seen, user_handler = _recorder()
    loop.set_exception_handler(user_handler)
    try:
        first, second = await _two_runtimes()
        dispatcher = loop.get_exception_handler()
        assert isinstance(dispatcher, Dispatcher)
        assert dispatcher.owners == [first._core.lifecycle, second._core.lifecycle]
        leaving = [first, second] if order == "first-started-leaves-first" else [second, first]
        await asyncio.gather(leaving[0].shutdown(), asyncio.sleep(0))
        assert loop.get_exception_handler() is dispatcher
        assert dispatcher.owners == [leaving[1]._core.lifecycle]
        await leaving[1].shutdown()
        assert loop.get_exception_handler() is user_handler
        assert user_seen == []
    finally:
        loop.set_exception_handler(None)


async def test_each_runtime_handles_only_its_own_tasks_and_others_reach_the_user() -> None:
    loop = asyncio.get_running_loop()
    user_seen, user_handler = _recorder()
    loop.set_exception_handler(user_handler)
    try:
        first, second = await _two_runtimes()

        async def boom() -> None:
            raise ValueError("a failure in bob's own task")

        tasks = second._core.tasks
        task = tasks.spawn(boom(), "silo-test-boom", tasks.aux)
        await asyncio.wait([task])
        request = second._core.shutdown_request
        assert request is not None and request.reason is Reason.PROGRAM_ERROR
        assert isinstance(request.error, ValueError)
        assert first._core.shutdown_request is None

        async def user_task() -> None:
            raise KeyError("not silo's")

        stray = loop.create_task(user_task())
        await asyncio.wait([stray])
        loop.call_exception_handler({"message": "user", "exception": stray.exception()})
        loop.call_exception_handler(
            {"message": "user task", "exception": KeyError("x"), "task": stray}
        )
        assert [c["message"] for c in user_seen] == ["user", "user task"]
        assert first._core.shutdown_request is None
        await first.shutdown()
        await second.shutdown()
        assert loop.get_exception_handler() is user_handler
    finally:
        loop.set_exception_handler(None)


async def test_a_replaced_handler_does_not_lose_a_runtime_failure() -> None:
    loop = asyncio.get_running_loop()
    addresses = addresses_for(["alice"])
    runtime = await silo.init(addresses, "alice", job_name="handler", logging_level="warning")
    user_seen, user_handler = _recorder()
    try:
        loop.set_exception_handler(user_handler)

        async def boom() -> None:
            raise ValueError("lost?")

        tasks = runtime._core.tasks
        await asyncio.wait([tasks.spawn(boom(), "silo-test-boom", tasks.aux)])
        request = runtime._core.shutdown_request
        assert request is not None and isinstance(request.error, ValueError)
        assert user_seen == []
        await runtime.shutdown()
        assert loop.get_exception_handler() is user_handler
    finally:
        loop.set_exception_handler(None)
