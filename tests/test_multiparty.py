"""Programs that work: every party a separate OS process on 127.0.0.1."""

from __future__ import annotations

import hashlib

import numpy as np

from multiparty import run_federation

ALICE_BOB = ["alice", "bob"]


def _ok(runs: dict) -> None:  # type: ignore[type-arg]
    for run in runs.values():
        assert run.returncode == 0, str(run)


def test_design_example_both_print_5() -> None:
    runs = run_federation("design", ALICE_BOB)
    _ok(runs)
    assert runs["alice"].result == runs["bob"].result == 5
    assert "alice 5" in runs["alice"].stdout and "bob 5" in runs["bob"].stdout


def test_three_epoch_averaging_with_actors_agrees_everywhere() -> None:
    runs = run_federation("averaging", ["alice", "bob", "carol"])
    _ok(runs)
    histories = [run.result for run in runs.values()]
    assert histories[0] == histories[1] == histories[2]
    assert len(histories[0]) == 3
    # the three trainers fit the same linear model: averaged weights approach sum(w*) = 2.5
    assert abs(histories[0][-1] - 2.5) < abs(histories[0][0] - 2.5)


def test_nested_fed_objects_in_lists_tuples_dicts() -> None:
    runs = run_federation("nested", ALICE_BOB)
    _ok(runs)
    assert runs["alice"].result == runs["bob"].result == [2, 11, 101, 2, 11]


def test_num_returns_on_function_and_actor_method() -> None:
    runs = run_federation("num_returns", ALICE_BOB)
    _ok(runs)
    assert runs["alice"].result == runs["bob"].result == [3, 30, 3, 4, 5, 7, -7]


def test_coroutine_runs_on_loop_and_plain_function_in_worker_thread() -> None:
    runs = run_federation("coroutine", ALICE_BOB)
    _ok(runs)
    on_loop, in_thread = runs["bob"].result
    assert on_loop == {"x": 1, "thread": "MainThread", "party": "alice"}
    assert in_thread["thread"].startswith("silo-bob") and in_thread["party"] == "bob"
    assert in_thread["x"] == on_loop
    assert runs["alice"].result == runs["bob"].result


def test_64_mib_array_arrives_intact() -> None:
    runs = run_federation("big_array", ALICE_BOB)
    _ok(runs)
    expected = hashlib.sha256(np.arange(64 * 1024 * 1024 // 8, dtype=np.float64)).hexdigest()
    assert runs["bob"].result == [expected, expected]
    assert runs["alice"].result == [expected, expected]


def test_peer_starting_5_s_late_still_gets_its_data() -> None:
    runs = run_federation("late_peer", ALICE_BOB, delays={"bob": 5.0})
    _ok(runs)
    assert runs["alice"].result == runs["bob"].result == 5
    assert runs["alice"].elapsed >= 5.0


def test_init_and_shutdown_twice_in_one_process_on_the_same_ports() -> None:
    runs = run_federation("twice", ALICE_BOB)
    _ok(runs)
    assert runs["alice"].result == runs["bob"].result == [102, 103]


def test_get_timeout_is_bounded_and_leaves_the_object_alone() -> None:
    runs = run_federation("get_timeout", ALICE_BOB)
    _ok(runs)
    for run in runs.values():
        first, second = run.result
        assert first["type"] == "GetTimeoutError" and first["is_timeout"]
        assert 0.25 <= first["elapsed"] < 1.5
        assert second == 7


def test_values_no_longer_referred_to_are_forgotten_in_every_party() -> None:
    runs = run_federation("release", ALICE_BOB)
    _ok(runs)
    # 300 rounds made 900 objects; each party keeps only what the program still refers to
    assert runs["alice"].result < 10 and runs["bob"].result < 10
