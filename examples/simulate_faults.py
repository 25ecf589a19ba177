"""Testing a federated program's failure handling with ``silo.simulate`` and a fault plan.

``train`` is a small federated-averaging loop: every round each party computes an update, alice
averages them, everybody gets the average. When a party is lost, each survivor's ``get`` raises
``silo.PeerUnavailableError`` naming it; ``train`` records the round it stopped at and the last
good weight (a real program would write a checkpoint there) and lets the error go on.

The checks below run it under four fault plans, each in a fraction of a second, without sockets:
carol killed after her second frame, bob frozen (found by the silence timeout), one of bob's
frames lost on the way to alice (it is sent again: training finishes), and carol's frames late.
Run: ``python examples/simulate_faults.py``.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import silo
from silo import faults

PARTIES = ["alice", "bob", "carol"]
ROUNDS = 4
#: Short deadlines, so a frozen party is found in 0.2 s rather than the default 60 s.
CONFIG = {"cross_silo_comm": {"timeout_in_ms": 200, "heartbeat_interval_ms": 20}}
#: What each party's ``train`` recorded in the last simulation.
REPORT: dict[str, str] = {}


@silo.remote
def local_update(party: str, weight: float) -> float:
    return weight + {"alice": 1.0, "bob": 2.0, "carol": 3.0}[party]


@silo.remote
def average(*updates: float) -> float:
    return sum(updates) / len(updates)


async def train(party: str) -> float:
    weight = 0.0
    for round_ in range(ROUNDS):
        updates = [local_update.party(p).remote(p, weight) for p in PARTIES]
        try:
            weight = await silo.get(average.party("alice").remote(*updates))
        except silo.PeerUnavailableError as exc:
            REPORT[party] = f"stopped in round {round_}: {exc.src_party} lost, kept {weight}"
            raise
    REPORT[party] = f"finished: {weight}"
    return weight


async def run(plan: list[Any]) -> str:
    REPORT.clear()
    try:
        results = await silo.simulate(train, PARTIES, faults=plan, config=CONFIG)
    except silo.PeerUnavailableError as exc:
        return f"PeerUnavailableError({exc.src_party!r})"
    return f"{results}"


async def main() -> None:
    checks = [
        ([], "{'alice': 8.0, 'bob': 8.0, 'carol': 8.0}"),
        ([faults.kill("carol", after_frames=2)], "PeerUnavailableError('carol')"),
        ([faults.freeze("bob", after_frames=1)], "PeerUnavailableError('bob')"),
        ([faults.drop("bob", "alice", kinds="data", count=1)], "{'alice': 8.0"),
        ([faults.delay("carol", "alice", 0.05)], "{'alice': 8.0"),
    ]
    for plan, expected in checks:
        started = time.monotonic()
        outcome = await run(plan)
        took = time.monotonic() - started
        assert outcome.startswith(expected), (plan, outcome)
        print(f"{plan or 'no faults'}: {outcome} in {took:.2f} s")
        for party in sorted(REPORT):
            print(f"  {party}: {REPORT[party]}")
    assert REPORT["alice"] == "finished: 8.0", REPORT


if __name__ == "__main__":
    asyncio.run(main())
