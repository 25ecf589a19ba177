"""The peer state machine and the peer table, without sockets: every state x every event."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

import silo
from silo.errors import PeerUnavailableError
from silo.peers import (
    LIVE,
    TERMINAL,
    TRANSITIONS,
    Dedupe,
    LinkEvent,
    LinkState,
    LinkStateError,
    Peers,
    next_state,
)
from silo.wire import PEER_UNAVAILABLE, ErrorInfo

from multiparty import addresses_for

S, E = LinkState, LinkEvent

#: What each pair must do, written out again by hand: the table must agree with it.
EXPECTED = {
    S.CONNECTING: {
        E.CONNECTED: S.UP,
        E.HEARD: S.UP,
        E.DROPPED: S.CONNECTING,
        E.GOODBYE: S.FINISHED,
        E.SILENT: S.LOST,
        E.REFUSED: S.REFUSED,
        E.CLOSE: S.CLOSED,
    },
    S.UP: {
        E.CONNECTED: S.UP,
        E.HEARD: S.UP,
        E.DROPPED: S.RECONNECTING,
        E.GOODBYE: S.FINISHED,
        E.SILENT: S.LOST,
        E.REFUSED: S.REFUSED,
        E.CLOSE: S.CLOSED,
    },
    S.RECONNECTING: {
        E.CONNECTED: S.UP,
        E.HEARD: S.RECONNECTING,
        E.DROPPED: S.RECONNECTING,
        E.GOODBYE: S.FINISHED,
        E.SILENT: S.LOST,
        E.REFUSED: S.REFUSED,
        E.CLOSE: S.CLOSED,
    },
}


@pytest.mark.parametrize("state", list(LinkState))
@pytest.mark.parametrize("event", list(LinkEvent))
def test_every_state_and_event(state: LinkState, event: LinkEvent) -> None:
    if state in TERMINAL:
        assert (state, event) not in TRANSITIONS
        assert next_state(state, event) is state
    else:
        assert next_state(state, event) is EXPECTED[state][event]
        assert TRANSITIONS[(state, event)] is EXPECTED[state][event]


def test_live_and_terminal_split_the_states() -> None:
    assert LIVE | TERMINAL == set(LinkState) and not LIVE & TERMINAL
    assert {s for s, _ in TRANSITIONS} == LIVE


def test_a_pair_missing_from_a_live_state_is_an_internal_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    table = dict(TRANSITIONS)
    del table[(S.UP, E.HEARD)]
    monkeypatch.setattr("silo.peers.TRANSITIONS", table)
    with pytest.raises(LinkStateError, match="no transition from UP on HEARD"):
        next_state(S.UP, E.HEARD)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def make(timeout: float = 2.0) -> tuple[Peers, Clock, list[tuple[str, LinkState, str]]]:
    clock = Clock()
    peers = Peers(["bob", "carol"], timeout_s=timeout, clock=clock)
    seen: list[tuple[str, LinkState, str]] = []
    peers.subscribe(lambda p, s, r: seen.append((p, s, r)))
    return peers, clock, seen


def test_listeners_hear_terminal_moves_once_with_the_reason() -> None:
    peers, _, seen = make()
    peers.fire("bob", E.CONNECTED)
    peers.fire("bob", E.DROPPED)
    assert peers.state("bob") is S.RECONNECTING and seen == []
    peers.fire("bob", E.REFUSED, "bob runs job 'b', alice runs job 'a'")
    peers.fire("bob", E.SILENT, "later news")
    assert seen == [("bob", S.REFUSED, "bob runs job 'b', alice runs job 'a'")]
    assert peers.reason("bob") == "bob runs job 'b', alice runs job 'a'"
    assert peers.live() == ["carol"] and not peers.is_live("bob")


def test_a_peer_never_heard_is_silent_after_the_timeout() -> None:
    peers, clock, _ = make()
    clock.now += 1.9
    assert peers.silent() == []
    clock.now += 0.2
    assert [p for p, _ in peers.silent()] == ["bob", "carol"]
    assert "bob did not answer within 2000 ms" in dict(peers.silent())["bob"]


def test_a_late_peer_within_the_timeout_is_fine() -> None:
    peers, clock, _ = make()
    clock.now += 1.5
    peers.heard("bob", outgoing=True)
    peers.heard("bob", outgoing=False)
    assert peers.state("bob") is S.UP and peers.record("bob").ever_heard
    clock.now += 1.5
    assert [p for p, _ in peers.silent()] == ["carol"]


def test_a_peer_another_party_lost_is_lost_here_only_if_silent_here_too() -> None:
    """alice reports carol out of reach: carol, silent here for over half the timeout, is lost
    now; bob, heard from lately, stays (alice may be the one cut off); a peer never heard here
    is left to the monitor."""
    peers, clock, seen = make()
    for peer in ("bob", "carol"):
        peers.heard(peer, outgoing=True)
        peers.heard(peer, outgoing=False)
    clock.now += 1.2
    peers.heard("bob", outgoing=True)
    peers.heard("bob", outgoing=False)
    assert not peers.corroborate("bob", "alice")
    assert peers.corroborate("carol", "alice")
    assert peers.state("carol") is S.LOST and peers.state("bob") is S.UP
    assert (
        seen[0][0] == "carol"
        and "carol was not heard from for 1200 ms, and alice lost it too" in seen[0][2]
    )
    quiet, quiet_clock, _ = make()
    quiet_clock.now += 5
    assert not quiet.corroborate("bob", "alice")


def test_either_direction_silent_loses_the_peer() -> None:
    peers, clock, _ = make()
    for _ in range(5):
        clock.now += 1.0
        peers.heard("bob", outgoing=False)
    assert "bob" in dict(peers.silent())
    assert "not heard from for 2000 ms" in dict(peers.silent())["bob"]


def test_heard_keeps_a_reconnecting_link_reconnecting() -> None:
    peers, _, _ = make()
    peers.heard("bob", outgoing=False)
    peers.fire("bob", E.DROPPED)
    peers.heard("bob", outgoing=False)
    assert peers.state("bob") is S.RECONNECTING
    peers.fire("bob", E.CONNECTED)
    assert peers.state("bob") is S.UP


def test_terminal_peers_are_never_silent() -> None:
    peers, clock, _ = make()
    peers.fire("bob", E.GOODBYE, "bob finished")
    peers.fire("carol", E.CLOSE)
    clock.now += 10
    assert peers.silent() == []


def test_dedupe_delivers_each_id_once_in_any_order() -> None:
    seen = Dedupe()
    assert [seen.accept(i) for i in (1, 3, 2, 3, 1, 4)] == [True, True, True, False, False, True]
    assert seen.watermark == 4 and seen.above == set()
    assert seen.accept(6) and not seen.accept(6)
    assert seen.watermark == 4 and seen.above == {6}


def test_dedupe_memory_is_bounded_past_a_gap() -> None:
    seen = Dedupe(limit=8)
    for i in range(2, 40):
        assert seen.accept(i)
    assert len(seen.above) <= 8
    assert not seen.accept(39) and not seen.accept(5)
    assert seen.accept(40)


def test_peers_dedupe_survives_reconnection() -> None:
    peers, _, _ = make()
    assert peers.accept("bob", 1)
    peers.fire("bob", E.CONNECTED)
    peers.fire("bob", E.DROPPED)
    peers.fire("bob", E.CONNECTED)
    assert not peers.accept("bob", 1)
    assert peers.accept("carol", 1)


def test_the_table_in_the_architecture_docs_is_the_code_table() -> None:
    text = (Path(__file__).parent.parent / "docs" / "architecture.md").read_text()
    block = text.split("<!-- link-state-table", 1)[1].split("\n\n", 1)[0]
    rows = [
        [cell.strip() for cell in line.strip("|").split("|")]
        for line in block.splitlines()[1:]
        if line.startswith("|")
    ]
    header, body = rows[0], rows[2:]
    assert header == ["state", *(e.name for e in LinkEvent)]
    assert [row[0] for row in body] == [s.name for s in LinkState]
    for row in body:
        state = LinkState[row[0]]
        for event, cell in zip(LinkEvent, row[1:], strict=True):
            expected = "-" if state in TERMINAL else TRANSITIONS[(state, event)].name
            assert cell == expected, (state, event, cell)


@silo.remote
def _from_bob() -> int:
    return 1


async def test_a_report_that_this_party_is_lost_names_the_reporter() -> None:
    """A partition or a freeze can make another party report *this* party lost; here the party
    out of reach is the reporter, never this party itself."""
    rt = await silo.init(addresses_for(["alice", "bob"]), "alice", logging_level="critical")
    try:
        obj = _from_bob.party("bob").remote()
        pending = asyncio.ensure_future(silo.get(obj))
        await asyncio.sleep(0)
        rt._core.inbound.deliver_abort(
            "bob", ErrorInfo("alice", PEER_UNAVAILABLE, "alice went silent", None)
        )
        with pytest.raises(PeerUnavailableError) as caught:
            await pending
        assert caught.value.src_party == "bob"
        assert "bob lost contact with alice (alice went silent)" in str(caught.value)
    finally:
        await rt.shutdown()
