"""``silo.simulate`` over the in-memory transport: its choices, determinism, and fault plans."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

import silo
from silo import context, faults
from silo.transport import TcpTransport
from silo.transport.memory import MemoryTransport

SHORT = {"cross_silo_comm": {"timeout_in_ms": 300, "heartbeat_interval_ms": 30}}
EVENTS: list[tuple[str, ...]] = []
#: What each party's get gave in the last run of ``chain``.
SEEN: dict[str, Any] = {}


@silo.remote
async def step(tag: str, x: int) -> int:
    EVENTS.append(("run", tag))
    await asyncio.sleep(0)
    return x + 1


@silo.remote
async def total(*xs: int) -> int:
    EVENTS.append(("total", str(len(xs))))
    return sum(xs)


async def chain(party: str) -> Any:
    """bob -> alice -> carol -> bob ...: every step needs the value of the previous party."""
    x: Any = 0
    for i, owner in enumerate(["bob", "alice", "carol"] * 2):
        x = step.party(owner).remote(f"{owner}{i}", x)
    try:
        SEEN[party] = await silo.get(x)
    except silo.PeerUnavailableError as exc:
        SEEN[party] = f"{exc.src_party} unavailable"
    return SEEN[party]


async def fan(party: str) -> int:
    xs = [step.party(p).remote(f"{p}{i}", i) for i, p in enumerate(["a", "b", "c"] * 3)]
    result = int(await silo.get(total.party("b").remote(*xs)))
    EVENTS.append(("got", party))
    return result


async def test_the_default_transport_is_in_memory_and_tcp_stays_available() -> None:
    async def kind(party: str) -> str:
        return type(context.current_runtime().transport).__name__

    started = time.monotonic()
    assert await silo.simulate(kind, ["a", "b"]) == {"a": "MemoryTransport", "b": "MemoryTransport"}
    assert time.monotonic() - started < 5
    tcp = await silo.simulate(kind, ["a", "b"], transport="tcp")
    assert tcp == {"a": TcpTransport.__name__, "b": TcpTransport.__name__}
    assert MemoryTransport.__name__ == "MemoryTransport"


async def test_bad_choices_are_clear_errors() -> None:
    with pytest.raises(ValueError, match=r"transport: expected one of .*, got 'udp'"):
        await silo.simulate(chain, ["alice"], transport="udp")
    with pytest.raises(ValueError, match="transport='tcp' cannot inject them"):
        await silo.simulate(chain, ["alice", "bob"], transport="tcp", faults=[faults.kill("bob")])
    with pytest.raises(ValueError, match="unknown party 'bob'"):
        await silo.simulate(chain, ["alice"], faults=[faults.kill("bob")])
    with pytest.raises(ValueError, match="tls_config: the in-memory transport has no sockets"):
        await silo.simulate(chain, ["alice"], tls_config={"ca_cert": "x"})


async def test_the_same_program_twice_gives_the_same_order_of_events() -> None:
    runs = []
    for _ in range(3):
        EVENTS.clear()
        assert await silo.simulate(fan, ["a", "b", "c"]) == {"a": 45, "b": 45, "c": 45}
        runs.append(list(EVENTS))
    assert runs[0] == runs[1] == runs[2]
    assert len(runs[0]) == 9 + 1 + 3
    assert {tag[0] for kind, tag in runs[0] if kind == "run"} == {"a", "b", "c"}


async def test_serialisation_refusal_is_raised_under_the_in_memory_transport() -> None:
    class Local:  # defined in a function: cloudpickle sends it by value
        def __init__(self, x: int) -> None:
            self.x = x

    @silo.remote
    def make(x: int) -> Local:
        return Local(x)

    async def main(party: str) -> Any:
        try:
            return (await silo.get(make.party("alice").remote(7))).x
        except silo.SerializationError as exc:
            return str(exc).split(":")[0]

    out = await silo.simulate(main, ["alice", "bob"])
    assert out["alice"] == 7
    assert out["bob"].startswith("refused to deserialise cloudpickle")
    trusted = {"cross_silo_comm": {"serializing_allowed_list": "*"}}
    assert await silo.simulate(main, ["alice", "bob"], config=trusted) == {"alice": 7, "bob": 7}


async def test_values_are_copies_between_parties() -> None:
    @silo.remote
    def make() -> list[int]:
        return [1, 2]

    seen: dict[str, list[int]] = {}

    async def main(party: str) -> list[int]:
        value: list[int] = await silo.get(make.party("alice").remote())
        seen[party] = value
        value.append(len(party))
        return value

    out = await silo.simulate(main, ["alice", "bob"])
    assert out == {"alice": [1, 2, 5], "bob": [1, 2, 3]}
    assert seen["alice"] is not seen["bob"]


async def test_kill_fails_the_survivors_with_peer_unavailable_at_once() -> None:
    SEEN.clear()
    started = time.monotonic()
    plan = [faults.kill("bob", after_frames=1)]
    with pytest.raises(silo.PeerUnavailableError, match="bob is gone: killed") as info:
        await silo.simulate(chain, ["alice", "bob", "carol"], faults=plan)
    # The default timeout_in_ms is 60 s: the hub tells the others at once.
    assert time.monotonic() - started < 5
    assert info.value.src_party == "bob"
    # Each survivor's get raised it; the end of the program raises it again (the job broke).
    assert SEEN == {"alice": "bob unavailable", "carol": "bob unavailable"}


async def test_a_party_killed_before_it_is_heard_of_fails_only_what_needs_it() -> None:
    async def main(party: str) -> Any:
        both = [step.party("alice").remote("a", 1), step.party("carol").remote("c", 2)]
        mine = await silo.get(both)
        try:
            await silo.get(step.party("bob").remote("b", 3))
        except silo.PeerUnavailableError as exc:
            return mine, exc.src_party
        return mine, None

    plan = [faults.kill("bob")]
    out = await silo.simulate(main, ["alice", "bob", "carol"], faults=plan)
    assert out == {
        "alice": ([2, 3], "bob"),
        "bob": faults.Killed("bob", 0),
        "carol": ([2, 3], "bob"),
    }


async def test_freeze_is_found_by_the_silence_timeout() -> None:
    SEEN.clear()
    started = time.monotonic()
    plan = [faults.freeze("bob", after_frames=1)]
    with pytest.raises(silo.PeerUnavailableError, match="not heard from for 300 ms") as info:
        await silo.simulate(chain, ["alice", "bob", "carol"], faults=plan, config=SHORT)
    elapsed = time.monotonic() - started
    assert info.value.src_party == "bob"
    assert SEEN["alice"] == SEEN["carol"] == "bob unavailable"
    assert 0.25 <= elapsed < 10


async def test_a_few_dropped_frames_are_written_again() -> None:
    async def main(party: str) -> Any:
        value = await chain(party)
        return value, context.current_runtime().stats().peers
        # (stats are read before the runtime shuts down)

    plan = [faults.drop("alice", "carol", kinds="data", count=1)]
    out = await silo.simulate(main, ["alice", "bob", "carol"], faults=plan, config=SHORT)
    assert [value for value, _ in out.values()] == [6, 6, 6]
    assert out["alice"][1]["carol"].retries == 1
    assert out["bob"][1]["carol"].retries == 0


async def test_a_cut_link_loses_the_peer() -> None:
    SEEN.clear()
    plan = [faults.drop("alice", "carol")]
    started = time.monotonic()
    with pytest.raises(silo.PeerUnavailableError) as info:
        await silo.simulate(chain, ["alice", "bob", "carol"], faults=plan, config=SHORT)
    assert info.value.src_party in ("alice", "carol")
    assert 0.25 <= time.monotonic() - started < 10


async def test_delayed_frames_arrive_late() -> None:
    started = time.monotonic()
    plan = [faults.delay("alice", "carol", 0.1)]
    out = await silo.simulate(chain, ["alice", "bob", "carol"], faults=plan)
    assert out == {"alice": 6, "bob": 6, "carol": 6}
    assert time.monotonic() - started >= 0.1


async def test_a_program_that_does_not_handle_the_loss_raises_peer_unavailable() -> None:
    async def main(party: str) -> int:
        return int(await silo.get(step.party("bob").remote("b", 1)))

    with pytest.raises(silo.PeerUnavailableError, match="bob is gone: killed") as info:
        await silo.simulate(main, ["alice", "bob"], faults=[faults.kill("bob", after_frames=0)])
    assert info.value.src_party == "bob"
