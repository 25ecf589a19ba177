"""The intake keeps what this party may use, and no more."""

from __future__ import annotations

import gc

from silo.graph import FedObject
from silo.intake import MAX_UNCLAIMED, Intake, Verdict


def outputs(seq: int, n: int = 1, intake: Intake | None = None) -> list[FedObject]:
    """A peer's outputs; dropping one tells ``intake`` (as the scheduler's release does)."""
    release = intake.release if intake is not None else None
    return [FedObject("bob", seq, i, 1, release) for i in range(n)]


def test_known_ids_are_stored() -> None:
    intake = Intake("alice", max_count=1, max_bytes=10)
    assert intake.admit("bob", (7, 0), 1000, known=True).verdict is Verdict.STORE
    assert intake.unclaimed("bob") == (0, 0)


def test_an_id_this_party_passed_without_a_handle_is_dropped() -> None:
    intake = Intake("alice", max_count=10, max_bytes=100)
    kept = outputs(1, intake=intake)
    assert intake.watermark == 0
    intake.issue(kept)
    intake.issue(outputs(2, intake=intake))
    gc.collect()
    assert intake.admit("bob", (1, 0), 5, known=False).verdict is Verdict.STORE
    dropped = intake.admit("bob", (2, 0), 5, known=False)
    assert dropped.verdict is Verdict.DROP
    assert "past object (2, 0) (at call 2) and holds no handle" in dropped.reason
    assert intake.admit("bob", (1, 7), 5, known=False).verdict is Verdict.DROP
    del kept
    gc.collect()
    assert intake.admit("bob", (1, 0), 5, known=False).verdict is Verdict.DROP
    assert intake.unclaimed("bob") == (0, 0)


def test_ids_ahead_are_kept_within_a_bound_per_peer() -> None:
    intake = Intake("alice", max_count=3, max_bytes=100)
    assert intake.admit("bob", (5, 0), 60, known=False).verdict is Verdict.STORE
    refused = intake.admit("bob", (6, 0), 41, known=False)
    assert refused.verdict is Verdict.REFUSE
    assert "refused object (6, 0) from 'bob'" in refused.reason
    assert "1 objects (60 bytes) waiting here unclaimed" in refused.reason
    assert "3 objects and 100 bytes" in refused.reason
    assert intake.admit("carol", (6, 1), 41, known=False).verdict is Verdict.STORE
    assert intake.admit("bob", (6, 0), 40, known=False).verdict is Verdict.STORE
    assert intake.admit("bob", (7, 0), 0, known=False).verdict is Verdict.STORE
    assert intake.admit("bob", (8, 0), 0, known=False).verdict is Verdict.REFUSE
    assert intake.unclaimed("bob") == (3, 100)
    assert intake.admit("bob", (5, 0), 60, known=True).verdict is Verdict.STORE
    assert intake.unclaimed("bob") == (3, 100)


def test_issuing_claims_unclaimed_ids_and_returns_orphans() -> None:
    intake = Intake("alice", max_count=10, max_bytes=1000)
    for object_id in [(2, 0), (2, 1), (2, 5), (4, 0)]:
        assert intake.admit("bob", object_id, 10, known=False).verdict is Verdict.STORE
    assert intake.issue(outputs(1)) == []
    assert intake.unclaimed("bob") == (4, 40)
    two = outputs(2, 2)
    assert intake.issue(two) == [(2, 5)]
    assert intake.unclaimed("bob") == (1, 10)
    assert sorted(intake.issue(outputs(3))) == []
    assert intake.issue(outputs(5)) == [(4, 0)]
    assert intake.unclaimed("bob") == (0, 0)
    assert intake.watermark == 5


def test_default_bounds_follow_the_message_limit() -> None:
    intake = Intake.for_limit("alice", 1000)
    assert intake.admit("bob", (1, 0), 1000, known=False).verdict is Verdict.STORE
    assert intake.admit("bob", (2, 0), 1, known=False).verdict is Verdict.REFUSE
    many = Intake.for_limit("alice", 1 << 30)
    for seq in range(1, MAX_UNCLAIMED + 1):
        many.admit("bob", (seq, 0), 1, known=False)
    assert many.unclaimed("bob") == (MAX_UNCLAIMED, MAX_UNCLAIMED)
    assert many.admit("bob", (0, 9), 1, known=False).verdict is Verdict.DROP
    assert many.admit("bob", (MAX_UNCLAIMED + 1, 0), 1, known=False).verdict is Verdict.REFUSE
