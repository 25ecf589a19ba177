"""Failures between parties: every party a separate OS process on 127.0.0.1."""

from __future__ import annotations

import signal
import time

import pytest

from multiparty import addresses_for, collect, run_federation, start_party

ALICE_BOB = ["alice", "bob"]


@pytest.mark.parametrize("expose", [False, True])
def test_task_error_original_at_origin_fed_remote_error_elsewhere(expose: bool) -> None:
    runs = run_federation("task_error", ALICE_BOB, env={"EXPOSE": "1" if expose else "0"})
    alice_bad, alice_down = runs["alice"].result
    bob_bad, bob_down = runs["bob"].result
    assert alice_bad == {"type": "ValueError", "str": "bad value 42"}
    for err in (alice_down, bob_bad, bob_down):
        assert err["type"] == "FedRemoteError" and err["src"] == "alice"
        assert err["str"].startswith("FedRemoteError occurred at alice")
        if expose:
            assert err["cause"]["type"] == "ValueError"
            assert err["cause"]["message"] == "bad value 42"
            assert "in boom" in err["cause"]["traceback"]
            assert "silo/runtime.py" not in err["cause"]["traceback"]
            assert " caused by ValueError: bad value 42" in err["str"]
        else:
            assert err["cause"] is None and err["str"] == "FedRemoteError occurred at alice"


@pytest.mark.parametrize("expose", [False, True])
def test_actor_method_error(expose: bool) -> None:
    runs = run_federation("actor_error", ALICE_BOB, env={"EXPOSE": "1" if expose else "0"})
    bob_err, bob_after = runs["bob"].result
    alice_err, alice_after = runs["alice"].result
    assert bob_err["type"] == "KeyError"
    assert alice_err["type"] == "FedRemoteError" and alice_err["src"] == "bob"
    assert (alice_err["cause"] is not None) == expose
    if expose:
        assert alice_err["cause"]["type"] == "KeyError"
    assert bob_after == alice_after == 5
    for run in runs.values():
        assert run.returncode == 0 and run.elapsed < 5, str(run)


def test_error_cascades_through_three_parties() -> None:
    runs = run_federation("cascade", ["alice", "bob", "carol"], env={"EXPOSE": "1"})
    for run in runs.values():
        err = run.result
        assert err["type"] == "FedRemoteError" and err["src"] == "alice", str(run)
        assert err["cause"]["type"] == "ValueError"


def test_program_error_makes_the_peer_raise_quickly() -> None:
    runs = run_federation("program_error", ALICE_BOB)
    assert runs["alice"].returncode == 1
    assert "alice's program gave up" in runs["alice"].stderr
    err = runs["bob"].result
    assert err["type"] == "FedRemoteError" and err["src"] == "alice"
    assert err["waited"] < 2.0


def test_shutdown_runs_exactly_once_after_an_error() -> None:
    # At debug level, so that bob's teardown (a peer's failure: logged at debug) shows too.
    runs = run_federation("shutdown_once", ALICE_BOB, env={"LOG_LEVEL": "debug"})
    alice = runs["alice"]
    assert alice.returncode == 1
    assert alice.result == {"type": "ValueError", "str": "bad value 42"}
    assert alice.stderr.count("shutting down after") == 1, alice.stderr
    assert "WARNING silo: [alice@" in alice.stderr and "shutting down after program error" in (
        alice.stderr
    )
    assert runs["bob"].stderr.count("shutting down after") == 1, runs["bob"].stderr
    assert "DEBUG silo: [bob@" in runs["bob"].stderr
    assert runs["bob"].result["src"] == "alice"


def test_exit_on_sending_failure_runs_handler_once_and_exits_1() -> None:
    runs = run_federation("exit_on_failure", ALICE_BOB, only=["alice"], timeout=30)
    alice = runs["alice"]
    assert alice.returncode == 1, str(alice)
    assert "PARKED" in alice.stdout
    assert alice.stdout.count("HANDLER") == 1
    assert alice.elapsed < 10


def test_without_exit_on_sending_failure_the_program_goes_on() -> None:
    runs = run_federation("no_exit_on_failure", ALICE_BOB, only=["alice"], timeout=30)
    alice = runs["alice"]
    assert alice.returncode == 0, str(alice)
    assert alice.result["handler_calls"] == 1
    assert alice.result["failures"] >= 2
    assert alice.result["local"] == 42


def test_frames_of_another_job_are_refused_naming_both_jobs() -> None:
    runs = run_federation(
        "wrong_job", ALICE_BOB, party_env={"alice": {"JOB": "job-a"}, "bob": {"JOB": "job-b"}}
    )
    (failure,) = runs["alice"].result
    assert "'job-a'" in failure and "'job-b'" in failure and "refused" in failure
    (failure,) = runs["bob"].result
    assert "'job-a'" in failure and "'job-b'" in failure


def test_allow_list_refuses_unlisted_class_while_numpy_passes() -> None:
    runs = run_federation("allowlist", ALICE_BOB)
    bob, alice = runs["bob"].result, runs["alice"].result
    assert bob["numpy_sum"] == alice["numpy_sum"] == 499500.0
    assert bob["secret"]["type"] == "SerializationError"
    assert "payloads.Secret" in bob["secret"]["str"]
    assert alice["secret"] == {"value": "classified"}
    assert any("payloads.Secret" in r for r in alice["refusals"])


def test_a_frame_over_the_receivers_limit_fails_there_too() -> None:
    runs = run_federation("too_large", ALICE_BOB)
    bob, alice = runs["bob"].result, runs["alice"].result
    assert bob["outcome"][0] == alice["outcome"][0] == 4950.0
    refused = bob["outcome"][1]
    assert (
        refused["type"] == "FrameRejected"
        and "messages_max_size_in_bytes (65536)" in refused["str"]
    )
    # alice learns it twice: her push was refused, and bob's failed call reaches her as an error
    assert alice["outcome"][1]["type"] == "FedRemoteError"
    assert alice["outcome"][1]["src"] == "bob"
    assert any("exceeds party 'bob'" in f for f in alice["failures"])
    for run in runs.values():
        assert run.elapsed < 10, str(run)


def test_a_killed_actor_fails_its_later_calls_in_every_party() -> None:
    runs = run_federation("kill", ALICE_BOB)
    bob_before, bob_after = runs["bob"].result
    alice_before, alice_after = runs["alice"].result
    assert bob_before == alice_before == 2
    assert bob_after["type"] == "ActorKilledError"
    assert alice_after["type"] == "FedRemoteError" and alice_after["src"] == "bob"


def _parked_pair(env: dict[str, str]) -> tuple[dict[str, object], float]:
    addresses = addresses_for(ALICE_BOB)
    started = time.monotonic()
    alice = start_party("parked", "alice", addresses, env=env)
    bob = start_party("parked", "bob", addresses, env=env)
    assert alice.stdout is not None
    line = alice.stdout.readline()
    assert line.strip() == "READY", line
    return {"alice": alice, "bob": bob}, started


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGKILL])
def test_signal_in_one_party_makes_the_other_raise(sig: signal.Signals) -> None:
    # A killed process says nothing: its peer notices the silence after timeout_in_ms (a refused
    # reconnection may be a middlebox restarting). A signal it can handle is told at once.
    procs, started = _parked_pair({"TIMEOUT_MS": "2000"} if sig == signal.SIGKILL else {})
    killed_at = time.monotonic()
    procs["alice"].send_signal(sig)  # type: ignore[attr-defined]
    bob = collect(procs["bob"], "bob", started, 30)  # type: ignore[arg-type]
    alice = collect(procs["alice"], "alice", started, 30)  # type: ignore[arg-type]
    err = bob.result
    assert err["type"] in ("FedRemoteError", "PeerUnavailableError"), str(bob)
    assert err["src"] == "alice"
    assert time.monotonic() - killed_at < 5
    assert alice.returncode != 0
    if sig != signal.SIGKILL:
        assert "received " + sig.name in alice.stderr
