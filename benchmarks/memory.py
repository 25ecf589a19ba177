"""Memory over long jobs: RSS and the runtime's tables after 1,000 and after 20,000 tiny rounds.

The rounds are :mod:`benchmarks.tiny`'s (an actor call in alice and one in bob, an aggregator call
in alice on both, ``get`` of the aggregate in both parties), plus, every 10 rounds, an actor made
in each party, called once and dropped. After 1,000 rounds and again after 20,000 (in the same
pair of processes), each party reports its resident set size (VmRSS) and the sizes of its object
table, call log, set of values pushed and actor table, after a ``gc.collect()``. The tables must
not grow with the number of rounds (they are pruned as the program drops its handles): the target
allows each table 2 entries more at the end (the last round's releases may be in flight) and RSS
10 MiB more.
"""

from __future__ import annotations

import asyncio
import gc
from typing import Any

import silo
from silo import context
from silo.core import Core

from .harness import Figure, Settings, Spec, addresses, loop_name, run_parties
from .tiny import Aggregator, Counter

NAME = "memory"
RSS_GROWTH_MIB = 10.0
TABLES = ("objects", "calls", "pushed", "actors")
#: Entries of the last round may still be in flight (a handle released from a worker thread).
JITTER = 2


def rss_mib() -> float:
    """This process's current resident set size (VmRSS) in MiB."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


async def _snapshot(runtime: Core, rounds: int) -> dict[str, Any]:
    gc.collect()
    for _ in range(10):
        await asyncio.sleep(0)  # actors whose handle was just dropped finish their queue
    return {"rounds": rounds, "rss_mib": rss_mib(), **runtime.sizes()}


async def party(
    party: str, addresses: dict[str, str], checkpoints: list[int], uvloop: bool
) -> dict[str, Any]:
    snapshots = []
    async with silo.init(addresses, party, job_name="bench-memory", logging_level="warning"):
        runtime = context.current_runtime()
        a = Counter.party("alice").remote(0)
        b = Counter.party("bob").remote(0)
        agg = Aggregator.party("alice").remote()
        done = 0
        for checkpoint in checkpoints:
            for r in range(done, checkpoint):
                total = await silo.get(agg.combine.remote(a.inc.remote(1), b.inc.remote(1)))
                if r % 10 == 0:
                    scratch = Counter.party(party).remote(r)
                    await silo.get(scratch.inc.remote(1))
                    del scratch
            done = checkpoint
            if total != 2 * done:
                raise AssertionError(f"last aggregate {total}, expected {2 * done}")
            snapshots.append(await _snapshot(runtime, done))
    return {"snapshots": snapshots}


def _tables(snapshot: dict[str, Any]) -> str:
    return ", ".join(f"{k} {snapshot[k]}" for k in TABLES)


def run(settings: Settings) -> list[Figure]:
    checkpoints = [50, 500] if settings.smoke else [1000, 20000]
    figures = []
    for uvloop in settings.loops:
        per_point: dict[int, list[float]] = {c: [] for c in checkpoints}
        tables: dict[int, list[str]] = {c: [] for c in checkpoints}
        bounded = True
        for _ in range(settings.runs_for()):
            addrs = addresses(["alice", "bob"])
            kwargs = {"addresses": addrs, "checkpoints": checkpoints}
            outcomes = run_parties(
                [Spec(p, "memory", "party", {**kwargs, "party": p}) for p in ("alice", "bob")],
                uvloop=uvloop,
                timeout=600,
                settings=settings,
                tag="memory",
            )
            for outcome in outcomes:
                first, last = outcome.result["snapshots"][0], outcome.result["snapshots"][-1]
                bounded &= all(last[k] <= first[k] + JITTER for k in TABLES)
                for snap in outcome.result["snapshots"]:
                    if outcome.role == "alice":
                        per_point[snap["rounds"]].append(snap["rss_mib"])
                    tables[snap["rounds"]].append(f"{outcome.role}: {_tables(snap)}")
        first_fig = None
        for checkpoint in checkpoints:
            fig = Figure(
                NAME,
                f"alice RSS after {checkpoint:,} tiny rounds",
                loop_name(uvloop),
                "MiB",
                per_point[checkpoint],
                baseline="tables " + "; ".join(sorted(set(tables[checkpoint]))),
            )
            if first_fig is None:
                first_fig = fig
            else:
                growth = fig.median - first_fig.median
                fig.target = (
                    f"tables constant (+{JITTER}); RSS growth <= {RSS_GROWTH_MIB:g} MiB "
                    f"(grew {growth:.1f} MiB)"
                )
                fig.met = bounded and growth <= RSS_GROWTH_MIB
            figures.append(fig)
    return figures
