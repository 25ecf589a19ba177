"""``Runtime.stats()``: frames and bytes per peer, calls run, in one process and across two."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

import silo
from silo import context
from silo.stats import Counters, PeerStats, Stats

from multiparty import PROGRAMS, addresses_for

OBSERVE = PROGRAMS / "observe.py"
BLOB = 10_000
#: A DATA frame is its value's pickle plus a msgpack header and a few bytes of framing.
OVERHEAD = (16, 120)


def test_counters_count_calls_and_snapshot_is_frozen() -> None:
    now = [100.0]
    counters = Counters(["bob"], clock=lambda: now[0])
    first = counters.call_started("train", 12)
    now[0] += 1.0
    second = counters.call_started("eval", 13)
    assert counters.calls_running == 2
    longest = counters.longest_running()
    assert longest is not None and (longest.name, longest.seq) == ("train", 12)
    now[0] += 0.5
    counters.call_ended(first)
    counters.call_ended(first)
    assert counters.calls_run == 1 and counters.call_time_s == pytest.approx(1.5)
    counters.peer("bob").frames_sent += 2
    counters.peer("bob").bytes_sent += 40
    stats = counters.snapshot("alice")
    assert stats == Stats("alice", 1, 1.5, 1, 0, {"bob": PeerStats(2, 40, 0, 0, 0, 0)})
    assert stats.calls_running == 1 and stats.bytes_sent == 40 and stats.bytes_received == 0
    with pytest.raises(dataclasses.FrozenInstanceError):
        stats.calls_run = 5  # type: ignore[misc]
    with pytest.raises(TypeError):
        stats.peers["carol"] = PeerStats(0, 0, 0, 0, 0, 0)  # type: ignore[index]
    counters.peer("bob").frames_sent += 1
    assert stats.peers["bob"].frames_sent == 2, "a snapshot does not change afterwards"
    counters.call_ended(second)
    assert counters.calls_running == 0 and counters.calls_run == 2


@silo.remote
def make(n: int) -> bytes:
    return b"x" * n


@silo.remote
def size(blob: bytes) -> int:
    time.sleep(0.05)
    return len(blob)


@silo.remote
async def double(n: int) -> int:
    return 2 * n


class Meet:
    """Parties meet here, as ``asyncio.Barrier`` (Python 3.11+) lets them; reusable."""

    def __init__(self, parties: int) -> None:
        self._parties = parties
        self._arrived = 0
        self._released = asyncio.Event()

    async def wait(self) -> None:
        released = self._released
        self._arrived += 1
        if self._arrived == self._parties:
            self._arrived = 0
            self._released = asyncio.Event()
            released.set()
        else:
            await released.wait()


async def _exchange(party: str, meet: Meet) -> Stats:
    rt = context.current_runtime()
    blob = make.party("alice").remote(BLOB)
    n = size.party("bob").remote(blob)
    doubled = double.party("bob").remote(n)
    assert await silo.get(doubled) == 2 * BLOB
    peer = "bob" if party == "alice" else "alice"
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        stats = rt.stats()
        crossed = stats.peers[peer]
        if crossed.frames_sent >= 1 and crossed.frames_received >= 1 and not stats.bytes_in_flight:
            break
        await asyncio.sleep(0.02)
    await meet.wait()
    stats = rt.stats()
    await meet.wait()
    return stats


@pytest.mark.parametrize("transport", ["memory", "tcp"])
async def test_stats_after_a_known_exchange_in_one_process(transport: str) -> None:
    meet = Meet(2)
    main = lambda party: _exchange(party, meet)  # noqa: E731
    out = await silo.simulate(main, ["alice", "bob"], transport=transport)
    alice, bob = out["alice"], out["bob"]
    assert (alice.calls_run, bob.calls_run) == (1, 2)
    assert bob.call_time_s >= 0.05 and alice.calls_running == bob.calls_running == 0
    assert alice.bytes_in_flight == bob.bytes_in_flight == 0
    a_to_b, b_to_a = alice.peers["bob"], bob.peers["alice"]
    # alice pushes the blob to bob; bob pushes the doubled size to alice: one DATA each way.
    assert (a_to_b.frames_sent, a_to_b.frames_received) == (1, 1)
    assert (b_to_a.frames_sent, b_to_a.frames_received) == (1, 1)
    assert a_to_b.bytes_sent == b_to_a.bytes_received
    assert b_to_a.bytes_sent == a_to_b.bytes_received
    assert BLOB + OVERHEAD[0] <= a_to_b.bytes_sent <= BLOB + OVERHEAD[1]
    assert OVERHEAD[0] <= b_to_a.bytes_sent <= OVERHEAD[1]
    assert a_to_b.retries == a_to_b.reconnects == b_to_a.retries == 0


def _run(
    mode: str, tmp_path: Path, env: dict[str, str] | None = None, timeout: float = 60
) -> dict[str, Any]:
    """Run ``observe.py MODE`` as one process per party; each party's last RESULT and stderr."""
    addresses = addresses_for(["alice", "bob"])
    full_env = {
        **os.environ,
        "SILO_TEST_ADDRESSES": json.dumps(addresses),
        "PYTHONUNBUFFERED": "1",
        "MEET_DIR": str(tmp_path),
        **(env or {}),
    }
    procs = {
        party: subprocess.Popen(
            [sys.executable, str(OBSERVE), mode, party],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=full_env,
        )
        for party in addresses
    }
    out: dict[str, Any] = {}
    try:
        for party, proc in procs.items():
            stdout, stderr = proc.communicate(timeout=timeout)
            assert proc.returncode == 0, f"{party}: exit {proc.returncode}\n{stdout}\n{stderr}"
            results = [json.loads(x[7:]) for x in stdout.splitlines() if x.startswith("RESULT ")]
            assert results, f"{party} reported nothing:\n{stdout}\n{stderr}"
            out[party] = {"result": results[-1], "stderr": stderr}
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    return out


def test_stats_after_a_known_exchange_across_two_processes(tmp_path: Path) -> None:
    out = _run("exchange", tmp_path)
    alice, bob = out["alice"]["result"], out["bob"]["result"]
    assert (alice["calls_run"], bob["calls_run"]) == (1, 1)
    assert bob["call_time_s"] >= 0.05
    a, b = alice["peer"], bob["peer"]
    assert (a["frames_sent"], a["frames_received"]) == (1, 1)
    assert (b["frames_sent"], b["frames_received"]) == (1, 1)
    assert a["bytes_sent"] == b["bytes_received"] and b["bytes_sent"] == a["bytes_received"]
    assert BLOB + OVERHEAD[0] <= a["bytes_sent"] <= BLOB + OVERHEAD[1]
    assert OVERHEAD[0] <= b["bytes_sent"] <= OVERHEAD[1]
    assert alice["bytes_in_flight"] == bob["bytes_in_flight"] == 0
