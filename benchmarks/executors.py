"""Executors: one party's CPU-bound pure-Python call graph on threads, processes and Dask.

One party (no peers) runs ``calls`` independent calls of a pure-Python loop calibrated to about
``work_ms`` each in that process, then one call summing them, timed from submit to ``get``.
``threads`` and ``processes`` have 2 workers; ``dask`` is a ``LocalCluster`` of 2 single-thread
worker processes the party starts itself (``address: local``), its start-up not timed. The
baseline is the same calls run one after another in the party process just before, so a
loaded machine slows both alike; the speed-up is that time over the graph's. The per-call
overhead is the mean time of ``tiny`` sequential calls of a function returning its argument,
after a warm-up that starts every worker and imports this module there, then ``tiny / 4``
such calls; for Dask, its baseline is the same calls submitted through the runtime's Dask
client directly, without silo, the two taking turns in four chunks. Executors do not depend
on the event loop, so this benchmark runs on the first loop selected only.
"""

from __future__ import annotations

import statistics
import time
from typing import Any

import silo
from silo import context

from .harness import Figure, Settings, Spec, addresses, loop_name, run_parties

NAME = "executors"
KINDS: dict[str, dict[str, Any]] = {
    "threads": {"kind": "threads", "max_workers": 2},
    "processes": {"kind": "processes", "max_workers": 2},
    "dask": {"kind": "dask", "address": "local", "n_workers": 2},
}


def spin(n: int) -> int:
    """Pure-Python work: holds the GIL all along."""
    total = 0
    for i in range(n):
        total += i * i % 7
    return total


def _calibrate(work_ms: float) -> int:
    n = 20_000
    while True:
        start = time.perf_counter()
        spin(n)
        elapsed = time.perf_counter() - start
        if elapsed > 0.02:
            return max(1, int(n * work_ms / 1e3 / elapsed))
        n *= 2


def ident(x: int) -> int:
    return x


@silo.remote
def work(n: int) -> int:
    return spin(n)


@silo.remote
def total(*parts: int) -> int:
    return sum(parts)


@silo.remote
def echo(x: int) -> int:
    return x


async def party(
    party: str,
    addresses: dict[str, str],
    executor: dict[str, Any],
    calls: int,
    work_ms: float,
    tiny: int,
    uvloop: bool,
) -> dict[str, Any]:
    n = _calibrate(work_ms)
    start = time.perf_counter()
    expected = sum(spin(n) for _ in range(calls))
    serial_s = time.perf_counter() - start
    config = {"executor": executor}
    async with silo.init(
        addresses, party, job_name="bench-executors", config=config, logging_level="warning"
    ):
        # Warm-up: every worker started and has imported this module (a worker process does so
        # on the first call of a function from it).
        await silo.get([work.party(party).remote(1) for _ in range(4)])
        await silo.get([echo.party(party).remote(i) for i in range(4)])
        for i in range(tiny // 4):
            await silo.get(echo.party(party).remote(i))
        start = time.perf_counter()
        result = await silo.get(
            total.party(party).remote(*[work.party(party).remote(n) for _ in range(calls)])
        )
        graph_s = time.perf_counter() - start
        if result != expected:
            raise AssertionError(f"the graph gave {result}, expected {expected}")
        client: Any = None
        if executor["kind"] == "dask":
            client = context.current_runtime().execution.executor.client  # type: ignore[attr-defined]
        silo_s = raw_s = 0.0
        # In chunks, silo and Dask's client taking turns, so both see the cluster alike.
        for chunk in range(4):
            start = time.perf_counter()
            for i in range(chunk, tiny, 4):
                if await silo.get(echo.party(party).remote(i)) != i:
                    raise AssertionError("echo returned another value")
            silo_s += time.perf_counter() - start
            if client is not None:
                start = time.perf_counter()
                for i in range(chunk, tiny, 4):
                    if await client.submit(ident, i, pure=False) != i:
                        raise AssertionError("ident returned another value")
                raw_s += time.perf_counter() - start
        call_ms = silo_s / tiny * 1e3
        raw_ms = raw_s / tiny * 1e3 if client is not None else None
    return {"graph_s": graph_s, "serial_s": serial_s, "call_ms": call_ms, "raw_ms": raw_ms}


def run(settings: Settings) -> list[Figure]:
    calls, work_ms, tiny = (4, 5.0, 10) if settings.smoke else (16, 50.0, 200)
    uvloop = settings.loops[0]
    graph: dict[str, list[float]] = {kind: [] for kind in KINDS}
    speedup: dict[str, list[float]] = {kind: [] for kind in KINDS}
    overhead: dict[str, list[float]] = {kind: [] for kind in KINDS}
    raw_dask: list[float] = []
    for _ in range(settings.runs_for()):
        for kind, executor in KINDS.items():
            kwargs = {"calls": calls, "work_ms": work_ms, "tiny": tiny, "executor": executor}
            spec = Spec("alice", NAME, "party", {**kwargs, "party": "alice"})
            spec.kwargs["addresses"] = addresses(["alice"])
            (outcome,) = run_parties(
                [spec], uvloop=uvloop, timeout=120, settings=settings, tag=f"{NAME}-{kind}"
            )
            graph[kind].append(outcome.result["graph_s"])
            speedup[kind].append(outcome.result["serial_s"] / outcome.result["graph_s"])
            overhead[kind].append(outcome.result["call_ms"])
            if outcome.result["raw_ms"] is not None:
                raw_dask.append(outcome.result["raw_ms"])
    figures = []
    for kind in KINDS:
        ratio = statistics.median(speedup[kind])
        fig = Figure(
            NAME,
            f"{calls} calls x {work_ms:g} ms pure Python, 2 workers: {kind}",
            loop_name(uvloop),
            "s",
            graph[kind],
            baseline=f"{ratio:.2f}x as fast as the same calls one after another in the party",
        )
        figures.append(fig)
    for kind in KINDS:
        figures.append(
            Figure(
                NAME,
                f"per-call overhead (tiny call, submit to get): {kind}",
                loop_name(uvloop),
                "ms",
                overhead[kind],
                baseline=(
                    f"the same calls through Dask's client directly: "
                    f"{statistics.median(raw_dask):.1f} ms"
                    if kind == "dask" and raw_dask
                    else ""
                ),
            )
        )
    return figures
