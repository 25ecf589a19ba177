"""Scale: one federated-averaging round among 4, 8, 16 and 32 parties, simulated in one process.

`silo.simulate` with its default in-memory transport (no sockets; values still encoded, copied
and decoded as between processes). Each party computes a local update (a numpy vector of
100,000 float64, 800 kB, in a plain remote function), the first party averages them all, and
every party gets the average. One fresh process per run and party count; a warm-up round of 2
parties runs first. Reported per party count: the round (from the first call issued to the last
party's `get` returning, the slowest party's time), the whole `simulate` call (runtimes started
and shut down included) divided by the number of parties, and the peak memory per party (the
process's VmHWM growth over the run, divided by the number of parties). The growth from 4 to 32
parties is the last figure's note. Every party runs the same program, so each issues all N + 1
calls and keeps a handle on each: per party the work grows with N, and since the simulation runs
every party on one loop (one core), the round as a whole grows as N squared, where separate
processes would each grow as N. Memory per party should stay flat (its update and the average,
0.76 MiB each, plus the runtime).
"""

from __future__ import annotations

import asyncio
import statistics
import time
from typing import Any

import numpy as np

import silo

from .harness import Figure, Settings, Spec, loop_name, peak_rss_mib, run_parties
from .memory import rss_mib

NAME = "scale"
SIZES = (4, 8, 16, 32)
FLOATS = 100_000


@silo.remote
def local_update(seed: int, size: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(size)


@silo.remote
def average(*updates: np.ndarray) -> np.ndarray:
    return np.mean(updates, axis=0)


async def _round(parties: list[str], size: int) -> dict[str, float]:
    """One simulated round; returns its times in seconds."""
    ends: dict[str, float] = {}
    firsts: list[float] = []

    async def main(party: str) -> float:
        if not firsts:
            firsts.append(time.perf_counter())
        updates = [local_update.party(p).remote(i, size) for i, p in enumerate(parties)]
        result = await silo.get(average.party(parties[0]).remote(*updates))
        ends[party] = time.perf_counter()
        return float(result.sum())

    started = time.perf_counter()
    out = await silo.simulate(main, parties, job_name="bench-scale")
    total = time.perf_counter() - started
    if len(set(out.values())) != 1 or len(out) != len(parties):
        raise AssertionError(f"the parties got different averages: {out}")
    return {"round_s": max(ends.values()) - firsts[0], "simulate_s": total}


async def simulation(parties: int, size: int, uvloop: bool) -> dict[str, Any]:
    """One process's run: a warm-up round of 2 parties, then one round of ``parties``."""
    await _round(["w0", "w1"], size)
    before = rss_mib()
    names = [f"p{i}" for i in range(parties)]
    times = await _round(names, size)
    await asyncio.sleep(0)
    return {**times, "rss_before_mib": before, "peak_mib": peak_rss_mib()}


def run(settings: Settings) -> list[Figure]:
    sizes = (2, 4) if settings.smoke else SIZES
    floats = 1000 if settings.smoke else FLOATS
    figures = []
    for uvloop in settings.loops:
        rounds: dict[int, list[float]] = {n: [] for n in sizes}
        totals: dict[int, list[float]] = {n: [] for n in sizes}
        memory: dict[int, list[float]] = {n: [] for n in sizes}
        for n in sizes:
            for _ in range(settings.runs_for()):
                spec = Spec(f"{n} parties", NAME, "simulation", {"parties": n, "size": floats})
                [outcome] = run_parties(
                    [spec], uvloop=uvloop, timeout=300, settings=settings, tag=f"scale-{n}"
                )
                result = outcome.result
                rounds[n].append(result["round_s"] * 1000)
                totals[n].append(result["simulate_s"] * 1000 / n)
                growth = max(0.0, result["peak_mib"] - result["rss_before_mib"])
                memory[n].append(growth / n)
        loop = loop_name(uvloop)
        vector = f"{floats:,} float64 per update"
        for n in sizes:
            round_fig = Figure(
                NAME, f"fed-avg round, {n} parties (in memory)", loop, "ms", rounds[n], vector
            )
            whole = Figure(NAME, f"simulate per party, {n} parties", loop, "ms", totals[n])
            mem = Figure(NAME, f"peak memory per party, {n} parties", loop, "MiB", memory[n])
            figures += [round_fig, whole, mem]
        first, last = sizes[0], sizes[-1]
        grow_round = statistics.median(rounds[last]) / statistics.median(rounds[first])
        grow_mem = statistics.median(memory[last]) / max(statistics.median(memory[first]), 1e-9)
        figures[-1].note = (
            f"{first} -> {last} parties ({last // first}x): round x{grow_round:.1f}, "
            f"memory per party x{grow_mem:.2f}"
        )
    return figures
