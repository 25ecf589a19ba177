"""Scenarios run as one OS process per party by tests/multiparty.py.

Usage: ``scenarios.py SCENARIO PARTY`` with ``SILO_TEST_ADDRESSES`` (JSON) in the environment.
A scenario reports with ``RESULT <json>`` lines on stdout.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import sys
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any

import numpy as np

import silo
import silo.loop

ADDRESSES: dict[str, str] = json.loads(os.environ.get("SILO_TEST_ADDRESSES", "{}"))
EXPOSE = os.environ.get("EXPOSE", "0") == "1"
JOB = os.environ.get("JOB", "test")
SCENARIOS: dict[str, Callable[[str], Awaitable[None]]] = {}


def scenario(fn: Callable[[str], Awaitable[None]]) -> Callable[[str], Awaitable[None]]:
    SCENARIOS[fn.__name__] = fn
    return fn


def report(value: Any) -> None:
    print("RESULT " + json.dumps(value), flush=True)


def describe(exc: BaseException) -> dict[str, Any]:
    out: dict[str, Any] = {"type": type(exc).__name__, "str": str(exc)}
    if isinstance(exc, silo.FedRemoteError):
        out["src"] = exc.src_party
        out["cause"] = (
            None
            if exc.cause is None
            else {
                "type": exc.cause.type_name,
                "message": exc.cause.message,
                "traceback": exc.cause.traceback,
            }
        )
    return out


async def wait_until(condition: Callable[[], bool], timeout: float) -> None:
    """Poll a condition that has no hook to await (the runtime's own failure records)."""
    deadline = time.monotonic() + timeout
    while not condition() and time.monotonic() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(0.02)


def comm(**extra: Any) -> dict[str, Any]:
    return {"cross_silo_comm": {"timeout_in_ms": 20000, "expose_error_trace": EXPOSE, **extra}}


def init(party: str, **kwargs: Any) -> Any:
    kwargs.setdefault("config", comm())
    kwargs.setdefault("logging_level", os.environ.get("LOG_LEVEL", "info"))
    return silo.init(ADDRESSES, party, job_name=kwargs.pop("job_name", JOB), **kwargs)


@silo.remote
class Counter:
    def __init__(self, value: int) -> None:
        self.value = value

    def inc(self, n: int) -> int:
        self.value += n
        return self.value

    def pair(self) -> tuple[int, int]:
        return self.value, -self.value

    def explode(self) -> None:
        raise KeyError("actor state corrupted")


@silo.remote
def add(a: Any, b: Any) -> Any:
    return a + b


@silo.remote
def boom() -> int:
    raise ValueError("bad value 42")


@silo.remote
def inc(x: int) -> int:
    return x + 1


@scenario
async def design(party: str) -> None:
    async with init(party):
        a = Counter.party("alice").remote(1)
        b = Counter.party("bob").remote(1)
        total = add.party("bob").remote(a.inc.remote(1), b.inc.remote(2))
        value = await silo.get(total)
        print(party, value)
        report(value)


@silo.remote
class Trainer:
    def __init__(self, seed: int) -> None:
        rng = np.random.default_rng(seed)
        self.x = rng.normal(size=(64, 4))
        self.y = self.x @ np.array([1.0, -2.0, 0.5, 3.0])
        self.w = np.zeros(4)

    def train(self, w: np.ndarray | None) -> np.ndarray:
        if w is not None:
            self.w = w.copy()
        for _ in range(20):
            grad = self.x.T @ (self.x @ self.w - self.y) / len(self.y)
            self.w -= 0.1 * grad
        return self.w


@silo.remote
def average(weights: list[np.ndarray]) -> np.ndarray:
    return np.mean(weights, axis=0)


@scenario
async def averaging(party: str) -> None:
    async with init(party):
        trainers = [Trainer.party(p).remote(i) for i, p in enumerate(["alice", "bob", "carol"])]
        w = None
        history = []
        for _ in range(3):
            w = average.party("alice").remote([t.train.remote(w) for t in trainers])
            history.append(float(np.round((await silo.get(w)).sum(), 6)))
        report(history)


@silo.remote
def combine(items: list[Any], extra: dict[str, Any]) -> Any:
    (x, (y, inner)) = items
    return [x, y, inner["k"], extra["a"][0], extra["t"][1]]


@scenario
async def nested(party: str) -> None:
    async with init(party):
        x = inc.party("alice").remote(1)
        y = inc.party("bob").remote(10)
        z = inc.party("alice").remote(100)
        out = combine.party("bob").remote([x, (y, {"k": z})], extra={"a": [x], "t": (z, y)})
        report(await silo.get(out))


@silo.remote(num_returns=2)
def split(x: int) -> tuple[int, int]:
    return x, x * 10


@silo.remote
def three(x: int) -> tuple[int, int, int]:
    return x, x + 1, x + 2


@scenario
async def num_returns(party: str) -> None:
    async with init(party):
        a, b = split.party("alice").remote(3)
        c, d, e = three.options(num_returns=3).party("bob").remote(a)
        counter = Counter.party("bob").remote(7)
        p, q = counter.pair.options(num_returns=2).remote()
        report(await silo.get([a, b, c, d, e, p, q]))


@silo.remote
async def on_loop(x: int) -> dict[str, Any]:
    await asyncio.sleep(0.01)
    return {"x": x, "thread": threading.current_thread().name, "party": silo.current_party()}


@silo.remote
def in_thread(x: int) -> dict[str, Any]:
    return {"x": x, "thread": threading.current_thread().name, "party": silo.current_party()}


@scenario
async def coroutine(party: str) -> None:
    async with init(party):
        first = on_loop.party("alice").remote(1)
        second = in_thread.party("bob").remote(first)
        report(await silo.get([first, second]))


@scenario
async def task_error(party: str) -> None:
    async with init(party):
        bad = boom.party("alice").remote()
        downstream = inc.party("bob").remote(bad)
        results = []
        for obj in (bad, downstream):
            try:
                await silo.get(obj)
                results.append(None)
            except Exception as exc:
                results.append(describe(exc))
        report(results)


@scenario
async def actor_error(party: str) -> None:
    async with init(party):
        counter = Counter.party("bob").remote(0)
        bad = counter.explode.remote()
        after = counter.inc.remote(5)
        try:
            await silo.get(bad)
            outcome: Any = None
        except Exception as exc:
            outcome = describe(exc)
        report([outcome, await silo.get(after)])


@scenario
async def cascade(party: str) -> None:
    async with init(party):
        a = boom.party("alice").remote()
        b = inc.party("bob").remote(a)
        c = inc.party("carol").remote(b)
        try:
            await silo.get(c)
            report(None)
        except Exception as exc:
            report(describe(exc))


@scenario
async def program_error(party: str) -> None:
    """alice's program raises before asking for anything; bob is left waiting on alice."""
    async with init(party):
        x = inc.party("alice").remote(1)
        if party == "alice":
            await asyncio.sleep(0.5)
            raise RuntimeError("alice's program gave up")
        started = time.monotonic()
        try:
            y = inc.party("bob").remote(inc.party("alice").remote(x))
            await silo.get(y)
            report(None)
        except silo.FedRemoteError as exc:
            report({**describe(exc), "waited": time.monotonic() - started})


@scenario
async def shutdown_once(party: str) -> None:
    """Many hands ask for shutdown at once after an error; the teardown runs once."""
    async with init(party) as rt:
        bad = boom.party("alice").remote()
        try:
            await silo.get(bad)
        except Exception as exc:
            if party == "alice":
                await asyncio.gather(rt._core.lifecycle.fail(exc), rt.shutdown(), silo.shutdown())
                await silo.shutdown()
                report(describe(exc))
                raise
            report(describe(exc))


@scenario
async def exit_on_failure(party: str) -> None:
    calls = []

    def handler(error: silo.SendingFailure) -> None:
        calls.append(error)
        print(f"HANDLER {error.peer} {error.object_id}", flush=True)

    async with init(
        party,
        config=comm(exit_on_sending_failure=True, timeout_in_ms=1500),
        sending_failure_handler=handler,
    ):
        x = inc.party("alice").remote(1)
        y = inc.party("alice").remote(2)
        inc.party("bob").remote(x)
        inc.party("bob").remote(y)
        print("PARKED", flush=True)
        await asyncio.sleep(86400)


@scenario
async def no_exit_on_failure(party: str) -> None:
    calls: list[silo.SendingFailure] = []
    async with init(
        party, config=comm(timeout_in_ms=1000), sending_failure_handler=calls.append
    ) as rt:
        x = inc.party("alice").remote(1)
        inc.party("bob").remote(x)
        inc.party("bob").remote(inc.party("alice").remote(5))
        await wait_until(lambda: len(rt.sending_failures) >= 2, 10)
        local = await silo.get(inc.party("alice").remote(41))
        report({"handler_calls": len(calls), "failures": len(rt.sending_failures), "local": local})


@scenario
async def wrong_job(party: str) -> None:
    failures: list[str] = []
    async with init(
        party,
        config=comm(timeout_in_ms=3000),
        sending_failure_handler=lambda e: failures.append(str(e)),
    ):
        x = inc.party(party).remote(1)
        other = "bob" if party == "alice" else "alice"
        inc.party(other).remote(x)
        await wait_until(lambda: bool(failures), 10)
        report(failures)
        # Keep listening, so that the peer meets this job's refusal rather than a closed port.
        await asyncio.sleep(2.0)


@scenario
async def twice(party: str) -> None:
    results = []
    for round_no in (1, 2):
        async with init(party, job_name=f"{JOB}-round{round_no}"):
            total = add.party("bob").remote(inc.party("alice").remote(round_no), 100)
            results.append(await silo.get(total))
    report(results)


@silo.remote
def slow(x: int) -> int:
    time.sleep(2.0)
    return x


@scenario
async def get_timeout(party: str) -> None:
    async with init(party):
        obj = slow.party("alice").remote(7)
        started = time.monotonic()
        try:
            await silo.get(obj, timeout=0.3)
            first: Any = None
        except silo.GetTimeoutError as exc:
            first = {
                "type": type(exc).__name__,
                "elapsed": time.monotonic() - started,
                "is_timeout": isinstance(exc, TimeoutError),
            }
        report([first, await silo.get(obj, timeout=30)])


@silo.remote
def make_array(n: int) -> np.ndarray:
    return np.arange(n, dtype=np.float64)


@silo.remote
def make_secret() -> Any:
    from payloads import Secret

    return Secret("classified")


@silo.remote
def checksum(arr: np.ndarray) -> str:
    return hashlib.sha256(memoryview(np.ascontiguousarray(arr)).cast("B")).hexdigest()


@scenario
async def allowlist(party: str) -> None:
    refusals: list[str] = []
    config = comm(serializing_allowed_list={"numpy": "*"}, timeout_in_ms=5000)
    async with init(
        party, config=config, sending_failure_handler=lambda e: refusals.append(str(e))
    ):
        arr = make_array.party("alice").remote(1000)
        ok = float((await silo.get(arr)).sum())
        secret = make_secret.party("alice").remote()
        try:
            value = await silo.get(secret)
            outcome: Any = {"value": getattr(value, "text", None)}
        except Exception as exc:
            outcome = describe(exc)
        if party == "alice":
            await wait_until(lambda: bool(refusals), 5)
        report({"numpy_sum": ok, "secret": outcome, "refusals": refusals})


@scenario
async def kill(party: str) -> None:
    """bob's actor is killed in bob: later calls fail there, and with FedRemoteError in alice."""
    async with init(party):
        counter = Counter.party("bob").remote(1)
        before = await silo.get(counter.inc.remote(1))
        silo.kill(counter)
        try:
            await silo.get(counter.inc.remote(1))
            after: Any = None
        except Exception as exc:
            after = describe(exc)
        report([before, after])


@scenario
async def release(party: str) -> None:
    """300 rounds of 64 KiB arrays both ways: values no longer referred to are forgotten."""
    async with init(party) as rt:
        for i in range(300):
            arr = make_array.party("alice").remote(8192)
            total = add.party("bob").remote(checksum.party("bob").remote(arr), str(i))
            await silo.get(total)
        report(len(rt._core.table))


@scenario
async def too_large(party: str) -> None:
    """Both parties refuse frames over 64 KiB: bob's own get raises instead of waiting."""
    failures: list[str] = []
    config = comm(messages_max_size_in_bytes=64 * 1024)
    async with init(
        party, config=config, sending_failure_handler=lambda e: failures.append(str(e))
    ):
        small = make_array.party("alice").remote(100)
        big = make_array.party("alice").remote(100_000)
        outcome: list[Any] = [float((await silo.get(small)).sum())]
        try:
            await silo.get(checksum.party("bob").remote(big))
            outcome.append(None)
        except Exception as exc:
            outcome.append(describe(exc))
        if party == "alice":
            await wait_until(lambda: bool(failures), 5)
        report({"outcome": outcome, "failures": failures})


@scenario
async def big_array(party: str) -> None:
    n = 64 * 1024 * 1024 // 8
    async with init(party):
        arr = make_array.party("alice").remote(n)
        remote_sum = checksum.party("bob").remote(arr)
        local_sum = checksum.party("alice").remote(arr)
        report(await silo.get([remote_sum, local_sum]))


@scenario
async def late_peer(party: str) -> None:
    async with init(party):
        total = add.party("bob").remote(inc.party("alice").remote(1), inc.party("bob").remote(2))
        report(await silo.get(total))


@scenario
async def parked(party: str) -> None:
    """alice parks after being ready; bob waits for a value alice will never send."""
    async with init(party, config=comm(timeout_in_ms=int(os.environ.get("TIMEOUT_MS", "60000")))):
        if party == "alice":
            x = slow.party("alice").remote(1)
            await silo.get(inc.party("bob").remote(0))
            print("READY", flush=True)
            await asyncio.sleep(86400)
            await silo.get(x)
        else:
            x = slow.party("alice").remote(1)
            await silo.get(inc.party("bob").remote(0))
            started = time.monotonic()
            try:
                await silo.get(inc.party("bob").remote(inc.party("alice").remote(x)))
                report(None)
            except silo.FedRemoteError as exc:
                report({**describe(exc), "waited": time.monotonic() - started})


def main() -> None:
    name, party = sys.argv[1], sys.argv[2]
    silo.loop.run(SCENARIOS[name](party))


if __name__ == "__main__":
    main()
