"""Array transfer: a float64 array made by a task in alice, consumed by a task in bob.

Each run is a fresh pair of processes (so peak RSS belongs to one size and one run). Alice makes
the array, both parties ``get`` a tiny marker computed from it (so it exists), then alice times
from there until bob's task has read a few elements and its tiny result is back in alice. A
2 MiB array goes first through the same path, so connections are warm. Arrays of 8 MiB or less
are timed several times per run (the run's figure is their median) and peak RSS is read after
the first of them. Same-run baseline: a raw loopback socket moving the same number of bytes
(:mod:`benchmarks.raw`), timed the same number of times on one connection.
"""

from __future__ import annotations

import statistics
import time
from typing import Any

import silo

from . import raw
from .harness import Figure, Settings, Spec, addresses, loop_name, peak_rss_mib, run_parties

NAME = "transfer"
MIB = 1 << 20
TARGET_SHARE = 0.5
TARGET_SIZE = 256 * MIB
#: Mid-size transfers with the same target (issue 13).
MID_SIZES = (1 * MIB, 4 * MIB, 16 * MIB)
RAYFED = "RayFed 62 MiB/s at 256 MiB (measured elsewhere)"
#: Per (uvloop, size): each run's (floor ms, alice CPU ms, bob CPU ms) per transfer.
DETAILS: dict[tuple[bool, int], list[tuple[float, float, float]]] = {}


@silo.remote
def make(count: int) -> Any:
    import numpy as np

    return np.full(count, 1.5)


@silo.remote
def marker(array: Any) -> int:
    return int(array.size)


@silo.remote
def consume(array: Any) -> float:
    return float(array[0] + array[array.size // 2] + array[-1])


def repetitions(nbytes: int) -> int:
    """Transfers timed per run: several for small arrays (one is under a millisecond)."""
    return max(1, min(8, 16 * MIB // nbytes))


async def party(
    party: str, addresses: dict[str, str], nbytes: int, reps: int, uvloop: bool
) -> dict[str, Any]:
    seconds: list[float] = []
    floor: list[float] = []
    cpu: list[float] = []
    async with silo.init(addresses, party, job_name="bench-transfer", logging_level="warning"):
        warm = make.party("alice").remote(2 * MIB // 8)
        await silo.get(consume.party("bob").remote(warm))
        for rep in range(reps):
            array = make.party("alice").remote(nbytes // 8)
            size = await silo.get(marker.party("alice").remote(array))
            start, cpu0 = time.perf_counter(), time.process_time()
            check = await silo.get(consume.party("bob").remote(array))
            seconds.append(time.perf_counter() - start)
            cpu.append(time.process_time() - cpu0)
            if size != nbytes // 8 or check != 4.5:
                raise AssertionError(f"wrong transfer: size {size}, checksum {check}")
            if rep == 0:
                peak = peak_rss_mib()
            # The same exchange with a one-element array: what any size pays.
            tiny = make.party("alice").remote(1)
            await silo.get(marker.party("alice").remote(tiny))
            start = time.perf_counter()
            await silo.get(consume.party("bob").remote(tiny))
            floor.append(time.perf_counter() - start)
    return {
        "seconds": statistics.median(seconds),
        "floor_seconds": statistics.median(floor),
        "cpu_seconds": statistics.median(cpu),
        "peak_rss_mib": peak,
    }


def one_run(settings: Settings, uvloop: bool, nbytes: int) -> tuple[float, float, float]:
    """(MiB/s, alice peak RSS, bob peak RSS) of one fresh pair; :data:`DETAILS` gets the
    run's floor (the same exchange of a one-element array) and CPU per transfer, in ms."""
    addrs = addresses(["alice", "bob"])
    kwargs = {"nbytes": nbytes, "reps": repetitions(nbytes)}
    outcomes = run_parties(
        [
            Spec(p, "transfer", "party", {"party": p, "addresses": addrs, **kwargs})
            for p in ("alice", "bob")
        ],
        uvloop=uvloop,
        timeout=180,
        settings=settings,
        tag=f"transfer-{nbytes // MIB}MiB",
    )
    alice, bob = (o.result for o in outcomes)
    DETAILS.setdefault((uvloop, nbytes), []).append(
        (alice["floor_seconds"] * 1e3, alice["cpu_seconds"] * 1e3, bob["cpu_seconds"] * 1e3)
    )
    return nbytes / MIB / alice["seconds"], alice["peak_rss_mib"], bob["peak_rss_mib"]


def _size_name(nbytes: int) -> str:
    return f"{nbytes // (1 << 30)} GiB" if nbytes >= 1 << 30 else f"{nbytes // MIB} MiB"


def run(settings: Settings) -> list[Figure]:
    sizes = [MIB, 4 * MIB] if settings.smoke else [*MID_SIZES, 256 * MIB, 1024 * MIB]
    runs = settings.runs_for()
    figures: list[Figure] = []
    for nbytes in sizes:
        name = _size_name(nbytes)
        socket_rates: list[float] = []
        socket_rss: list[float] = []
        rates: dict[bool, list[float]] = {uv: [] for uv in settings.loops}
        sender: dict[bool, list[float]] = {uv: [] for uv in settings.loops}
        receiver: dict[bool, list[float]] = {uv: [] for uv in settings.loops}
        for _ in range(runs):
            rate, rss = raw.tcp_transfer(settings, nbytes, repetitions(nbytes))
            socket_rates.append(rate)
            socket_rss.append(rss)
            for uvloop in settings.loops:
                rate, alice_rss, bob_rss = one_run(settings, uvloop, nbytes)
                rates[uvloop].append(rate)
                sender[uvloop].append(alice_rss)
                receiver[uvloop].append(bob_rss)
        base = Figure(NAME, f"{name} baseline: raw loopback socket", "-", "MiB/s", socket_rates)
        base.note = f"socket receiver peak RSS {max(socket_rss):.0f} MiB"
        for uvloop in settings.loops:
            fig = Figure(NAME, f"{name} alice -> bob", loop_name(uvloop), "MiB/s", rates[uvloop])
            share = fig.median / base.median
            fig.baseline = f"socket {base.median:.0f} MiB/s ({share:.0%})"
            details = DETAILS.get((uvloop, nbytes), [])
            if details:
                floor, alice_cpu, bob_cpu = (
                    statistics.median(d[i] for d in details) for i in range(3)
                )
                fig.note = (
                    f"{nbytes / MIB / fig.median * 1e3:.2f} ms per transfer, of which a "
                    f"one-element array takes {floor:.2f} ms; CPU per transfer: alice "
                    f"{alice_cpu:.2f} ms, bob {bob_cpu:.2f} ms"
                )
            if nbytes == TARGET_SIZE:
                fig.baseline += f"; {RAYFED}"
            if nbytes == TARGET_SIZE or nbytes in MID_SIZES:
                fig.target = f">= {TARGET_SHARE:.0%} of socket"
                fig.met = share >= TARGET_SHARE
            limit = 2 * nbytes / MIB + 100
            memory = Figure(
                NAME,
                f"{name} receiver (bob) peak RSS",
                loop_name(uvloop),
                "MiB",
                receiver[uvloop],
                baseline=f"sender (alice) peak RSS {statistics.median(sender[uvloop]):.0f} MiB",
                target=f"<= 2x payload + 100 = {limit:.0f} MiB",
                met=max(receiver[uvloop]) <= limit,
            )
            figures += [fig, memory]
        figures.append(base)
    return figures
