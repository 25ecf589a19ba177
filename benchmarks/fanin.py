"""Fan-in: N sending parties each push a 1 MiB float64 array per round to an aggregating party.

Each round every sender makes its array in a task, the aggregator sums one element of each, and
every party calls ``get`` on the aggregate (as in a federated-averaging round). N + 1 processes; the
aggregator times the rounds. The runs are consecutive batches of rounds in one group of
processes, after warm-up rounds (starting 17 processes per run would dominate on 2 cores).
"""

from __future__ import annotations

import time
from typing import Any

import silo

from .harness import Figure, Settings, Spec, addresses, loop_name, run_parties

NAME = "fanin"
AGG = "agg"


@silo.remote
def make(value: float, count: int) -> Any:
    import numpy as np

    return np.full(count, value)


@silo.remote
def aggregate(*arrays: Any) -> float:
    return float(sum(a[0] for a in arrays))


async def party(
    party: str,
    addresses: dict[str, str],
    nbytes: int,
    rounds: int,
    runs: int,
    warmup: int,
    uvloop: bool,
) -> dict[str, Any]:
    senders = [p for p in addresses if p != AGG]
    config = {"cross_silo_comm": {"timeout_in_ms": 120_000}}
    times: list[float] = []
    async with silo.init(
        addresses, party, job_name="bench-fanin", config=config, logging_level="warning"
    ):

        async def one_round(r: int) -> None:
            arrays = [make.party(s).remote(float(r), nbytes // 8) for s in senders]
            total = await silo.get(aggregate.party(AGG).remote(*arrays))
            if total != r * len(senders):
                raise AssertionError(f"round {r}: aggregate {total}")

        for r in range(warmup):
            await one_round(r)
        for i in range(runs):
            start = time.perf_counter()
            for r in range(rounds):
                await one_round(warmup + i * rounds + r)
            times.append((time.perf_counter() - start) / rounds * 1e3)
    return {"ms_per_round": times}


def one_group(
    settings: Settings, uvloop: bool, senders: int, nbytes: int, rounds: int, warmup: int
) -> list[float]:
    parties = [AGG, *(f"p{i:02d}" for i in range(1, senders + 1))]
    addrs = addresses(parties)
    kwargs = {
        "addresses": addrs,
        "nbytes": nbytes,
        "rounds": rounds,
        "runs": settings.runs_for(),
        "warmup": warmup,
    }
    outcomes = run_parties(
        [Spec(p, "fanin", "party", {**kwargs, "party": p}) for p in parties],
        uvloop=uvloop,
        timeout=240,
        settings=settings,
        tag=f"fanin-{senders}",
    )
    return [float(t) for t in outcomes[0].result["ms_per_round"]]


def run(settings: Settings) -> list[Figure]:
    if settings.smoke:
        counts, nbytes, rounds, warmup = [2, 3], 256 << 10, 3, 1
    else:
        counts, nbytes, rounds, warmup = [2, 4, 8, 16], 1 << 20, 20, 3
    size = f"{nbytes >> 20} MiB" if nbytes >= 1 << 20 else f"{nbytes >> 10} KiB"
    figures = []
    for uvloop in settings.loops:
        per_count: dict[int, Figure] = {}
        for n in counts:
            samples = one_group(settings, uvloop, n, nbytes, rounds, warmup)
            per_count[n] = Figure(
                NAME,
                f"{n} parties x {size} -> aggregator ({rounds} rounds/run)",
                loop_name(uvloop),
                "ms/round",
                samples,
            )
        largest, previous = counts[-1], counts[-2]
        top = per_count[largest]
        ratio = top.median / per_count[previous].median
        allowed = largest / previous
        top.target = f"completes; t({largest})/t({previous}) <= {allowed:g} (linear)"
        top.met = ratio <= allowed
        for n, fig in per_count.items():
            fig.baseline = f"{fig.median / n:.2f} ms per sending party"
        top.baseline += f"; t({largest})/t({previous}) = {ratio:.2f}"
        figures += list(per_count.values())
    return figures
