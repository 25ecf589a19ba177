"""``silo.fed`` in this process: a one-party job on a free loopback port, its loop on a
background thread. Cross-party behaviour is in ``test_fed.py`` (real processes)."""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from typing import Any

import pytest

import silo
from silo import fed
from silo.fed._session import Session
from silo.fed.config import get_cluster_config, get_job_config
from silo.fed.exceptions import FedTaskError, IgnoredConfigWarning

from multiparty import addresses_for


class Boom(Exception):
    pass


@fed.remote
def add(a: int, b: int) -> int:
    return a + b


@fed.remote
def fail(message: str) -> None:
    raise Boom(message)


@fed.remote
def where() -> str:
    return threading.current_thread().name


#: A FedObject that reaches a task without being an argument (arguments arrive resolved).
HELD: dict[str, Any] = {}


@fed.remote
def get_in_task(value: int, resolved: list[int]) -> int:
    return int(fed.get(value)) + int(fed.get(resolved[0])) + int(fed.get(HELD["obj"]))


@fed.remote
async def get_on_loop() -> int:
    return int(fed.get(HELD["obj"]))


@fed.remote
class Counter:
    def __init__(self, start: int) -> None:
        self.value = start

    def inc(self, n: int) -> int:
        self.value += n
        return self.value

    def pair(self) -> tuple[int, int]:
        return self.value, -self.value


@pytest.fixture
def solo() -> Iterator[dict[str, str]]:
    addresses = addresses_for(["solo"])
    fed.init(addresses, "solo", logging_level="warning", job_name="unit")
    try:
        yield addresses
    finally:
        fed.shutdown()


def test_remote_get_actor_and_config(solo: dict[str, str]) -> None:
    counter = Counter.party("solo").remote(10)
    first = counter.inc.remote(1)
    a, b = counter.pair.options(num_returns=2).remote()
    total = add.party("solo").remote(first, [b][0])
    assert fed.get([first, a, b, total]) == [11, 11, -11, 0]
    assert fed.get(where.party("solo").remote()).startswith("silo-solo")
    assert fed.get((first, 4)) == [11, 4], "a tuple gives a list, as in RayFed"
    cluster = get_cluster_config()
    assert (cluster.cluster_addresses, cluster.current_party) == (solo, "solo")
    assert cluster.tls_config == {}
    job = get_job_config()
    assert job.job_name == "unit" and job.cross_silo_comm_config_dict == {}
    assert get_job_config("unit").config.cross_silo_comm.timeout_in_ms == 60000
    with pytest.raises(silo.NoRuntimeError, match="no job 'other'"):
        get_cluster_config("other")


def test_error_at_the_origin_is_its_own_type_with_cause(solo: dict[str, str]) -> None:
    with pytest.raises(Boom, match="bad input") as info:
        fed.get(fail.party("solo").remote("bad input"))
    assert isinstance(info.value, FedTaskError)
    assert type(info.value.cause) is Boom  # type: ignore[attr-defined]
    cascaded = add.party("solo").remote(fail.party("solo").remote("first"), 1)
    with pytest.raises(Boom, match="first"):
        fed.get(cascaded)


def test_get_inside_a_task_and_on_the_loop_thread(solo: dict[str, str]) -> None:
    held = add.party("solo").remote(1, 2)
    HELD["obj"] = add.party("solo").remote(10, 20)
    try:
        assert fed.get(get_in_task.party("solo").remote(5, [held])) == 38
        with pytest.raises(silo.SiloError, match="would deadlock"):
            fed.get(get_on_loop.party("solo").remote())
    finally:
        HELD.clear()


def test_plain_values_need_no_runtime() -> None:
    assert fed.get(3) == 3
    assert fed.get([1, "a"]) == [1, "a"]
    assert fed.get((1, "a")) == (1, "a")
    fed.shutdown()
    fed.shutdown()


def test_misuse_is_refused_clearly(solo: dict[str, str]) -> None:
    with pytest.raises(ValueError, match=r"call \.party\(name\) before"):
        add.remote(1, 2)
    with pytest.raises(ValueError, match="unknown party 'carol'"):
        add.party("carol")
    with pytest.raises(TypeError, match="cannot be called directly"):
        add(1, 2)
    with pytest.raises(TypeError, match=r"fed\.remote expects a function, coroutine function"):
        fed.remote(3)
    with pytest.raises(TypeError, match="expects an actor handle"):
        fed.kill(add)  # type: ignore[arg-type]
    with pytest.raises(silo.ConfigError, match="already runs party 'solo'"):
        fed.init(solo, "solo")
    with pytest.raises(ValueError, match="unknown option 'bogus'"):
        add.options(bogus=1)


def test_kill_stops_the_actor(solo: dict[str, str]) -> None:
    counter = Counter.party("solo").remote(0)
    assert fed.get(counter.inc.remote(1)) == 1
    fed.kill(counter, no_restart=True)
    with pytest.raises(silo.ActorKilledError):
        fed.get(counter.inc.remote(1))


def test_without_init_remote_calls_say_so() -> None:
    with pytest.raises(silo.NoRuntimeError, match=r"fed\.init"):
        add.party("solo").remote(1, 2)
    with pytest.raises(silo.NoRuntimeError):
        get_cluster_config()


def test_ray_options_and_proxy_classes_are_warned() -> None:
    with pytest.warns(IgnoredConfigWarning, match="num_gpus=1"):
        decorated = fed.remote(num_gpus=1, num_returns=2)(lambda: (1, 2))
    addresses = addresses_for(["solo"])
    with pytest.warns(IgnoredConfigWarning, match=r"fed.init\(sender_proxy_cls=...\)"):
        fed.init(addresses, "solo", logging_level="warning", sender_proxy_cls=object)
    try:
        assert fed.get(decorated.party("solo").remote()) == [1, 2]
    finally:
        fed.shutdown()
    with pytest.raises(TypeError, match="unexpected keyword argument 'bogus'"):
        fed.init(addresses, "solo", bogus=1)


def test_bad_configuration_fails_init_and_leaves_no_session() -> None:
    addresses = addresses_for(["solo"])
    with pytest.raises(silo.ConfigError, match="unknown key 'timeout_in_msec'"):
        fed.init(addresses, "solo", config={"cross_silo_comm": {"timeout_in_msec": 1}})
    with pytest.raises(silo.ConfigError, match="party"):
        fed.init(addresses, "nobody")
    fed.init(addresses, "solo", logging_level="warning")
    fed.shutdown()


def test_signal_handlers_are_installed_and_restored() -> None:
    before = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    fed.init(addresses_for(["solo"]), "solo", logging_level="warning")
    try:
        assert signal.getsignal(signal.SIGINT) is not before[0]
    finally:
        fed.shutdown()
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == before


def test_objects_of_a_shut_down_job_are_refused_in_the_next() -> None:
    addresses = addresses_for(["solo"])
    fed.init(addresses, "solo", logging_level="warning")
    old = add.party("solo").remote(1, 1)
    assert fed.get(old) == 2
    fed.shutdown()
    fed.init(addresses, "solo", logging_level="warning")
    try:
        with pytest.raises(silo.SiloError, match="belongs to another silo runtime"):
            fed.get(old)
        assert fed.get(add.party("solo").remote(2, 2)) == 4
    finally:
        fed.shutdown()


def test_a_caller_never_waits_on_a_loop_thread_that_is_gone() -> None:
    session = Session()
    session.loop.call_soon_threadsafe(session.loop.stop)
    session._thread.join(5)
    try:
        with pytest.raises(silo.SiloError, match="event-loop thread of this party is gone"):
            session.call(lambda: 1)
    finally:
        session.loop.close()
