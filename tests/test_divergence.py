"""Divergence detection: the parties' programs issue different calls at one id (silo.divergence).

The two-party tests run real OS processes (tests/programs/divergence.py); a nested ``.remote()``
and the call log itself are checked in one process.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

import silo
from silo.divergence import CallLog
from silo.wire import MAX_CALL_NAME

from multiparty import addresses_for, collect

PROGRAM = Path(__file__).parent / "programs" / "divergence.py"


def _run(scenario: str, timeout: float = 60.0) -> dict[str, Any]:
    addresses = addresses_for(["alice", "bob"])
    env = {**os.environ, "SILO_TEST_ADDRESSES": json.dumps(addresses), "PYTHONUNBUFFERED": "1"}
    started = time.monotonic()
    procs = {
        party: subprocess.Popen(
            [sys.executable, str(PROGRAM), scenario, party],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for party in ("alice", "bob")
    }
    return {party: collect(proc, party, started, timeout) for party, proc in procs.items()}


def test_two_programs_calling_different_functions_fail_fast_in_both_parties() -> None:
    """Bob sees the divergence at call 2 (alice's ``second`` arrives named train). Alice sees
    it from bob's ABORT (call 2), or at call 3 if bob's ``third``, sent before bob knew, arrives
    first: both are divergences of these programs, and both parties stop at once."""
    runs = _run("functions")
    for party, run in runs.items():
        result = run.result
        assert result is not None, str(run)
        assert result["type"] == "DivergenceError", str(run)
        calls = (2,) if party == "bob" else (2, 3)
        assert result["str"] in {
            f"programs diverged at call {n}: alice ran train, bob ran evaluate" for n in calls
        }, str(run)
        assert result["took"] < 15, str(run)
        assert run.returncode == 0, str(run)


def test_two_programs_calling_different_methods_fail_in_both_parties() -> None:
    runs = _run("methods")
    for run in runs.values():
        result = run.result
        assert result is not None, str(run)
        assert result["type"] == "DivergenceError", str(run)
        assert result["str"].startswith("programs diverged at call "), str(run)
        assert result["str"].endswith("alice ran Counter.inc, bob ran Counter.dec"), str(run)


@silo.remote
def inc(x: int) -> int:
    return x + 1


@silo.remote
def nests_in_a_thread(x: int) -> int:
    obj = inc.party("alice").remote(x)
    return id(obj)


@silo.remote
async def nests_on_the_loop(x: int) -> int:
    obj = inc.party("alice").remote(x)
    return id(obj)


@pytest.mark.parametrize("outer", [nests_in_a_thread, nests_on_the_loop])
async def test_a_remote_call_inside_a_remote_call_raises_at_once(outer: Any) -> None:
    async def main(party: str) -> Any:
        try:
            await silo.get(outer.party("alice").remote(1), timeout=10)
        except silo.SiloError as exc:
            return type(exc).__name__, str(exc)
        return None

    results = await silo.simulate(main, ["alice"])
    kind, message = results["alice"]
    name = outer.__qualname__
    assert kind == "SiloError"
    assert message.startswith(f"inc.remote() was called inside the remote call {name}: ")
    assert "every party must issue the same calls in the same order" in message


async def test_remote_after_a_remote_call_is_fine() -> None:
    async def main(party: str) -> int:
        first = inc.party("alice").remote(1)
        await asyncio.sleep(0)
        value: int = await silo.get(inc.party("bob").remote(first))
        return value

    assert await silo.simulate(main, ["alice", "bob"]) == {"alice": 3, "bob": 3}


def test_call_log_compares_names_and_keeps_what_came_ahead() -> None:
    log = CallLog("bob")
    assert log.issue(1, 2, "train") is None
    assert log.name((1, 1)) == "train"
    assert log.check("alice", (1, 0), "train") is None
    assert log.check("alice", (1, 0), "") is None
    error = log.check("alice", (1, 1), "evaluate")
    assert isinstance(error, silo.DivergenceError)
    assert str(error) == "programs diverged at call 1: alice ran evaluate, bob ran train"
    assert error.src_party == "alice" and error.seq == 1
    assert log.check("alice", (3, 0), "Counter.inc") is None
    assert log.issue(2, 1, "x") is None
    ahead = log.issue(3, 1, "Counter.dec")
    assert ahead is not None and str(ahead).endswith("alice ran Counter.inc, bob ran Counter.dec")
    log.forget((1, 0))
    log.forget((1, 0))
    assert log.name((1, 0)) == ""
    assert log.issue(4, 1, "f" * 500) is None
    assert log.name((4, 0)) == "f" * MAX_CALL_NAME


def test_call_log_is_bounded_by_what_is_forgotten() -> None:
    log = CallLog("alice")
    for seq in range(1, 1001):
        log.issue(seq, 1, "step")
        log.check("bob", (seq + 1, 0), "step")
        log.forget((seq, 0))
    assert len(log) == 1
