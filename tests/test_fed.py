"""``silo.fed`` runs RayFed's test programs, each party a real OS process on loopback.

The programs are in ``tests/programs/fed_scenarios.py`` (written as RayFed's tests are, with
``from silo import fed``) and ``tests/programs/fed_fork.py`` (a parent forking one child per
party with ``multiprocessing``, as RayFed's tests start parties).
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from _cli_support import EXAMPLES, make_tls_files, silo_env
from multiparty import PROGRAMS, PartyRun, addresses_for, collect

FED_SCENARIOS = PROGRAMS / "fed_scenarios.py"
PARTIES = ["alice", "bob"]


def start(
    scenario: str, party: str, addresses: dict[str, str], env: dict[str, str] | None = None
) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, str(FED_SCENARIOS), scenario, party],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=silo_env({"SILO_TEST_ADDRESSES": json.dumps(addresses), **(env or {})}),
    )


def run(
    scenario: str,
    *,
    env: dict[str, str] | None = None,
    delays: dict[str, float] | None = None,
    only: list[str] | None = None,
    timeout: float = 60.0,
) -> dict[str, PartyRun]:
    addresses = addresses_for(PARTIES)
    started = time.monotonic()
    procs: dict[str, subprocess.Popen[str]] = {}
    order = sorted(only or PARTIES, key=lambda p: (delays or {}).get(p, 0.0))
    try:
        for party in order:
            wait = started + (delays or {}).get(party, 0.0) - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            procs[party] = start(scenario, party, addresses, env)
        return {p: collect(proc, p, started, timeout) for p, proc in procs.items()}
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def ok(runs: dict[str, PartyRun]) -> dict[str, Any]:
    for r in runs.values():
        assert r.returncode == 0, r
    return {p: r.result for p, r in runs.items()}


def test_readme_program_sums_to_5_in_both_parties_with_cluster_config() -> None:
    results = ok(run("readme"))
    for party, result in results.items():
        assert result["result"] == 5
        assert result["current_party"] == party
        assert sorted(result["addresses"]) == PARTIES
        assert result["job"] == "silo"


@pytest.mark.parametrize("scenario", ["cross_silo_task_error", "cross_silo_actor_error"])
def test_error_is_its_own_type_at_the_origin_and_fed_remote_error_elsewhere(
    scenario: str,
) -> None:
    results = ok(run(scenario))
    alice, bob = results["alice"], results["bob"]
    assert alice["is_my_error"] and alice["cause_is_my_error"], alice
    assert alice["type"] == "MyError" and not alice["is_fed_remote_error"]
    assert "Error" in alice["cause_str"] and "Test" in alice["cause_str"]
    assert bob["is_fed_remote_error"] and bob["is_silo_error"], bob
    assert bob["cause_is_fed_remote_error"] and not bob["is_my_error"]
    assert "FedRemoteError occurred at alice" in bob["cause_str"]
    assert "task Error" in bob["cause_str"], "expose_error_trace sends the cause"
    assert bob["src_party"] == "alice"


def test_without_expose_error_trace_nothing_of_the_cause_crosses() -> None:
    results = ok(run("cross_silo_task_error", env={"EXPOSE": "0"}))
    assert results["alice"]["cause_str"] == "Test normal task Error"
    assert results["bob"]["cause_str"] == "FedRemoteError occurred at alice"
    assert "caused by" not in results["bob"]["cause_str"]


def test_fed_get_of_objects_lists_and_plain_values() -> None:
    for result in ok(run("fed_get_in_2_parties")).values():
        assert result == {"values": [100, 101], "mixed": [101, 7, "x"], "plain": 42}


def test_num_returns_and_ray_options_are_warned() -> None:
    for result in ok(run("options_num_returns")).values():
        assert result["values"] == [1, 2, 3, 4, 5, 2, 10, 2]
        assert result["warnings"] == [
            "silo.fed ignores the Ray option num_cpus=1 of g: silo has no Ray scheduler",
            "silo.fed ignores the Ray option resources={'gpu': 1} of g: silo has no Ray scheduler",
        ]


def test_fed_objects_nested_in_containers_reach_tasks_and_actors() -> None:
    for result in ok(run("objects_in_containers")).values():
        assert result == {"total": 100 + 2 + 2 + 100 + 5 + 100 + 1, "appended": [100, 2, 2, 2]}


def test_actor_methods_run_in_submission_order() -> None:
    expected = [sum(range(1, i + 2)) for i in range(20)]
    for result in ok(run("actor_ordering")).values():
        assert result["values"] == expected


def test_init_shutdown_init_again_in_one_process() -> None:
    for result in ok(run("repeat_init")).values():
        assert result["results"] == [12, 13]


def test_fed_get_inside_a_task_returns_resolved_and_plain_values() -> None:
    for result in ok(run("get_inside_a_task")).values():
        value, plain, thread = result["value"]
        assert (value, plain) == (100, "plain")
        assert thread.startswith("silo-bob"), "the task ran in bob's worker thread"


def test_parties_started_3_s_apart_still_finish() -> None:
    """RayFed's test starts the second party 10 s late; 3 s keeps CI fast. The program sets
    ``barrier_on_initializing``, so alice's ``fed.init`` waits for bob."""
    runs = run("fed_get_in_2_parties", delays={"bob": 3.0})
    for result in ok(runs).values():
        assert result["values"] == [100, 101]
    assert runs["alice"].elapsed > 3.0


def test_grpc_camel_case_retry_policy_is_accepted_and_applied() -> None:
    for result in ok(run("retry_policy", delays={"bob": 1.0})).values():
        assert result == {"value": 101, "policy": [4, 200, 1000, 2.0]}


def test_exit_on_sending_failure_ends_a_process_parked_in_time_sleep() -> None:
    runs = run("exit_on_sending_failure", only=["alice"], timeout=30)
    alice = runs["alice"]
    assert alice.returncode == 1, alice
    assert "SLEEPING" in alice.stdout and "WOKE UP" not in alice.stdout, alice
    handler_lines = [line for line in alice.stdout.splitlines() if line.startswith("HANDLER")]
    assert handler_lines == ["HANDLER 1 SendingFailure"], alice
    assert alice.elapsed < 20, "timeout_ms is 2000: it exits soon after"


def test_serializing_allowed_list_means_what_it_means_in_rayfed() -> None:
    """One job per allow-list, one after the other in the same two processes."""
    cases: list[tuple[dict[str, Any] | None, bool]] = [
        (None, True),
        ({"*": "*"}, True),
        ({"ipaddress": ["*"]}, True),
        ({"ipaddress": "*"}, True),
        ({"ipaddress": ["IPv4Address"]}, True),
        ({"numpy": ["ndarray"]}, False),
        ({"ipaddress": ["IPv6Address"]}, False),
    ]
    runs = run("allow_list", env={"ALLOWED": json.dumps([c for c, _ in cases])})
    alice, bob = ok(runs).values()
    assert alice == [{"value": "10.0.0.1"}] * len(cases), "the owner never unpickles its own"
    for (allowed, admitted), outcome in zip(cases, bob, strict=True):
        if admitted:
            assert outcome == {"value": "10.0.0.1"}, (allowed, outcome)
        else:
            assert outcome["error"] in ("SerializationError", "FedRemoteError"), (allowed, outcome)
            assert "ipaddress.IPv4Address" in outcome["message"], (allowed, outcome)


def test_tls_with_a_certificate_per_party(tmp_path: Path) -> None:
    make_tls_files(tmp_path, PARTIES)
    for result in ok(run("tls", env={"TLS_DIR": str(tmp_path)})).values():
        assert result == {"value": 101, "warnings": [], "tls": True}


def test_tls_with_one_shared_certificate_warns_identity_is_not_verified(tmp_path: Path) -> None:
    make_tls_files(tmp_path, ["shared"])
    runs = run("tls", env={"TLS_DIR": str(tmp_path), "TLS_CERT": "shared"})
    for result in ok(runs).values():
        assert result == {"value": 101, "warnings": ["UnverifiedIdentityWarning"], "tls": True}


def test_a_used_port_raises_at_init_naming_the_address_and_init_works_after() -> None:
    runs = run("used_port", only=["alice"])
    alice = runs["alice"]
    assert alice.returncode == 0, alice
    failed, second = alice.results
    assert failed["type"] == "AddressInUseError", failed
    assert failed["address"] in failed["message"], failed
    assert second == {"second_init": "alice"}


def test_forgotten_shutdown_is_done_at_exit() -> None:
    runs = run("forgot_shutdown")
    for result in ok(runs).values():
        assert result == {"value": 101}
    for r in runs.values():
        assert "shutting down" in r.stderr, r


def test_uncaught_exception_is_broadcast_before_the_process_exits() -> None:
    runs = run("uncaught_error")
    assert runs["alice"].returncode == 1, runs["alice"]
    assert "MyError: alice's program failed" in runs["alice"].stderr
    bob = runs["bob"]
    assert bob.returncode == 0, bob
    assert bob.result["is_fed_remote_error"] and bob.result["src_party"] == "alice"
    assert "alice's program failed" in bob.result["cause_str"]


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_signal_mid_get_exits_as_the_signal_would_and_peer_raises(sig: signal.Signals) -> None:
    addresses = addresses_for(PARTIES)
    started = time.monotonic()
    procs = {p: start("sigint_mid_get", p, addresses) for p in PARTIES}
    try:
        alice = procs["alice"]
        assert alice.stdout is not None
        line = alice.stdout.readline()
        while line and "WAITING" not in line:
            line = alice.stdout.readline()
        assert line, "alice never reached fed.get"
        time.sleep(0.3)
        interrupted = time.monotonic()
        alice.send_signal(sig)
        runs = {p: collect(proc, p, started, 60) for p, proc in procs.items()}
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    alice_run, bob_run = runs["alice"], runs["bob"]
    if sig == signal.SIGINT:
        assert alice_run.returncode in (-signal.SIGINT, 128 + signal.SIGINT), alice_run
        assert "KeyboardInterrupt" in alice_run.stderr, alice_run
    else:
        assert alice_run.returncode == 128 + signal.SIGTERM, alice_run
    assert f"received {sig.name}: shutting down" in alice_run.stderr, alice_run
    assert bob_run.returncode == 0, bob_run
    assert bob_run.result["is_fed_remote_error"] and bob_run.result["src_party"] == "alice"
    assert time.monotonic() - interrupted < 30, "bob learned of it without waiting out 60 s"


def test_multiprocessing_fork_starts_each_party_like_rayfed_tests() -> None:
    done = subprocess.run(
        [
            sys.executable,
            str(PROGRAMS / "fed_fork.py"),
            json.dumps(addresses_for([*PARTIES, "solo"])),
        ],
        capture_output=True,
        text=True,
        timeout=90,
        env=silo_env(),
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert json.loads(done.stdout.strip().splitlines()[-1]) == {
        "exitcodes": {"alice": 0, "bob": 0},
        "results": {"alice": 5, "bob": 5},
        "parent_after_fork": 5,
    }
    assert "[bob@silo] shutting down" in done.stderr, "bob's forgotten shutdown was done"


def test_rayfed_port_example_runs_both_parties() -> None:
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / "rayfed_port.py")],
        capture_output=True,
        text=True,
        timeout=90,
        env=silo_env(),
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    lines = set(done.stdout.splitlines())
    for party in PARTIES:
        assert f"The result in party {party} is 5" in lines, done.stdout
        assert f"{party}: mean {10 / 3}" in lines, done.stdout
    assert "alice: ValueError record -3 is negative" in lines, done.stdout
    assert "bob: FedRemoteError from alice" in lines, done.stdout
