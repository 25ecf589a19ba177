"""Bounded memory over long jobs: the runtime's tables do not grow with the number of rounds.

The object table, the call log, the set of values already pushed and the actor table are pruned
when the program drops its handles (or an actor stops). Not timed: the benchmark
``python -m benchmarks --only memory`` reports the same tables and RSS over 20,000 rounds.
"""

from __future__ import annotations

import asyncio
import gc
from typing import Any

import silo
from silo import context


@silo.remote
class Counter:
    def __init__(self, value: int) -> None:
        self.value = value

    def inc(self, n: int) -> int:
        self.value += n
        return self.value


@silo.remote
def combine(a: int, b: int) -> int:
    return a + b


async def _rounds(n: int) -> dict[str, Any]:
    async def main(party: str) -> dict[str, int]:
        runtime = context.current_runtime()
        a = Counter.party("alice").remote(0)
        b = Counter.party("bob").remote(0)
        for _ in range(n):
            await silo.get(combine.party("alice").remote(a.inc.remote(1), b.inc.remote(1)))
            scratch = Counter.party(party).remote(1)
            await silo.get(scratch.inc.remote(1))
            del scratch
        gc.collect()
        await silo.get(combine.party("bob").remote(a.inc.remote(0), b.inc.remote(0)))
        return runtime.sizes()

    return await silo.simulate(main, ["alice", "bob"])


async def test_tables_stay_the_same_size_however_many_rounds() -> None:
    few = await _rounds(20)
    many = await _rounds(200)
    assert few == many, (few, many)
    for party in ("alice", "bob"):
        assert many[party]["pushed"] <= 4, many
        assert many[party]["actors"] <= 3, many
        assert many[party]["objects"] <= 8, many
        assert many[party]["calls"] <= 8, many


async def test_a_killed_actor_leaves_the_table_and_later_calls_still_fail() -> None:
    async def main(party: str) -> Any:
        runtime = context.current_runtime()
        box = Counter.party("alice").remote(1)
        assert await silo.get(box.inc.remote(1)) == 2
        silo.kill(box)
        after = box.inc.remote(1)
        try:
            await silo.get(after)
        except silo.SiloError as exc:
            await asyncio.wait(runtime.tasks.actors)
            return type(exc).__name__, len(runtime.execution.actors)
        return None

    result = await silo.simulate(main, ["alice"])
    assert result == {"alice": ("ActorKilledError", 0)}
