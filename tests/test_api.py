"""The public API in one process: bad arguments, simulate, actors, kill, several runtimes.

Behaviour between parties is tested across OS processes in test_multiparty.py and
test_failures.py; these tests check the API's own contract.
"""

from __future__ import annotations

import asyncio
import socket
import threading
from pathlib import Path
from typing import Any

import pytest

import silo

from multiparty import addresses_for


@silo.remote
def add(a: int, b: int) -> int:
    return a + b


@silo.remote
def fail() -> None:
    raise ZeroDivisionError("nope")


@silo.remote
class Box:
    def __init__(self, value: int) -> None:
        self.value = value

    def get(self) -> int:
        return self.value

    def put(self, value: int) -> int:
        self.value = value
        return value


def test_remote_rejects_what_it_cannot_decorate() -> None:
    with pytest.raises(TypeError, match=r"expects a function, coroutine function or class, got 5"):
        silo.remote(5)  # type: ignore[call-overload]
    with pytest.raises(ValueError, match="num_returns: expected an integer >= 1, got 0"):
        silo.remote(num_returns=0)
    with pytest.raises(ValueError, match="unknown option 'num_cpus'"):
        add.options(num_cpus=1)


def test_remote_handles_are_not_called_directly() -> None:
    with pytest.raises(TypeError, match=r"use add.party\(name\).remote"):
        add(1, 2)
    with pytest.raises(TypeError, match=r"use Box.party\(name\).remote"):
        Box(1)


def test_party_returns_a_new_handle() -> None:
    bound = add.party("alice")
    assert bound is not add and add._party is None and bound._party == "alice"
    assert add.options(num_returns=2)._options == {"num_returns": 2}
    assert add._options == {"num_returns": 1}


def test_current_party_without_runtime() -> None:
    with pytest.raises(silo.NoRuntimeError, match=r"call silo.init"):
        silo.current_party()


async def test_simulate_runs_each_party_with_its_own_runtime() -> None:
    async def main(party: str) -> Any:
        assert silo.current_party() == party
        with pytest.raises(ValueError, match=r"call \.party\(name\) before"):
            add.remote(1, 2)
        with pytest.raises(ValueError, match="unknown party 'carol'"):
            add.party("carol")
        box = Box.party("bob").remote(10)
        total = add.party("alice").remote(box.get.remote(), 5)
        return await silo.get([total, box.put.remote(total)])

    assert await silo.simulate(main, ["alice", "bob"]) == {"alice": [15, 15], "bob": [15, 15]}


@silo.remote
def _shout(word: str) -> str:
    print(f"worker says {word}")
    return word


async def test_simulate_prefixes_each_party_s_output(capsys: pytest.CaptureFixture[str]) -> None:
    async def main(party: str) -> str:
        print(f"hello from {party}")
        print("no newline yet", end="")
        print(" ... done")
        return await silo.get(_shout.party(party).remote(party))

    print("before")
    assert await silo.simulate(main, ["alice", "bob"]) == {"alice": "alice", "bob": "bob"}
    print("after")
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "before" and lines[-1] == "after"
    body = lines[1:-1]
    for party in ("alice", "bob"):
        assert f"[{party}] hello from {party}" in body
        assert f"[{party}] no newline yet ... done" in body
        assert f"[{party}] worker says {party}" in body
    assert all(line.startswith(("[alice] ", "[bob] ")) for line in body), body
    assert len(body) == 6


async def test_simulate_raises_the_origin_error() -> None:
    async def main(party: str) -> None:
        await silo.get(fail.party("bob").remote())

    with pytest.raises(ZeroDivisionError, match="nope"):
        await silo.simulate(main, ["alice", "bob"])


async def test_main_without_parameter_and_plain_main() -> None:
    async def no_param() -> str:
        return silo.current_party()

    def plain() -> int:
        return 3

    assert await silo.simulate(no_param, ["a", "b"]) == {"a": "a", "b": "b"}
    assert await silo.simulate(plain, ["a"]) == {"a": 3}


async def test_simulate_rejects_bad_arguments() -> None:
    async def main() -> None: ...

    with pytest.raises(ValueError, match="distinct non-empty names"):
        await silo.simulate(main, ["a", "a"])
    with pytest.raises(TypeError, match="simulate chooses 'addresses' itself"):
        await silo.simulate(main, ["a"], addresses={})


async def test_killed_actor_fails_later_calls() -> None:
    async def main(party: str) -> Any:
        box = Box.party("bob").remote(1)
        first = await silo.get(box.get.remote())
        silo.kill(box)
        later = box.get.remote()
        try:
            await silo.get(later)
        except silo.SiloError as exc:
            return [first, type(exc).__name__]
        return [first, None]

    result = await silo.simulate(main, ["alice", "bob"])
    assert result == {"alice": [1, "FedRemoteError"], "bob": [1, "ActorKilledError"]}


async def test_kill_rejects_non_actors() -> None:
    with pytest.raises(TypeError, match="expects an actor handle"):
        silo.kill("box")  # type: ignore[arg-type]


async def test_get_rejects_non_fed_objects_and_bad_timeout() -> None:
    async def main() -> None:
        with pytest.raises(TypeError, match="expects FedObjects, got int"):
            await silo.get([1])  # type: ignore[list-item]
        with pytest.raises(TypeError, match="got str"):
            await silo.get("x")  # type: ignore[call-overload]
        with pytest.raises(ValueError, match="timeout: expected seconds"):
            await silo.get([], timeout=-1)

    await silo.simulate(main, ["a"])


async def test_init_validates_before_binding() -> None:
    addresses = addresses_for(["alice", "bob"])
    with pytest.raises(silo.ConfigError, match=r"party: expected one of \['alice', 'bob'\]"):
        await silo.init(addresses, "carol")
    with pytest.raises(silo.ConfigError, match=r"config\['cross_silo_comm'\]: unknown key"):
        await silo.init(addresses, "alice", config={"cross_silo_comm": {"bogus": 1}})
    with pytest.raises(silo.ConfigError, match="logging_level"):
        await silo.init(addresses, "alice", logging_level="loud")
    with pytest.raises(silo.ConfigError, match="job_name"):
        await silo.init(addresses, "alice", job_name="")
    with pytest.raises(silo.ConfigError, match="sending_failure_handler"):
        await silo.init(addresses, "alice", sending_failure_handler=3)  # type: ignore[arg-type]


async def test_port_in_use_names_the_address() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        addresses = {"alice": f"127.0.0.1:{port}", "bob": "127.0.0.1:1"}
        with pytest.raises(silo.AddressInUseError, match=f"127.0.0.1:{port}.*already in use"):
            await silo.init(addresses, "alice")
    assert silo.AddressInUseError.__mro__[1] is silo.TransportError


async def test_barrier_times_out_naming_missing_parties() -> None:
    addresses = addresses_for(["alice", "bob", "carol"])
    config = {"barrier_on_initializing": True, "cross_silo_comm": {"timeout_in_ms": 300}}
    with pytest.raises(silo.BarrierTimeoutError, match="bob, carol") as info:
        await silo.init(addresses, "alice", config=config)
    assert info.value.missing == ["bob", "carol"]


async def test_barrier_passes_when_everyone_is_there() -> None:
    async def main(party: str) -> str:
        return party

    config = {"barrier_on_initializing": True}
    assert await silo.simulate(main, ["a", "b", "c"], config=config) == {
        "a": "a",
        "b": "b",
        "c": "c",
    }


async def test_awaitable_init_and_idempotent_shutdown() -> None:
    addresses = addresses_for(["solo"])
    rt = await silo.init(addresses, "solo")
    assert silo.current_party() == "solo"
    assert await silo.get(add.party("solo").remote(1, 2)) == 3
    await silo.shutdown()
    await silo.shutdown()
    await rt.shutdown()
    assert rt.closed
    with pytest.raises(silo.RuntimeClosedError):
        add.party("solo").remote(1, 2)


async def test_several_active_runtimes_need_a_current_one() -> None:
    addresses = addresses_for(["a", "b"])
    started: dict[str, Any] = {}

    async def start(party: str) -> None:
        started[party] = await silo.init(addresses, party)

    await asyncio.gather(start("a"), start("b"))
    errors: list[BaseException] = []

    def from_a_thread() -> None:
        try:
            silo.current_party()
        except silo.NoRuntimeError as exc:
            errors.append(exc)

    thread = threading.Thread(target=from_a_thread)
    thread.start()
    thread.join()
    assert errors and "2 silo runtimes are active" in str(errors[0])
    await asyncio.gather(*(rt.shutdown() for rt in started.values()))


async def test_fed_object_of_a_closed_runtime_is_refused() -> None:
    addresses = addresses_for(["solo"])
    async with silo.init(addresses, "solo"):
        old = add.party("solo").remote(1, 1)
        assert await silo.get(old) == 2
    async with silo.init(addresses, "solo"):
        with pytest.raises(silo.SiloError, match="belongs to another silo runtime"):
            add.party("solo").remote(old, 1)


async def test_values_are_released_when_the_program_drops_its_handles() -> None:
    async def main(party: str) -> int:
        rt = silo.api.context.current_runtime()
        for i in range(200):
            box = Box.party("bob").remote(i)
            total = add.party("alice").remote(box.get.remote(), 1)
            assert await silo.get(total) == i + 1
        kept = add.party("alice").remote(1, 1)
        assert await silo.get(kept) == 2
        del box, total
        assert await silo.get(kept) == 2
        return len(rt.table)

    sizes = await silo.simulate(main, ["alice", "bob"])
    assert all(size < 10 for size in sizes.values()), sizes


def test_the_runtime_shows_only_what_the_docs_promise() -> None:
    """``silo.Runtime`` is a facade: its public names are exactly the documented ones, and the
    table in the programming model lists each of them."""
    public = sorted(name for name in dir(silo.Runtime) if not name.startswith("_"))
    promised = ["addresses", "closed", "job", "party", "sending_failures", "shutdown", "stats"]
    assert public == promised
    docs = (Path(__file__).resolve().parents[1] / "docs" / "programming-model.md").read_text()
    for name in public:
        assert f"`rt.{name}" in docs or f"`await rt.{name}" in docs, name
