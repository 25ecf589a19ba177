"""Faults x parties: what every party sees, and when (DESIGN.md, "Liveness: no wait without a
deadline").

Each cell runs tests/programs/faults.py as one process per party, every link through a
FaultProxy (tests/faultmatrix.py), injects one fault, and asserts for every party: the error's
type and the party it names, the time from the fault to the end of its pending get (at most
``timeout_in_ms`` + one heartbeat + a margin for a loaded machine), its exit status, and, for
jobs that complete, that every value arrived once, from the right round (the program checks each
value, the test checks the totals). Settings: ``timeout_in_ms`` 2500, ``heartbeat_interval_ms``
250. With ``FAULTS_REPORT=path`` in the environment, the measured times are written there as JSON.
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from _cli_support import make_tls_files
from faultmatrix import Federation, Outcome

TIMEOUT_MS = 2500
HEARTBEAT_MS = 250
MARGIN_S = 2.5
BOUND_S = (TIMEOUT_MS + HEARTBEAT_MS) / 1000 + MARGIN_S
EARLIEST_S = (TIMEOUT_MS - HEARTBEAT_MS) / 1000 - 0.2
START_S = 30.0
AFTER_S = 10.0
FAULT_ROUND = 3
ROUNDS = 24
ENDLESS = 100000
TWO = ["alice", "bob"]
THREE = ["alice", "bob", "carol"]
SIZES = pytest.mark.parametrize("parties", [TWO, THREE], ids=["2p", "3p"])

MEASURED: dict[str, dict[str, Any]] = {}


@pytest.fixture(scope="module", autouse=True)
def _write_report() -> Iterator[None]:
    yield
    path = os.environ.get("FAULTS_REPORT")
    if path:
        Path(path).write_text(json.dumps(MEASURED, indent=1, sort_keys=True))


def settings(**extra: object) -> dict[str, str]:
    env = {
        "TIMEOUT_MS": str(TIMEOUT_MS),
        "HEARTBEAT_MS": str(HEARTBEAT_MS),
        "ROUNDS": str(ROUNDS),
        "PACE_S": "0.05",
        "BIG_EVERY": "5",
        "BIG_BYTES": str(1 << 20),
    }
    env.update({k: str(v) for k, v in extra.items()})
    return env


def record(cell: str, outcomes: dict[str, Outcome], since: dict[str, float]) -> None:
    """Keep what each party did, with its get's end relative to ``since[party]``."""
    MEASURED[cell] = {}
    for party, out in outcomes.items():
        entry: dict[str, Any] = {"exit": out.returncode}
        if out.results:
            result = out.result
            entry["t"] = round(result["t"] - since[party], 3)
            entry["saw"] = (
                "completed"
                if result["ok"]
                else f"{result['error']['type']}({result['error']['src']})"
            )
        MEASURED[cell][party] = entry


def everyone(outcomes: dict[str, Outcome]) -> str:
    return "\n".join(str(o) for o in outcomes.values())


def expected_total(parties: list[str], rounds: int, leaver: tuple[str, int] | None = None) -> int:
    total = 0
    for r in range(rounds):
        members = [p for p in parties if leaver is None or r <= leaver[1] or p != leaver[0]]
        total += sum(r * 1000 + len(p) for p in members)
    return total


def assert_failed(
    outcomes: dict[str, Outcome],
    party: str,
    since: float,
    *,
    names: set[str],
    kind: str = "PeerUnavailableError",
    exact: bool = False,
    earliest: float = 0.0,
) -> None:
    """``party``'s pending get raised ``kind`` naming one of ``names`` within the bound."""
    out = outcomes[party]
    context = everyone(outcomes)
    result = out.result
    assert result["ok"] is False, context
    error = result["error"]
    assert (error["type"] == kind) if exact else (kind in error["mro"]), context
    assert error["src"] in names, context
    elapsed = result["t"] - since
    assert earliest <= elapsed <= BOUND_S, f"{party} ended its get {elapsed:.2f}s after\n{context}"
    assert out.returncode == 1, context


def assert_completed(
    outcomes: dict[str, Outcome],
    party: str,
    parties: list[str],
    rounds: int,
    leaver: tuple[str, int] | None = None,
) -> None:
    """``party`` finished every round with every value once and exited 0."""
    out = outcomes[party]
    context = everyone(outcomes)
    result = out.result
    assert result["ok"] is True, context
    mine = rounds if leaver is None or party != leaver[0] else leaver[1] + 1
    assert result["rounds"] == mine, context
    assert result["total"] == expected_total(parties, mine, leaver), context
    assert out.returncode == 0, context


def run_until_fault(fed: Federation) -> float:
    """Start every party, wait until all finished round FAULT_ROUND; the time to inject."""
    started = time.monotonic()
    fed.start_all()
    fed.wait_round(FAULT_ROUND, started + START_S)
    return time.monotonic()


@SIZES
@pytest.mark.parametrize("how", ["SIGKILL", "SIGSTOP"])
def test_lost_peer(request: pytest.FixtureRequest, parties: list[str], how: str) -> None:
    """bob is killed or frozen: every other party's get raises PeerUnavailableError("bob")."""
    survivors = [p for p in parties if p != "bob"]
    with Federation(parties, env=settings(ROUNDS=ENDLESS)) as fed:
        fault = run_until_fault(fed)
        fed.signal("bob", signal.Signals[how])
        outcomes = fed.finish(fault + BOUND_S + AFTER_S, survivors)
        resumed = time.monotonic()
        if how == "SIGSTOP":
            fed.signal("bob", signal.SIGCONT)
        outcomes.update(fed.finish(resumed + BOUND_S + AFTER_S, ["bob"]))
    record(request.node.name, outcomes, {p: fault for p in survivors} | {"bob": resumed})
    earliest = EARLIEST_S if how == "SIGSTOP" else 0.0
    for party in survivors:
        assert_failed(outcomes, party, fault, names={"bob"}, earliest=earliest)
    if how == "SIGKILL":
        assert outcomes["bob"].returncode == -signal.SIGKILL, everyone(outcomes)
    else:
        # Thawed after the others left: its own get ends too, with an error, and it exits 1.
        assert_failed(outcomes, "bob", resumed, names=set(survivors), kind="FedRemoteError")


@SIZES
def test_peer_terminated(request: pytest.FixtureRequest, parties: list[str]) -> None:
    """bob gets SIGTERM: it exits 143; the others learn of it from bob's ABORT."""
    survivors = [p for p in parties if p != "bob"]
    with Federation(parties, env=settings(ROUNDS=ENDLESS)) as fed:
        fault = run_until_fault(fed)
        fed.signal("bob", signal.SIGTERM)
        outcomes = fed.finish(fault + BOUND_S + AFTER_S)
    record(request.node.name, outcomes, dict.fromkeys(parties, fault))
    for party in survivors:
        assert_failed(outcomes, party, fault, names={"bob"}, kind="FedRemoteError")
    # silo ends a party stopped by a signal with SystemExit(128 + signal), as a shell reports it.
    assert outcomes["bob"].returncode == 128 + signal.SIGTERM, everyone(outcomes)


def test_program_error(request: pytest.FixtureRequest) -> None:
    """bob's program raises: alice's get raises FedRemoteError("bob") (not a lost peer)."""
    env = settings(ROUNDS=ENDLESS, RAISE_AT=f"bob:{FAULT_ROUND}")
    with Federation(TWO, env=env) as fed:
        fed.start_all()
        outcomes = fed.finish(time.monotonic() + START_S + BOUND_S)
    fault = outcomes["bob"].stamp("FAULT")
    assert fault is not None, everyone(outcomes)
    record(request.node.name, outcomes, dict.fromkeys(TWO, fault))
    assert_failed(outcomes, "alice", fault, names={"bob"}, kind="FedRemoteError", exact=True)
    assert outcomes["bob"].returncode == 1, everyone(outcomes)


@SIZES
def test_blackholed_link(request: pytest.FixtureRequest, parties: list[str]) -> None:
    """The alice-bob link drops every byte, connections open: each names the other as lost."""
    with Federation(parties, env=settings(ROUNDS=ENDLESS)) as fed:
        fault = run_until_fault(fed)
        fed.proxy.blackhole(*fed.link("alice", "bob"))
        outcomes = fed.finish(fault + BOUND_S + AFTER_S)
    record(request.node.name, outcomes, dict.fromkeys(parties, fault))
    if "carol" not in parties:
        assert_failed(outcomes, "alice", fault, names={"bob"}, earliest=EARLIEST_S)
        assert_failed(outcomes, "bob", fault, names={"alice"}, earliest=EARLIEST_S)
        return
    # carol still hears both; whichever of alice's loss of bob or bob's loss of alice reaches a
    # party first may end its get, but no party is ever told that it is itself unavailable.
    for party in parties:
        others = set(parties) - {party}
        assert_failed(
            outcomes, party, fault, names=others, kind="FedRemoteError", earliest=EARLIEST_S
        )


def test_paused_link_resumes(request: pytest.FixtureRequest) -> None:
    """Every link stalls for 1 s (under timeout_in_ms), then resumes: the job completes."""
    with Federation(TWO, env=settings()) as fed:
        fault = run_until_fault(fed)
        fed.proxy.pause()
        time.sleep(1.0)
        fed.proxy.resume()
        outcomes = fed.finish(fault + START_S)
    record(request.node.name, outcomes, dict.fromkeys(TWO, fault))
    for party in TWO:
        assert_completed(outcomes, party, TWO, ROUNDS)
        stamps = [line.t for line in outcomes[party].lines if line.text.startswith("ROUND ")]
        gap = max(b - a for a, b in itertools.pairwise(stamps))
        assert gap >= 0.8, f"the pause did not stall {party}: longest gap {gap:.2f}s"


def test_refused_for_half_a_second(request: pytest.FixtureRequest) -> None:
    """A middlebox restarts: connections reset, new ones refused for 0.5 s; the job completes."""
    with Federation(TWO, env=settings()) as fed:
        fault = run_until_fault(fed)
        fed.proxy.refuse(0.5)
        outcomes = fed.finish(fault + START_S)
        resets = sum(fed.proxy.stats(r).resets for r in fed.proxy.routes)
    record(request.node.name, outcomes, dict.fromkeys(TWO, fault))
    assert resets >= 1
    for party in TWO:
        assert_completed(outcomes, party, TWO, ROUNDS)


@SIZES
def test_reset_once(request: pytest.FixtureRequest, parties: list[str]) -> None:
    """Every connection is reset once mid-job: the job completes, every value once."""
    with Federation(parties, env=settings()) as fed:
        fault = run_until_fault(fed)
        fed.proxy.reset()
        outcomes = fed.finish(fault + START_S)
        resets = sum(fed.proxy.stats(r).resets for r in fed.proxy.routes)
    record(request.node.name, outcomes, dict.fromkeys(parties, fault))
    assert resets >= 1
    for party in parties:
        assert_completed(outcomes, party, parties, ROUNDS)


def test_delayed_links(request: pytest.FixtureRequest) -> None:
    """30 ms added to every chunk both ways: the job completes."""
    with Federation(TWO, env=settings(ROUNDS=12)) as fed:
        fed.proxy.delay(30)
        started = time.monotonic()
        fed.start_all()
        outcomes = fed.finish(started + START_S + 10)
    record(request.node.name, outcomes, dict.fromkeys(TWO, started))
    for party in TWO:
        assert_completed(outcomes, party, TWO, 12)


def test_throttled_large_value(request: pytest.FixtureRequest) -> None:
    """64 MiB at 4 MiB/s takes ~16 s, over three times timeout_in_ms 5000: progress, not totals."""
    nbytes = 64 << 20
    rate = 4 << 20
    env = settings(MODE="bulk", BIG_BYTES=nbytes, TIMEOUT_MS=5000)
    with Federation(TWO, env=env) as fed:
        fed.proxy.throttle(rate)
        started = time.monotonic()
        fed.start_all()
        outcomes = fed.finish(started + START_S + nbytes / rate * 2)
        stats = [fed.proxy.stats(r) for r in fed.proxy.routes]
        carried = sum(s.to_target + s.to_client for s in stats)
    record(request.node.name, outcomes, dict.fromkeys(TWO, started))
    for party in TWO:
        out = outcomes[party]
        assert out.result["ok"] is True, everyone(outcomes)
        assert out.result["total"] == len("alice"), everyone(outcomes)
        assert out.returncode == 0, everyone(outcomes)
    assert carried >= nbytes
    ready = outcomes["bob"].stamp("READY")
    assert ready is not None
    assert outcomes["bob"].result["t"] - ready >= nbytes / rate * 0.7, "not throttled"


def test_refused_channel(request: pytest.FixtureRequest) -> None:
    """bob runs another job: both fail within the bound, naming the peer and both job names."""
    jobs = {"alice": "fault-job-one", "bob": "fault-job-two"}
    party_env = {p: {"JOB": job} for p, job in jobs.items()}
    with Federation(TWO, env=settings(ROUNDS=ENDLESS), party_env=party_env) as fed:
        started = time.monotonic()
        fed.start_all()
        outcomes = fed.finish(started + START_S + BOUND_S)
    ready = {p: outcomes[p].stamp("READY") for p in TWO}
    assert None not in ready.values(), everyone(outcomes)
    since = {p: t for p, t in ready.items() if t is not None}
    record(request.node.name, outcomes, since)
    for party, peer in (("alice", "bob"), ("bob", "alice")):
        assert_failed(outcomes, party, since[party], names={peer})
        message = outcomes[party].result["error"]["str"]
        assert jobs["alice"] in message and jobs["bob"] in message, message


def test_late_peer(request: pytest.FixtureRequest) -> None:
    """bob starts 1.5 s after alice, timeout_in_ms 3000: the job completes."""
    with Federation(TWO, env=settings(TIMEOUT_MS=3000, ROUNDS=10)) as fed:
        started = time.monotonic()
        fed.start("alice")
        time.sleep(1.5)
        fed.start("bob")
        outcomes = fed.finish(started + START_S)
    record(request.node.name, outcomes, dict.fromkeys(TWO, started))
    for party in TWO:
        assert_completed(outcomes, party, TWO, 10)


@SIZES
def test_peer_never_starts(request: pytest.FixtureRequest, parties: list[str]) -> None:
    """bob never starts: the others push their round-0 value to it, then fail naming bob."""
    survivors = [p for p in parties if p != "bob"]
    with Federation(parties, env=settings(ROUNDS=ENDLESS)) as fed:
        started = time.monotonic()
        for party in survivors:
            fed.start(party)
        outcomes = fed.finish(started + START_S + BOUND_S, survivors)
    ready = {p: outcomes[p].stamp("READY") for p in survivors}
    assert None not in ready.values(), everyone(outcomes)
    since = {p: t for p, t in ready.items() if t is not None}
    record(request.node.name, outcomes, since)
    for party in survivors:
        assert_failed(outcomes, party, since[party], names={"bob"}, earliest=EARLIEST_S)


def test_tls_party_leaves_early(request: pytest.FixtureRequest, tmp_path: Path) -> None:
    """Under TLS, carol leaves cleanly after round 4; alice and bob go on: nobody aborts."""
    make_tls_files(tmp_path, THREE)
    leaver = ("carol", 4)
    env = settings(TLS_DIR=tmp_path, ROUNDS=12, LEAVE_AT="carol:4")
    for attempt in range(3):
        with Federation(THREE, env=env) as fed:
            started = time.monotonic()
            fed.start_all()
            outcomes = fed.finish(started + START_S)
        record(f"{request.node.name}[{attempt}]", outcomes, dict.fromkeys(THREE, started))
        for party in THREE:
            assert_completed(outcomes, party, THREE, 12, leaver)


def test_handshake_never_completes(request: pytest.FixtureRequest, tmp_path: Path) -> None:
    """Under TLS, every link is blackholed from the start: TCP connects, the TLS handshake never
    completes. Each party names the other, after timeout_in_ms, within the bound."""
    make_tls_files(tmp_path, TWO)
    with Federation(TWO, env=settings(TLS_DIR=tmp_path, ROUNDS=ENDLESS)) as fed:
        fed.proxy.blackhole()
        started = time.monotonic()
        fed.start_all()
        outcomes = fed.finish(started + START_S + BOUND_S)
        dropped = sum(fed.proxy.stats(r).dropped for r in fed.proxy.routes)
    ready = {p: outcomes[p].stamp("READY") for p in TWO}
    assert None not in ready.values(), everyone(outcomes)
    since = {p: t for p, t in ready.items() if t is not None}
    record(request.node.name, outcomes, since)
    assert dropped > 0
    for party, peer in (("alice", "bob"), ("bob", "alice")):
        assert_failed(outcomes, party, since[party], names={peer}, earliest=EARLIEST_S)
