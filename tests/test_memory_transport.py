"""The in-memory transport on its own: a Hub and its parties' transports, with recording sinks."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import numpy as np
import pytest

from silo.config import CrossSiloCommConfig, RetryPolicy
from silo.errors import FrameRejected, SendingFailure, SerializationError, SiloError
from silo.faults import Drop, Freeze, Kill, check_plan, delay, drop, freeze, kill
from silo.intake import STORE, Admission
from silo.log import party_logger
from silo.peers import LinkState, Peers
from silo.stats import Counters
from silo.transport.base import Transport
from silo.transport.hub import Hub
from silo.transport.memory import MemoryTransport
from silo.wire import ErrorInfo, ObjectId

FAST = CrossSiloCommConfig(timeout_in_ms=200, heartbeat_interval_ms=20)


class Sink:
    """Records what is delivered, in order; every party's record goes to one shared list."""

    def __init__(self, party: str, events: list[tuple[Any, ...]]) -> None:
        self.party = party
        self.events = events
        self.values: dict[ObjectId, object] = {}

    def admit(self, src: str, object_id: ObjectId, nbytes: int) -> Admission:
        return STORE

    def deliver_data(self, src: str, object_id: ObjectId, value: object, call: str = "") -> None:
        self.values[object_id] = value
        self.events.append((self.party, "data", src, object_id))

    def deliver_error(self, src: str, object_id: ObjectId, info: ErrorInfo, call: str = "") -> None:
        self.events.append((self.party, "error", src, object_id, info.origin))

    def deliver_refused(self, src: str, object_id: ObjectId, error: SiloError) -> None:
        self.events.append((self.party, "refused", src, object_id, type(error).__name__))

    def deliver_abort(self, src: str, info: ErrorInfo) -> None:
        self.events.append((self.party, "abort", src))


class Party:
    def __init__(self, hub: Hub, name: str, events: list[tuple[Any, ...]], comm: Any) -> None:
        others = [p for p in hub.parties if p != name]
        self.table = Peers(others, timeout_s=comm.timeout_s, clock=time.monotonic)
        self.counters = Counters(others)
        self.sink = Sink(name, events)
        self.transport: Transport = hub.transport(
            party=name,
            job="t",
            addresses={},
            sink=self.sink,
            comm=comm,
            log=party_logger(name, "t"),
            peer_table=self.table,
            counters=self.counters,
        )


async def parties(
    names: list[str], faults: list[Any] | None = None, comm: Any = FAST
) -> tuple[Hub, dict[str, Party], list[tuple[Any, ...]]]:
    hub = Hub(names, check_plan(faults or [], names))
    events: list[tuple[Any, ...]] = []
    made = {n: Party(hub, n, events, comm) for n in names}
    for party in made.values():
        await party.transport.start()
    return hub, made, events


async def close(made: dict[str, Party]) -> None:
    for party in made.values():
        await party.transport.aclose()


async def test_frames_arrive_in_order_as_copies_counted_like_real_frames() -> None:
    _hub, p, events = await parties(["a", "b", "c"])
    assert isinstance(p["a"].transport, MemoryTransport)
    assert p["a"].table.state("b") is LinkState.UP
    array = np.arange(4.0)
    sends = [
        asyncio.ensure_future(p["a"].transport.send_data("b", (1, 0), array, "f")),
        asyncio.ensure_future(p["c"].transport.send_data("b", (2, 0), "x")),
        asyncio.ensure_future(p["a"].transport.send_error("c", (3, 0), ErrorInfo("a"))),
        asyncio.ensure_future(p["b"].transport.send_abort("a", ErrorInfo("b"))),
    ]
    await asyncio.sleep(0)
    array[0] = 99.0  # after the send: the frame carries the value as it was sent
    await asyncio.gather(*sends)
    assert events == [
        ("b", "data", "a", (1, 0)),
        ("b", "data", "c", (2, 0)),
        ("c", "error", "a", (3, 0), "a"),
        ("a", "abort", "b"),
    ]
    received = p["b"].sink.values[(1, 0)]
    assert isinstance(received, np.ndarray) and received is not array
    assert received.tolist() == [0.0, 1.0, 2.0, 3.0]
    received[1] = 7.0  # the receiver's copy is its own, and writable
    assert array[1] == 1.0
    a_to_b = p["a"].counters.peer("b")
    b_from_a = p["b"].counters.peer("a")
    assert (a_to_b.frames_sent, b_from_a.frames_received) == (1, 1)
    assert a_to_b.bytes_sent == b_from_a.bytes_received > array.nbytes
    assert p["a"].counters.bytes_in_flight == 0
    await close(p)


async def test_a_refused_value_fails_there_and_is_rejected_here() -> None:
    class Local:
        pass

    _hub, p, events = await parties(["a", "b"])
    with pytest.raises(FrameRejected, match=r"refused object \(1, 0\)"):
        await p["a"].transport.send_data("b", (1, 0), Local())
    assert events == [("b", "refused", "a", (1, 0), "SerializationError")]
    with pytest.raises(SerializationError, match="cannot serialise"):
        await p["a"].transport.send_data("b", (2, 0), (lambda: (yield))())
    await close(p)


async def test_goodbye_finishes_the_sender_and_later_sends_fail() -> None:
    _hub, p, _ = await parties(["a", "b"])
    await p["a"].transport.say_goodbye(1.0)
    assert p["b"].table.state("a") is LinkState.FINISHED
    await p["a"].transport.aclose()
    assert p["a"].table.state("b") is LinkState.CLOSED
    with pytest.raises(SendingFailure, match="closed the channel"):
        await p["a"].transport.send_data("b", (1, 0), 1)
    await close(p)


async def test_frames_wait_for_a_party_that_has_not_joined_and_the_barrier_names_it() -> None:
    hub = Hub(["a", "b"])
    events: list[tuple[Any, ...]] = []
    a, b = Party(hub, "a", events, FAST), Party(hub, "b", events, FAST)
    await a.transport.start()
    assert await a.transport.wait_peers(0.05) == ["b"]
    sent = asyncio.ensure_future(a.transport.send_data("b", (1, 0), 5))
    await asyncio.sleep(0.01)
    assert not sent.done() and a.table.state("b") is LinkState.CONNECTING
    await b.transport.start()
    await sent
    assert events == [("b", "data", "a", (1, 0))] and a.table.state("b") is LinkState.UP
    assert await a.transport.wait_peers(0.05) == []
    await close({"a": a, "b": b})


async def test_silence_is_judged_by_heartbeats() -> None:
    _hub, p, _ = await parties(["a", "b"])
    await asyncio.sleep(FAST.timeout_s * 1.5)
    assert p["a"].table.state("b") is LinkState.UP  # heartbeats kept it up
    record = p["a"].table.record("b")
    assert record.activity is not None and record.activity.running == 0
    await close(p)


async def test_kill_stops_the_party_after_its_frames_and_its_peers_lose_it_at_once() -> None:
    hub, p, events = await parties(["a", "b", "c"], [kill("a", after_frames=2)])
    killed: list[str] = []
    hub.on_kill("a", lambda: killed.append("a"))
    await p["a"].transport.send_data("b", (1, 0), 1)
    assert killed == [] and p["b"].table.state("a") is LinkState.UP
    await p["a"].transport.send_data("c", (2, 0), 2)
    assert killed == ["a"] and hub.killed == {"a"}
    assert p["b"].table.state("a") is LinkState.LOST
    assert "killed by the fault plan after 2 frame(s)" in p["c"].table.reason("a")
    assert events == [("b", "data", "a", (1, 0)), ("c", "data", "a", (2, 0))]
    assert p["a"].table.state("b") is LinkState.CLOSED
    never = asyncio.ensure_future(p["a"].transport.send_data("b", (3, 0), 3))
    with pytest.raises(SendingFailure, match="killed"):
        await p["b"].transport.send_data("a", (4, 0), 4)
    await asyncio.sleep(0.01)
    assert not never.done()  # a dead party's send never ends: its runtime cancels it
    never.cancel()
    await close(p)


async def test_freeze_holds_frames_and_peers_find_out_by_the_silence() -> None:
    _hub, p, events = await parties(["a", "b"], [freeze("b", after_frames=1)])
    await p["b"].transport.send_data("a", (1, 0), 1)
    held = asyncio.ensure_future(p["a"].transport.send_data("b", (2, 0), 2))
    started = time.monotonic()
    with pytest.raises(SendingFailure, match="not heard from for 200 ms"):
        await held
    assert FAST.timeout_s * 0.9 <= time.monotonic() - started < FAST.timeout_s + 1.0
    assert events == [("a", "data", "b", (1, 0))]
    assert p["a"].table.state("b") is LinkState.LOST
    await close(p)


async def test_a_dropped_frame_is_written_again_after_the_timeout() -> None:
    comm = CrossSiloCommConfig(
        timeout_in_ms=50, heartbeat_interval_ms=20, retry_policy=RetryPolicy(max_attempts=3)
    )
    _hub, p, events = await parties(["a", "b"], [drop("a", "b", kinds="data", count=2)], comm)
    await p["a"].transport.send_data("b", (1, 0), 1)
    assert events == [("b", "data", "a", (1, 0))]
    assert p["a"].counters.peer("b").retries == 2
    assert p["a"].counters.peer("b").frames_sent == 1
    await close(p)


async def test_frames_dropped_for_good_fail_as_on_a_real_link() -> None:
    comm = CrossSiloCommConfig(
        timeout_in_ms=50, heartbeat_interval_ms=20, retry_policy=RetryPolicy(max_attempts=2)
    )
    plan = [drop("a", "b", kinds=["data", "error"])]
    _hub, p, events = await parties(["a", "b"], plan, comm)
    with pytest.raises(SendingFailure, match="not acknowledged after 2 attempts"):
        await p["a"].transport.send_data("b", (1, 0), 1)
    with pytest.raises(SendingFailure, match="no progress for 50 ms"):
        await p["a"].transport.send_error("b", (1, 0), ErrorInfo("a"))
    await p["a"].transport.send_abort("b", ErrorInfo("a"))  # not a kind the plan drops
    assert events == [("b", "abort", "a")]
    await asyncio.sleep(comm.timeout_s * 2)
    assert p["b"].table.state("a") is LinkState.UP  # heartbeats still flow
    await close(p)


async def test_a_delayed_frame_arrives_late_and_after_later_ones() -> None:
    _hub, p, events = await parties(["a", "b", "c"], [delay("a", "b", 0.05)])
    started = time.monotonic()
    late = asyncio.ensure_future(p["a"].transport.send_data("b", (1, 0), 1))
    await p["c"].transport.send_data("b", (2, 0), 2)
    await late
    assert time.monotonic() - started >= 0.045
    assert events == [("b", "data", "c", (2, 0)), ("b", "data", "a", (1, 0))]
    await close(p)


def test_faults_are_validated_with_clear_errors() -> None:
    parties_ = ["alice", "bob"]
    with pytest.raises(ValueError, match="unknown party 'carol'"):
        check_plan([kill("carol")], parties_)
    with pytest.raises(ValueError, match="unknown party 'eve'"):
        check_plan([drop("alice", "eve")], parties_)
    with pytest.raises(ValueError, match="'bob' is already killed or frozen"):
        check_plan([kill("bob", after_frames=1), freeze("bob")], parties_)
    with pytest.raises(TypeError, match=r"expected faults made by silo\.faults"):
        check_plan(["kill bob"], parties_)
    with pytest.raises(TypeError, match="expected a list of faults"):
        check_plan(kill("bob"), parties_)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="after_frames: expected an integer >= 0, got -1"):
        kill("bob", after_frames=-1)
    with pytest.raises(ValueError, match=r"after_frames.*got True"):
        freeze("bob", after_frames=True)
    with pytest.raises(TypeError, match="party: expected a party name, got 3"):
        kill(3)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"kinds: expected some of .*got 'heartbeat'"):
        drop("alice", "bob", kinds="heartbeat")
    with pytest.raises(ValueError, match="count: expected an integer >= 1 or None, got 0"):
        drop("alice", "bob", count=0)
    with pytest.raises(ValueError, match="same party 'bob'"):
        delay("bob", "bob", 1.0)
    with pytest.raises(ValueError, match="seconds: expected a finite number >= 0, got nan"):
        delay("alice", "bob", float("nan"))
    plan = check_plan([kill("bob", after_frames=3), drop("alice", "bob", count=1)], parties_)
    assert plan == [Kill("bob", 3), drop("alice", "bob", count=1)]
    assert isinstance(plan[1], Drop) and len(plan[1].kinds) == 4
    assert freeze("alice") == Freeze("alice", 0)


def test_a_hub_refuses_a_party_it_was_not_made_for() -> None:
    hub = Hub(["a"])
    with pytest.raises(ValueError, match=r"party 'z' is not one of this hub's \['a'\]"):
        Party(hub, "z", [], FAST)
