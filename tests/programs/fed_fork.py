"""A parent forks one child per party with ``multiprocessing``, as RayFed's tests start parties.

Usage: ``fed_fork.py ADDRESSES_JSON`` (alice, bob and solo). The parent itself runs a one-party
job ("solo") and keeps it running while it forks: each child drops the inherited session and
calls ``fed.init`` for its own party; bob forgets ``fed.shutdown()``. Prints one JSON line: the
children's exit codes and results, and the parent's result after they ended.
"""

from __future__ import annotations

import json
import multiprocessing
import sys
from typing import Any

from silo import fed


@fed.remote
class MyActor:
    def __init__(self, value: int) -> None:
        self.value = value

    def inc(self, num: int) -> int:
        self.value = self.value + num
        return self.value


@fed.remote
def aggregate(val1: int, val2: int) -> int:
    return val1 + val2


def run(party: str, addresses: dict[str, str], queue: Any) -> None:
    fed.init(addresses=addresses, party=party, config={"cross_silo_comm": {"timeout_ms": 20000}})
    actor_alice = MyActor.party("alice").remote(1)
    actor_bob = MyActor.party("bob").remote(1)
    total = aggregate.party("bob").remote(actor_alice.inc.remote(1), actor_bob.inc.remote(2))
    queue.put((party, fed.get(total)))
    if party == "alice":
        fed.shutdown()


def main() -> None:
    every = json.loads(sys.argv[1])
    solo = {"solo": every.pop("solo")}
    fed.init(addresses=solo, party="solo", logging_level="warning")
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    procs = {p: ctx.Process(target=run, args=(p, every, queue)) for p in every}
    for proc in procs.values():
        proc.start()
    for proc in procs.values():
        proc.join(60)
    results = dict(queue.get(timeout=5) for _ in procs)
    after = fed.get(aggregate.party("solo").remote(2, 3))
    fed.shutdown()
    print(
        json.dumps(
            {
                "exitcodes": {p: proc.exitcode for p, proc in procs.items()},
                "results": dict(sorted(results.items())),
                "parent_after_fork": after,
            }
        )
    )


if __name__ == "__main__":
    main()
