"""Programs that diverge between parties, one OS process per party (tests/test_divergence.py).

Usage: ``divergence.py SCENARIO PARTY`` with ``SILO_TEST_ADDRESSES`` (JSON) in the environment.
Reports with ``RESULT <json>`` lines on stdout.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

import silo
import silo.loop

ADDRESSES: dict[str, str] = json.loads(os.environ.get("SILO_TEST_ADDRESSES", "{}"))


def report(value: Any) -> None:
    print("RESULT " + json.dumps(value), flush=True)


@silo.remote
def train(x: int) -> int:
    return x + 1


@silo.remote
def evaluate(x: int) -> int:
    return x - 1


@silo.remote
class Counter:
    def __init__(self) -> None:
        self.value = 0

    def inc(self) -> int:
        self.value += 1
        return self.value

    def dec(self) -> int:
        self.value -= 1
        return self.value


def _config() -> dict[str, Any]:
    return {"cross_silo_comm": {"timeout_in_ms": 20000}}


async def functions(party: str) -> None:
    """At call 2 alice runs train, bob runs evaluate; each owns one of them, and each gets both."""
    started = time.monotonic()
    try:
        async with silo.init(ADDRESSES, party, config=_config(), logging_level="warning"):
            first = train.party("alice").remote(1)
            step = train if party == "alice" else evaluate
            second = step.party("alice").remote(first)
            third = step.party("bob").remote(first)
            await silo.get([second, third])
    except silo.SiloError as exc:
        report({"type": type(exc).__name__, "str": str(exc), "took": time.monotonic() - started})
        return
    report(None)


async def methods(party: str) -> None:
    """Actor methods: alice calls Counter.inc where bob calls Counter.dec, on both parties'
    counters."""
    try:
        async with silo.init(ADDRESSES, party, config=_config(), logging_level="warning"):
            counters = [Counter.party("alice").remote(), Counter.party("bob").remote()]
            values = [c.inc.remote() if party == "alice" else c.dec.remote() for c in counters]
            await silo.get(values)
    except silo.SiloError as exc:
        report({"type": type(exc).__name__, "str": str(exc)})
        return
    report(None)


SCENARIOS: dict[str, Callable[[str], Awaitable[None]]] = {
    "functions": functions,
    "methods": methods,
}


def main() -> None:
    name, party = sys.argv[1], sys.argv[2]
    silo.loop.run(SCENARIOS[name](party))


if __name__ == "__main__":
    main()
