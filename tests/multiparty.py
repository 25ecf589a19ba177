"""Run a scenario as real OS processes, one per party, talking over 127.0.0.1 on free ports.

Each party runs ``tests/programs/scenarios.py SCENARIO PARTY`` with the addresses in the
``SILO_TEST_ADDRESSES`` environment variable. A scenario reports with lines ``RESULT <json>``.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PROGRAMS = Path(__file__).parent / "programs"
SCENARIOS = PROGRAMS / "scenarios.py"


def free_ports(n: int) -> list[int]:
    """``n`` distinct free loopback ports (bound once, then released)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def addresses_for(parties: list[str]) -> dict[str, str]:
    return {
        p: f"127.0.0.1:{port}" for p, port in zip(parties, free_ports(len(parties)), strict=True)
    }


@dataclass
class PartyRun:
    party: str
    returncode: int
    stdout: str
    stderr: str
    elapsed: float
    results: list[Any] = field(default_factory=list)

    @property
    def result(self) -> Any:
        assert self.results, f"{self.party} reported nothing:\n{self.stdout}\n{self.stderr}"
        return self.results[-1]

    def __str__(self) -> str:
        return (
            f"--- {self.party} exit {self.returncode} in {self.elapsed:.2f}s\n"
            f"{self.stdout}\n--- stderr\n{self.stderr}"
        )


def start_party(
    scenario: str, party: str, addresses: dict[str, str], *, env: dict[str, str] | None = None
) -> subprocess.Popen[str]:
    full_env = {
        **os.environ,
        "SILO_TEST_ADDRESSES": json.dumps(addresses),
        "PYTHONUNBUFFERED": "1",
        **(env or {}),
    }
    return subprocess.Popen(
        [sys.executable, str(SCENARIOS), scenario, party],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=full_env,
    )


def collect(proc: subprocess.Popen[str], party: str, started: float, timeout: float) -> PartyRun:
    try:
        out, err = proc.communicate(timeout=max(0.1, started + timeout - time.monotonic()))
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        err += f"\n[harness] killed after {timeout}s"
    results = [json.loads(line[7:]) for line in out.splitlines() if line.startswith("RESULT ")]
    return PartyRun(party, proc.returncode, out, err, time.monotonic() - started, results)


def run_federation(
    scenario: str,
    parties: list[str],
    *,
    timeout: float = 60.0,
    env: dict[str, str] | None = None,
    party_env: dict[str, dict[str, str]] | None = None,
    delays: dict[str, float] | None = None,
    only: list[str] | None = None,
) -> dict[str, PartyRun]:
    """Run ``scenario`` with one process per party (``only``: start just those) and wait."""
    addresses = addresses_for(parties)
    started = time.monotonic()
    procs: dict[str, subprocess.Popen[str]] = {}
    order = sorted(only or parties, key=lambda p: (delays or {}).get(p, 0.0))
    try:
        for party in order:
            delay = (delays or {}).get(party, 0.0)
            wait = started + delay - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            procs[party] = start_party(
                scenario, party, addresses, env={**(env or {}), **(party_env or {}).get(party, {})}
            )
        return {p: collect(proc, p, started, timeout) for p, proc in procs.items()}
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()
