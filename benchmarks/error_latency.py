"""Error latency: from the raise in alice's task to the ``FedRemoteError`` in bob's ``get``.

Both timestamps are ``time.monotonic_ns()`` (CLOCK_MONOTONIC is system-wide on Linux, so
they compare across processes). The failing task carries its raise time in the exception, which
alice's own ``get`` re-raises with its type kept. Before each error both parties meet on a tiny
``get``; the task then sleeps 20 ms so bob is already waiting. Each run is a fresh pair of
processes measuring its share of the :data:`ERRORS` errors after one unmeasured warm-up error;
the figures are the median (p50) and the 99th percentile (p99) over all of them.
"""

from __future__ import annotations

import math
import statistics
import time
from typing import Any

import silo

from .harness import Figure, Settings, Spec, addresses, loop_name, run_parties

NAME = "error"
TARGET_MS = 20.0
TARGET_P99_MS = 5.0
#: Errors measured per loop, over all runs.
ERRORS = 200
RAYFED = "RayFed ~290 ms (measured elsewhere)"


class Boom(Exception):
    """Raised by the task; ``args[0]`` is the monotonic time of the raise in ns."""


@silo.remote
def meet(i: int) -> int:
    return i


@silo.remote
def boom(delay: float) -> int:
    time.sleep(delay)
    raise Boom(time.monotonic_ns())


async def party(party: str, addresses: dict[str, str], errors: int, uvloop: bool) -> dict[str, Any]:
    stamps: list[int] = []
    async with silo.init(addresses, party, job_name="bench-error", logging_level="error"):
        for i in range(errors + 1):
            await silo.get(meet.party("bob").remote(i))
            failing = boom.party("alice").remote(0.02)
            try:
                await silo.get(failing)
            except Boom as exc:
                stamps.append(int(exc.args[0]))
            except silo.FedRemoteError:
                stamps.append(time.monotonic_ns())
            else:
                raise AssertionError("the failing task did not fail")
    return {"stamps": stamps[1:]}


def one_run(settings: Settings, uvloop: bool, errors: int) -> list[float]:
    addrs = addresses(["alice", "bob"])
    outcomes = run_parties(
        [
            Spec(p, "error_latency", "party", {"party": p, "addresses": addrs, "errors": errors})
            for p in ("alice", "bob")
        ],
        uvloop=uvloop,
        timeout=60,
        settings=settings,
        tag="error",
    )
    raised, caught = (o.result["stamps"] for o in outcomes)
    return [(c - r) / 1e6 for r, c in zip(raised, caught, strict=True)]


def percentile(samples: list[float], q: float) -> float:
    """The ``q``-th percentile of ``samples`` (nearest rank)."""
    ordered = sorted(samples)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def run(settings: Settings) -> list[Figure]:
    runs = settings.runs_for()
    errors = 2 if settings.smoke else math.ceil(ERRORS / runs)
    figures = []
    for uvloop in settings.loops:
        samples: list[float] = []
        per_run: list[float] = []
        for _ in range(runs):
            got = one_run(settings, uvloop, errors)
            samples += got
            per_run.append(percentile(got, 99))
        case = f"raise in alice -> FedRemoteError in bob ({runs} pairs x {errors} errors)"
        fig = Figure(
            NAME,
            case + ", p50",
            loop_name(uvloop),
            "ms",
            samples,
            baseline=RAYFED,
            target=f"<= {TARGET_MS:.0f} ms",
            note=f"mean {statistics.fmean(samples):.3f} ms over {len(samples)} errors",
        )
        fig.met = fig.median <= TARGET_MS
        p99 = Figure(
            NAME,
            case + ", p99",
            loop_name(uvloop),
            "ms",
            per_run,
            baseline=f"p99 over all {len(samples)} errors: {percentile(samples, 99):.3f} ms",
            target=f"p99 <= {TARGET_P99_MS:.0f} ms",
            note="samples: each run's p99",
        )
        p99.met = percentile(samples, 99) <= TARGET_P99_MS
        figures += [fig, p99]
    return figures
