"""Two-party jobs where bob's calls run on the executor named by ``EXECUTOR`` (JSON).

Usage: ``executors.py SCENARIO PARTY`` with ``SILO_TEST_ADDRESSES`` and, in bob's environment,
``EXECUTOR`` (``config["executor"]``). Reports with ``RESULT <json>`` lines (see scenarios.py).
"""

from __future__ import annotations

import json
import os
import signal
import sys
from typing import Any

from scenarios import SCENARIOS, comm, describe, init, report, scenario, wait_until

import silo
import silo.loop

EXECUTOR: dict[str, Any] | None = json.loads(os.environ.get("EXECUTOR", "null"))


def config() -> dict[str, Any]:
    return {**comm(), "executor": EXECUTOR} if EXECUTOR else comm()


@silo.remote
def where(x: int) -> dict[str, int]:
    return {"pid": os.getpid(), "ppid": os.getppid(), "x": x}


@silo.remote
def total(items: list[dict[str, int]]) -> int:
    return sum(item["x"] for item in items)


@silo.remote
def fails() -> int:
    raise ValueError("bad value on a worker")


@silo.remote
def dies() -> int:
    os.kill(os.getpid(), signal.SIGKILL)
    return 0


@silo.remote
class Log:
    def __init__(self, first: int) -> None:
        self.items = [first]

    def add(self, item: int) -> int:
        self.items.append(item)
        return len(self.items)

    def dump(self) -> dict[str, Any]:
        return {"items": self.items, "pid": os.getpid()}

    def die(self) -> None:
        os.kill(os.getpid(), signal.SIGKILL)


@scenario
async def work(party: str) -> None:
    """bob's calls, a closure and an actor's 40 ordered calls; alice sums bob's results."""
    offset = 1000

    @silo.remote
    def shifted(x: int) -> int:
        return x + offset

    async with init(party, config=config()):
        placed = [where.party("bob").remote(i) for i in range(6)]
        summed = total.party("alice").remote(placed)
        closure = shifted.party("bob").remote(5)
        log = Log.party("bob").remote(-1)
        counts = [log.add.remote(i) for i in range(40)]
        dump = log.dump.remote()
        report(
            {
                "pid": os.getpid(),
                "placed": await silo.get(placed),
                "summed": await silo.get(summed),
                "closure": await silo.get(closure),
                "counts": await silo.get(counts),
                "dump": await silo.get(dump),
            }
        )


async def _outcome(obj: silo.FedObject) -> Any:
    try:
        return {"value": await silo.get(obj)}
    except Exception as exc:
        return describe(exc)


@scenario
async def failures(party: str) -> None:
    """On bob's workers: a call raises, a call kills its worker, an actor kills its worker."""
    async with init(party, config=config()):
        raised = fails.party("bob").remote()
        outcomes = {"raised": await _outcome(raised)}
        outcomes["killed"] = await _outcome(dies.party("bob").remote())
        log = Log.party("bob").remote(0)
        outcomes["actor_killed"] = await _outcome(log.die.remote())
        outcomes["after"] = await _outcome(where.party("bob").remote(7))
        report(outcomes)


@scenario
async def stranded(party: str) -> None:
    """bob's call waits on a cluster whose scheduler the test then kills."""
    async with init(party, config=config()):
        obj = where.party("bob").remote(1)
        if party == "bob":
            report("submitted")
        report(await _outcome(obj))


@scenario
async def hung_scheduler(party: str) -> None:
    """bob's scheduler is stopped (SIGSTOP) by the test while bob runs; bob still ends soon."""
    async with init(party, config=config()):
        report("connected")
        gate = os.environ.get("GATE")
        if gate:
            await wait_until(lambda: os.path.exists(gate), 30)
        placed = await silo.get(where.party("alice").remote(3))
        report(placed["x"])
    report("closed")


def main() -> None:
    name, party = sys.argv[1], sys.argv[2]
    silo.loop.run(SCENARIOS[name](party))


if __name__ == "__main__":
    main()
