"""Liveness scenarios run as one OS process per party by tests/test_liveness.py.

Usage: ``liveness.py SCENARIO PARTY`` with ``SILO_TEST_ADDRESSES`` (JSON: where this party listens
and where it reaches each peer) in the environment, and optionally ``TIMEOUT_MS``, ``HB_MS``,
``JOB``, ``VICTIM``, ``TLS_DIR``, ``PROTOCOL``, ``WAIT_GO`` (print ``IMPORTED``, then wait for a
line on stdin before starting). A scenario reports with ``RESULT <json>`` lines.
"""

from __future__ import annotations

import asyncio
import hashlib
import importlib
import json
import os
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

import numpy as np

import silo
import silo.loop

ADDRESSES: dict[str, str] = json.loads(os.environ.get("SILO_TEST_ADDRESSES", "{}"))
JOB = os.environ.get("JOB", "liveness")
VICTIM = os.environ.get("VICTIM", "carol")
SCENARIOS: dict[str, Callable[[str], Awaitable[None]]] = {}


def scenario(fn: Callable[[str], Awaitable[None]]) -> Callable[[str], Awaitable[None]]:
    SCENARIOS[fn.__name__] = fn
    return fn


def report(value: Any) -> None:
    print("RESULT " + json.dumps(value), flush=True)


def describe(exc: BaseException) -> dict[str, Any]:
    return {
        "type": type(exc).__name__,
        "str": str(exc),
        "src": getattr(exc, "src_party", None),
        "at": time.time(),
    }


def init(party: str, **comm: Any) -> Any:
    config = {
        "cross_silo_comm": {
            "timeout_in_ms": int(os.environ.get("TIMEOUT_MS", "2000")),
            "heartbeat_interval_ms": int(os.environ.get("HB_MS", "200")),
            **comm,
        }
    }
    tls = None
    if "TLS_DIR" in os.environ:
        d = os.environ["TLS_DIR"]
        tls = {"ca_cert": f"{d}/ca.pem", "cert": f"{d}/{party}.pem", "key": f"{d}/{party}.key"}
    return silo.init(ADDRESSES, party, job_name=JOB, config=config, tls_config=tls)


@silo.remote
def inc(x: int) -> int:
    return x + 1


@silo.remote
def add(a: Any, b: Any) -> Any:
    return a + b


@silo.remote
def make_array(n: int) -> np.ndarray:
    return np.arange(n, dtype=np.float64)


@silo.remote
def checksum(arr: np.ndarray) -> str:
    return hashlib.sha256(memoryview(np.ascontiguousarray(arr)).cast("B")).hexdigest()


@scenario
async def frozen(party: str) -> None:
    """Every party is heard once; then VICTIM parks (the test stops or kills it) and the others
    wait for a value that depends on it."""
    async with init(party):
        warm = add.party("alice").remote(inc.party("bob").remote(1), inc.party("carol").remote(2))
        await silo.get(warm)
        if party == VICTIM:
            print("READY", flush=True)
            await asyncio.sleep(3600)
        x = inc.party(VICTIM).remote(1)
        first = next(p for p in ADDRESSES if p != VICTIM)
        print("WAITING", flush=True)
        try:
            await silo.get(inc.party(first).remote(x))
            report(None)
        except silo.FedRemoteError as exc:
            report(describe(exc))


@scenario
async def late(party: str) -> None:
    async with init(party):
        total = add.party("bob").remote(inc.party("alice").remote(1), inc.party("bob").remote(2))
        report(await silo.get(total))


@scenario
async def lonely(party: str) -> None:
    """The peer never starts: push a value to it, then wait for one of its values."""
    async with init(party) as rt:
        started = time.monotonic()
        inc.party("bob").remote(inc.party("alice").remote(1))
        try:
            await silo.get(inc.party("bob").remote(2))
            report(None)
        except silo.FedRemoteError as exc:
            report(
                {
                    **describe(exc),
                    "waited": time.monotonic() - started,
                    "failures": [str(f) for f in rt.sending_failures],
                }
            )
            raise


@scenario
async def mismatch(party: str) -> None:
    """Both parties need each other; ``JOB`` or ``PROTOCOL`` differ between them."""
    if "PROTOCOL" in os.environ:
        for module in ("silo.transport.link", "silo.transport.gate"):
            importlib.import_module(module).PROTOCOL_VERSION = int(os.environ["PROTOCOL"])
    started = time.monotonic()
    async with init(party):
        total = add.party("bob").remote(inc.party("alice").remote(1), inc.party("bob").remote(2))
        try:
            await silo.get(total)
            report(None)
        except silo.FedRemoteError as exc:
            report({**describe(exc), "waited": time.monotonic() - started})


@scenario
async def chatter(party: str) -> None:
    """Many small rounds both ways while the test breaks connections; bob counts deliveries of
    values it already had (a replay delivered twice)."""
    rounds = int(os.environ.get("ROUNDS", "200"))
    async with init(party) as rt:
        duplicates = 0
        delivered = 0
        original = rt._core.inbound.deliver_data

        def counting(src: str, object_id: tuple[int, int], value: object, call: str = "") -> None:
            nonlocal duplicates, delivered
            entry = rt._core.table.get(object_id)
            fut = None if entry is None else entry.future
            delivered += 1
            if fut is not None and fut.done():
                duplicates += 1
            original(src, object_id, value, call)

        rt._core.inbound.deliver_data = counting  # type: ignore[method-assign]
        print("STARTED", flush=True)
        total = 0
        for i in range(rounds):
            a = inc.party("alice").remote(i)
            b = add.party("bob").remote(a, 1000)
            total += await silo.get(b)
            await asyncio.sleep(0.01)
        reconnects = sum(peer.reconnects for peer in rt.stats().peers.values())
        report(
            {
                "total": total,
                "duplicates": duplicates,
                "delivered": delivered,
                "reconnects": reconnects,
            }
        )


@scenario
async def bulk(party: str) -> None:
    n = int(os.environ.get("MIB", "24")) * 1024 * 1024 // 8
    async with init(party):
        started = time.monotonic()
        arr = make_array.party("alice").remote(n)
        sums = [checksum.party(p).remote(arr) for p in ("bob", "alice")]
        sums = await silo.get(sums)
        report({"same": sums[0] == sums[1], "elapsed": time.monotonic() - started})


@scenario
async def early(party: str) -> None:
    """carol takes part in one round and finishes; alice and bob go on without her."""
    async with init(party):
        first = add.party("alice").remote(inc.party("bob").remote(1), inc.party("carol").remote(2))
        values = [await silo.get(first)]
        if party != "carol":
            for i in range(8):
                await asyncio.sleep(0.05)
                step = add.party("bob").remote(inc.party("alice").remote(i), 1)
                values.append(await silo.get(step))
        report(values)


def main() -> None:
    name, party = sys.argv[1], sys.argv[2]
    if os.environ.get("WAIT_GO") == "1":
        # Imports done: start together with the other parties (a loaded machine may take
        # seconds to import, longer than the short timeouts these scenarios use).
        print("IMPORTED", flush=True)
        sys.stdin.readline()
    silo.loop.run(SCENARIOS[name](party))


if __name__ == "__main__":
    main()
