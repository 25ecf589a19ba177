"""Tiny-task rounds, RayFed's many-tiny-tasks shape.

Each round: an actor call in alice and one in bob, an aggregator actor call in alice on both
results, then ``silo.get`` of the aggregate in both parties. After a warm-up, ``rounds`` rounds
are timed in alice. Same-run baseline: the aiohttp websocket round trip of :mod:`benchmarks.raw`.

The same round is also timed with ``async def`` methods, which silo runs on the event loop
instead of handing them to the actor's thread: the difference between the two figures is what
the thread hand-offs of a round cost (three per round, two of them on its critical path).
"""

from __future__ import annotations

import statistics
import time
from typing import Any

import silo

from . import raw
from .harness import Figure, Settings, Spec, addresses, loop_name, run_parties

NAME = "tiny"
#: A round at most this many raw websocket round trips of the same run (issue 13).
TARGET_RTT = 1.7
RAYFED_MS = "17-19 ms"


@silo.remote
class Counter:
    def __init__(self, value: int) -> None:
        self.value = value

    def inc(self, n: int) -> int:
        self.value += n
        return self.value


@silo.remote
class Aggregator:
    def combine(self, a: int, b: int) -> int:
        return a + b


@silo.remote
class LoopCounter:
    """:class:`Counter` with an ``async def`` method: it runs on the loop, not a thread."""

    def __init__(self, value: int) -> None:
        self.value = value

    async def inc(self, n: int) -> int:
        self.value += n
        return self.value


@silo.remote
class LoopAggregator:
    async def combine(self, a: int, b: int) -> int:
        return a + b


async def party(
    party: str,
    addresses: dict[str, str],
    rounds: int,
    warmup: int,
    uvloop: bool,
    on_loop: bool = False,
) -> dict[str, Any]:
    counter, aggregator = (LoopCounter, LoopAggregator) if on_loop else (Counter, Aggregator)
    async with silo.init(addresses, party, job_name="bench-tiny", logging_level="warning"):
        a = counter.party("alice").remote(0)
        b = counter.party("bob").remote(0)
        agg = aggregator.party("alice").remote()
        for _ in range(warmup):
            total = await silo.get(agg.combine.remote(a.inc.remote(1), b.inc.remote(1)))
        start, cpu = time.perf_counter(), time.process_time()
        for _ in range(rounds):
            total = await silo.get(agg.combine.remote(a.inc.remote(1), b.inc.remote(1)))
        elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
        expected = 2 * (warmup + rounds)
        if total != expected:
            raise AssertionError(f"last aggregate {total}, expected {expected}")
    return {"ms_per_round": elapsed / rounds * 1e3, "cpu_ms_per_round": cpu / rounds * 1e3}


def one_run(
    settings: Settings, uvloop: bool, rounds: int, warmup: int, on_loop: bool = False
) -> tuple[float, float, float]:
    """(ms per round, alice CPU ms per round, bob CPU ms per round) of one fresh pair."""
    addrs = addresses(["alice", "bob"])
    kwargs = {"addresses": addrs, "rounds": rounds, "warmup": warmup, "on_loop": on_loop}
    outcomes = run_parties(
        [Spec(p, "tiny", "party", {**kwargs, "party": p}) for p in ("alice", "bob")],
        uvloop=uvloop,
        timeout=120,
        settings=settings,
        tag="tiny-loop" if on_loop else "tiny",
    )
    alice, bob = (o.result for o in outcomes)
    return alice["ms_per_round"], alice["cpu_ms_per_round"], bob["cpu_ms_per_round"]


def run(settings: Settings) -> list[Figure]:
    rounds, warmup = (50, 10) if settings.smoke else (2000, 200)
    runs = settings.runs_for()
    figures = []
    for uvloop in settings.loops:
        ws: list[float] = []
        samples: list[float] = []
        cpu: list[tuple[float, float]] = []
        on_loop: list[float] = []
        for _ in range(runs):
            ws.append(raw.ws_rtt(settings, uvloop, 200 if settings.smoke else 5000))
            ms, alice_cpu, bob_cpu = one_run(settings, uvloop, rounds, warmup)
            samples.append(ms)
            cpu.append((alice_cpu, bob_cpu))
            on_loop.append(one_run(settings, uvloop, rounds, warmup, on_loop=True)[0])
        ws_fig = Figure(
            NAME,
            "baseline: raw aiohttp websocket round trip (2 processes)",
            loop_name(uvloop),
            "ms",
            ws,
        )
        fig = Figure(
            NAME,
            f"round: 3 actor calls + get in both parties ({rounds} rounds)",
            loop_name(uvloop),
            "ms/round",
            samples,
            target=f"<= {TARGET_RTT}x ws RTT = {TARGET_RTT * ws_fig.median:.3f} ms",
            note=(
                f"CPU per round (all threads): alice "
                f"{statistics.median(c[0] for c in cpu):.3f} ms, bob "
                f"{statistics.median(c[1] for c in cpu):.3f} ms"
            ),
        )
        fig.met = fig.median <= TARGET_RTT * ws_fig.median
        fig.baseline = (
            f"ws RTT {ws_fig.median:.3f} ms ({fig.median / ws_fig.median:.1f}x); "
            f"RayFed {RAYFED_MS} (measured elsewhere)"
        )
        loop_fig = Figure(
            NAME,
            f"round with async def methods (on the loop, no thread hand-off; {rounds} rounds)",
            loop_name(uvloop),
            "ms/round",
            on_loop,
        )
        loop_fig.baseline = (
            f"ws RTT {ws_fig.median:.3f} ms ({loop_fig.median / ws_fig.median:.1f}x); the "
            f"thread hand-offs of a round cost {fig.median - loop_fig.median:.3f} ms"
        )
        figures += [fig, loop_fig, ws_fig]
    return figures
