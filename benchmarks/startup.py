"""Start-up: from the parent's ``Popen`` to ``silo.init`` ready, and to the first round done.

The parent records ``time.monotonic_ns()`` just before starting each party; the party records
when its code starts, when ``import silo`` is done, when ``init`` returned and when the first
cross-party round (two actor calls, an aggregate, ``get`` in both) is done. A run's figure is
the slower of the two parties. Nothing heavy is imported before the first timestamp.
"""

from __future__ import annotations

import statistics
import sys
import time
from typing import Any

from .harness import Figure, Settings, Spec, addresses, loop_name, run_parties

NAME = "startup"
TARGET_READY_S = 0.3
RAYFED = "RayFed with Ray 4-5 s (measured elsewhere)"


def party(party: str, addresses: dict[str, str], uvloop: bool) -> dict[str, Any]:
    main_ns = getattr(sys.modules.get("__main__"), "T_PROCESS_MAIN", None) or time.monotonic_ns()
    importing_ns = time.monotonic_ns()
    import silo
    from silo.loop import run

    imported_ns = time.monotonic_ns()

    @silo.remote
    class Counter:
        def inc(self, n: int) -> int:
            return n

    @silo.remote
    class Aggregator:
        def combine(self, a: int, b: int) -> int:
            return a + b

    async def main() -> tuple[int, int]:
        async with silo.init(addresses, party, job_name="bench-startup", logging_level="warning"):
            ready_ns = time.monotonic_ns()
            a = Counter.party("alice").remote()
            b = Counter.party("bob").remote()
            agg = Aggregator.party("alice").remote()
            total = await silo.get(agg.combine.remote(a.inc.remote(1), b.inc.remote(2)))
            round_ns = time.monotonic_ns()
            if total != 3:
                raise AssertionError(f"first round gave {total}")
        return ready_ns, round_ns

    ready_ns, round_ns = run(main(), use_uvloop=uvloop)
    return {
        "main": main_ns,
        "importing": importing_ns,
        "imported": imported_ns,
        "ready": ready_ns,
        "round": round_ns,
    }


def one_run(settings: Settings, uvloop: bool) -> dict[str, float]:
    addrs = addresses(["alice", "bob"])
    outcomes = run_parties(
        [Spec(p, "startup", "party", {"party": p, "addresses": addrs}) for p in ("alice", "bob")],
        uvloop=uvloop,
        timeout=60,
        settings=settings,
        tag="startup",
    )

    def worst(key: str, since: str | None = None) -> float:
        return max(
            float(o.result[key] - (o.result[since] if since else o.spawned_ns)) / 1e9
            for o in outcomes
        )

    return {
        "ready": worst("ready"),
        "round": worst("round"),
        "interpreter": worst("main"),
        "harness": worst("importing", "main"),
        "import": worst("imported", "importing"),
        "init": worst("ready", "imported"),
    }


def run(settings: Settings) -> list[Figure]:
    figures = []
    for uvloop in settings.loops:
        results = [one_run(settings, uvloop) for _ in range(settings.runs_for())]

        def med(key: str, results: list[dict[str, float]] = results) -> float:
            return statistics.median(r[key] for r in results)

        ready = Figure(
            NAME,
            "process start -> silo.init ready (slower party)",
            loop_name(uvloop),
            "s",
            [r["ready"] for r in results],
            baseline=RAYFED,
            target=f"<= {TARGET_READY_S} s",
            note=(
                f"interpreter {med('interpreter') * 1e3:.0f} ms, suite's own imports "
                f"{med('harness') * 1e3:.0f} ms, import silo "
                f"{med('import') * 1e3:.0f} ms, init {med('init') * 1e3:.0f} ms"
            ),
        )
        ready.met = ready.median <= TARGET_READY_S
        first = Figure(
            NAME,
            "process start -> first cross-party round done (slower party)",
            loop_name(uvloop),
            "s",
            [r["round"] for r in results],
            baseline=RAYFED,
        )
        figures += [ready, first]
    return figures
