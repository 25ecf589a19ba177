"""Programs for tests/test_stats.py and tests/test_activity.py, one OS process per party.

Usage: ``observe.py MODE PARTY`` with ``SILO_TEST_ADDRESSES`` (JSON) in the environment.
Reports with ``RESULT <json>`` lines on stdout.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import silo

ADDRESSES: dict[str, str] = json.loads(os.environ.get("SILO_TEST_ADDRESSES", "{}"))
BLOB = 10_000


@silo.remote
def make(n: int) -> bytes:
    return b"x" * n


@silo.remote
def size(blob: bytes) -> int:
    time.sleep(0.05)
    return len(blob)


@silo.remote
def slow(seconds: float) -> str:
    time.sleep(seconds)
    return "done"


def report(value: Any) -> None:
    print("RESULT " + json.dumps(value), flush=True)


async def settle(rt: silo.Runtime, peer: str, sent: int, received: int) -> None:
    """Wait (bounded) until the frames of the exchange have crossed both ways and every frame
    sent was acknowledged."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        stats = rt.stats()
        crossed = stats.peers[peer]
        if crossed.frames_sent >= sent and crossed.frames_received >= received:
            if stats.bytes_in_flight == 0:
                return
        await asyncio.sleep(0.02)


async def meet(party: str, step: str) -> None:
    """Wait (bounded) until both parties reached ``step``, through files in ``MEET_DIR``: a
    barrier outside silo, so it sends no frame."""
    directory = os.environ["MEET_DIR"]
    Path(directory, f"{party}.{step}").touch()  # noqa: ASYNC240
    deadline = time.monotonic() + 20
    while len([n for n in os.listdir(directory) if n.endswith("." + step)]) < 2:
        if time.monotonic() > deadline:
            raise TimeoutError(f"the other party did not reach {step}")
        await asyncio.sleep(0.01)


async def exchange(party: str) -> None:
    """alice makes a 10 kB blob, bob measures it (a plain call of 50 ms), alice gets the size:
    one DATA frame each way."""
    peer = "bob" if party == "alice" else "alice"
    async with silo.init(ADDRESSES, party, job_name="observe") as rt:
        blob = make.party("alice").remote(BLOB)
        n = size.party("bob").remote(blob)
        assert await silo.get(n) == BLOB
        await settle(rt, peer, 1, 1)
        await meet(party, "settled")
        stats = rt.stats()
        report(
            {
                "calls_run": stats.calls_run,
                "call_time_s": stats.call_time_s,
                "calls_running": stats.calls_running,
                "bytes_in_flight": stats.bytes_in_flight,
                "peer": dataclasses.asdict(stats.peers[peer]),
            }
        )
        await meet(party, "reported")


async def slow_get(party: str) -> None:
    """bob's call sleeps SLOW_S; alice's get waits for it with a short slow_get_warning_s."""
    config = {
        "slow_get_warning_s": float(os.environ["WARN_S"]),
        "cross_silo_comm": {"heartbeat_interval_ms": 100, "timeout_in_ms": 20000},
        "barrier_on_initializing": True,
    }
    async with silo.init(ADDRESSES, party, job_name="observe", config=config):
        started = time.monotonic()
        assert await silo.get(slow.party("bob").remote(float(os.environ["SLOW_S"]))) == "done"
        report({"waited": time.monotonic() - started})


async def traced(party: str) -> None:
    """The exchange of :func:`exchange` with an OpenTelemetry SDK tracer provider; every span
    this party ended is written to ``MEET_DIR/PARTY.spans.json``."""
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    async with silo.init(ADDRESSES, party, job_name="observe"):
        blob = make.party("alice").remote(BLOB)
        n = size.party("bob").remote(blob)
        assert await silo.get(n) == BLOB
    spans = [
        {
            "name": s.name,
            "trace_id": f"{s.context.trace_id:032x}",
            "span_id": f"{s.context.span_id:016x}",
            "parent": None if s.parent is None else f"{s.parent.span_id:016x}",
            "party": dict(s.attributes or {}).get("silo.party"),
            "object": dict(s.attributes or {}).get("silo.object"),
        }
        for s in exporter.get_finished_spans()
    ]
    Path(os.environ["MEET_DIR"], f"{party}.spans.json").write_text(json.dumps(spans))  # noqa: ASYNC240
    report(len(spans))


MODES = {"exchange": exchange, "slow_get": slow_get, "traced": traced}

if __name__ == "__main__":
    asyncio.run(MODES[sys.argv[1]](sys.argv[2]))
