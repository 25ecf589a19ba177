"""Error latency: from the raise in alice's task to the ``FedRemoteError`` in bob's ``get``.

Both timestamps are ``time.monotonic_ns()`` (CLOCK_MONOTONIC is system-wide on Linux, so
they compare across processes). The failing task carries its raise time in the exception, which
alice's own ``get`` re-raises with its type kept. Before each error both parties meet on a tiny
``get``; the task then sleeps 20 ms so bob is already waiting. Each run is a fresh pair of
processes measuring several errors after one unmeasured warm-up error.
"""

from __future__ import annotations

import time
from typing import Any

import silo

from .harness import Figure, Settings, Spec, addresses, loop_name, run_parties

NAME = "error"
TARGET_MS = 20.0
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


def run(settings: Settings) -> list[Figure]:
    errors = 2 if settings.smoke else 4
    runs = settings.runs_for()
    figures = []
    for uvloop in settings.loops:
        samples: list[float] = []
        for _ in range(runs):
            samples += one_run(settings, uvloop, errors)
        fig = Figure(
            NAME,
            f"raise in alice -> FedRemoteError in bob ({runs} pairs x {errors} errors)",
            loop_name(uvloop),
            "ms",
            samples,
            baseline=RAYFED,
            target=f"<= {TARGET_MS:.0f} ms",
        )
        fig.met = fig.median <= TARGET_MS
        figures.append(fig)
    return figures
