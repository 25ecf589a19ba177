"""RayFed-style programs run against ``silo.fed``, one OS process per party.

Usage: ``fed_scenarios.py SCENARIO PARTY`` with ``SILO_TEST_ADDRESSES`` (JSON) in the
environment. Each scenario is a plain synchronous program, written as RayFed's test programs
are, with ``import fed`` replaced by ``from silo import fed``. It reports with ``RESULT <json>``.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
import warnings
from collections.abc import Callable
from typing import Any

import silo
from silo import fed
from silo.fed.config import get_cluster_config, get_job_config
from silo.fed.exceptions import FedRemoteError

ADDRESSES: dict[str, str] = json.loads(os.environ.get("SILO_TEST_ADDRESSES", "{}"))
SCENARIOS: dict[str, Callable[[str], None]] = {}


def scenario(fn: Callable[[str], None]) -> Callable[[str], None]:
    SCENARIOS[fn.__name__] = fn
    return fn


def report(value: Any) -> None:
    print("RESULT " + json.dumps(value), flush=True)


def comm(**extra: Any) -> dict[str, Any]:
    return {"cross_silo_comm": {"timeout_ms": 20 * 1000, **extra}}


class MyError(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)


@fed.remote
def error_func() -> None:
    raise MyError("Test normal task Error")


@fed.remote
class My:
    def __init__(self, value: int = 0) -> None:
        self.value = value

    def error_func(self) -> None:
        raise MyError("Test actor task Error")

    def get_value(self) -> int:
        return self.value


@fed.remote
class MyActor:
    def __init__(self, value: int) -> None:
        self.value = value

    def inc(self, num: int) -> int:
        self.value = self.value + num
        return self.value

    def append(self, items: list[int], extra: dict[str, int]) -> list[int]:
        return [*items, extra["x"], self.value]


@fed.remote
def aggregate(val1: int, val2: int) -> int:
    return val1 + val2


@fed.remote
def f() -> int:
    return 100


@fed.remote
def g(x: int) -> int:
    return x + 1


@fed.remote(num_returns=2)
def two() -> tuple[int, int]:
    return 1, 2


@fed.remote
def three() -> tuple[int, int, int]:
    return 3, 4, 5


@fed.remote
def sum_containers(items: list[int], mapping: dict[str, Any], pair: tuple[int, int]) -> int:
    return sum(items) + mapping["a"] + sum(mapping["nested"]) + sum(pair)


@fed.remote
def get_inside_task(value: int, plain: str) -> list[Any]:
    return [fed.get(value), fed.get(plain), threading.current_thread().name]


def describe(exc: BaseException) -> dict[str, Any]:
    cause = getattr(exc, "cause", None)
    return {
        "type": type(exc).__name__,
        "mro": [c.__name__ for c in type(exc).__mro__],
        "is_fed_remote_error": isinstance(exc, FedRemoteError),
        "is_my_error": isinstance(exc, MyError),
        "is_silo_error": isinstance(exc, silo.FedRemoteError),
        "cause_type": type(cause).__name__,
        "cause_is_fed_remote_error": isinstance(cause, FedRemoteError),
        "cause_is_my_error": isinstance(cause, MyError),
        "cause_str": str(cause),
        "src_party": getattr(exc, "src_party", None),
    }


@scenario
def cross_silo_task_error(party: str) -> None:
    expose = os.environ.get("EXPOSE", "1") == "1"
    fed.init(
        addresses=ADDRESSES,
        party=party,
        logging_level="debug",
        config=comm(expose_error_trace=expose),
    )
    o = error_func.party("alice").remote()
    try:
        fed.get(o)
    except Exception as exc:
        report(describe(exc))
    fed.shutdown()


@scenario
def cross_silo_actor_error(party: str) -> None:
    fed.init(addresses=ADDRESSES, party=party, config=comm(expose_error_trace=True))
    my = My.party("alice").remote()
    o = my.error_func.remote()
    try:
        fed.get(o)
    except Exception as exc:
        report(describe(exc))
    fed.shutdown()


@scenario
def readme(party: str) -> None:
    fed.init(addresses=ADDRESSES, party=party, config=comm())
    actor_alice = MyActor.party("alice").remote(1)
    actor_bob = MyActor.party("bob").remote(1)
    val_alice = actor_alice.inc.remote(1)
    val_bob = actor_bob.inc.remote(2)
    sum_val_obj = aggregate.party("bob").remote(val_alice, val_bob)
    result = fed.get(sum_val_obj)
    cluster = get_cluster_config()
    report(
        {
            "result": result,
            "current_party": cluster.current_party,
            "addresses": dict(cluster.cluster_addresses),
            "job": get_job_config().job_name,
        }
    )
    fed.shutdown()


@scenario
def fed_get_in_2_parties(party: str) -> None:
    config = {**comm(), "barrier_on_initializing": True}
    fed.init(addresses=ADDRESSES, party=party, config=config)
    o1 = f.party("alice").remote()
    o2 = g.party("bob").remote(o1)
    report({"values": fed.get([o1, o2]), "mixed": fed.get([o2, 7, "x"]), "plain": fed.get(42)})
    fed.shutdown()


@scenario
def options_num_returns(party: str) -> None:
    fed.init(addresses=ADDRESSES, party=party, config=comm())
    a, b = two.party("alice").remote()
    x, y, z = three.party("bob").options(num_returns=3).remote()
    actor = MyActor.party("bob").remote(10)
    p, q = actor.append.options(num_returns=2).remote([], {"x": 2})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        w = g.party("alice").options(num_cpus=1, resources={"gpu": 1}).remote(a)
    report(
        {
            "values": fed.get([a, b, x, y, z, p, q, w]),
            "warnings": sorted(str(c.message) for c in caught),
        }
    )
    fed.shutdown()


@scenario
def objects_in_containers(party: str) -> None:
    fed.init(addresses=ADDRESSES, party=party, config=comm())
    o1 = f.party("alice").remote()
    o2 = g.party("bob").remote(1)
    total = sum_containers.party("bob").remote([o1, o2], {"a": o2, "nested": [o1, 5]}, (o1, 1))
    actor = MyActor.party("alice").remote(o2)
    appended = actor.append.remote([o1, o2], {"x": o2})
    report({"total": fed.get(total), "appended": fed.get(appended)})
    fed.shutdown()


@scenario
def actor_ordering(party: str) -> None:
    fed.init(addresses=ADDRESSES, party=party, config=comm())
    counter = MyActor.party("alice").remote(0)
    objs = [counter.inc.remote(g.party("bob").remote(i)) for i in range(20)]
    report({"values": fed.get(objs)})
    fed.shutdown()


@scenario
def repeat_init(party: str) -> None:
    results = []
    for round_ in range(2):
        fed.init(addresses=ADDRESSES, party=party, config=comm(), job_name=f"round{round_}")
        a = MyActor.party("alice").remote(round_)
        b = MyActor.party("bob").remote(10)
        results.append(fed.get(aggregate.party("alice").remote(a.inc.remote(1), b.inc.remote(1))))
        fed.shutdown()
        fed.shutdown()
    report({"results": results})


@scenario
def get_inside_a_task(party: str) -> None:
    fed.init(addresses=ADDRESSES, party=party, config=comm())
    o = f.party("alice").remote()
    inner = get_inside_task.party("bob").remote(o, "plain")
    report({"value": fed.get(inner)})
    fed.shutdown()


@scenario
def retry_policy(party: str) -> None:
    policy = {
        "maxAttempts": 4,
        "initialBackoff": "0.2s",
        "maxBackoff": "1s",
        "backoffMultiplier": 2,
        "retryableStatusCodes": ["UNAVAILABLE"],
    }
    fed.init(addresses=ADDRESSES, party=party, config=comm(grpc_retry_policy=policy))
    applied = get_job_config().config.cross_silo_comm.retry_policy
    o = f.party("alice").remote()
    report(
        {
            "value": fed.get(g.party("bob").remote(o)),
            "policy": [
                applied.max_attempts,
                applied.initial_backoff_ms,
                applied.max_backoff_ms,
                applied.backoff_multiplier,
            ],
        }
    )
    fed.shutdown()


@scenario
def exit_on_sending_failure(party: str) -> None:
    calls = []

    def failure_handler(error: Exception) -> None:
        calls.append(error)
        print(f"HANDLER {len(calls)} {type(error).__name__}", flush=True)

    fed.init(
        addresses=ADDRESSES,
        party=party,
        config={
            "cross_silo_comm": {
                "grpc_retry_policy": {
                    "maxAttempts": 2,
                    "initialBackoff": "0.1s",
                    "maxBackoff": "0.1s",
                    "backoffMultiplier": 1,
                    "retryableStatusCodes": ["UNAVAILABLE"],
                },
                "exit_on_sending_failure": True,
                "timeout_ms": 2000,
            },
        },
        sending_failure_handler=failure_handler,
    )
    o = f.party("alice").remote()
    My.party("bob").remote(o)
    My.party("bob").remote(g.party("alice").remote(o))
    print("SLEEPING", flush=True)
    time.sleep(86400)
    print("WOKE UP", flush=True)


@scenario
def allow_list(party: str) -> None:
    import ipaddress

    @fed.remote
    def make() -> Any:
        return ipaddress.IPv4Address("10.0.0.1")

    outcomes = []
    for i, allowed in enumerate(json.loads(os.environ["ALLOWED"])):
        fed.init(
            addresses=ADDRESSES,
            party=party,
            config=comm(serializing_allowed_list=allowed, expose_error_trace=True),
            job_name=f"allow{i}",
        )
        o = make.party("alice").remote()
        try:
            outcomes.append({"value": str(fed.get(o))})
        except Exception as exc:
            outcomes.append({"error": type(exc).__name__, "message": str(exc)})
        fed.shutdown()
    report(outcomes)


@scenario
def tls(party: str) -> None:
    directory = os.environ["TLS_DIR"]
    cert = os.environ.get("TLS_CERT", party)
    tls_config = {
        "ca_cert": os.path.join(directory, "ca.pem"),
        "cert": os.path.join(directory, f"{cert}.pem"),
        "key": os.path.join(directory, f"{cert}.key"),
    }
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fed.init(addresses=ADDRESSES, party=party, config=comm(), tls_config=tls_config)
    o = g.party("bob").remote(f.party("alice").remote())
    report(
        {
            "value": fed.get(o),
            "warnings": [type(c.message).__name__ for c in caught],
            "tls": get_cluster_config().tls_config == tls_config,
        }
    )
    fed.shutdown()


def both_up() -> None:
    """Each party has a value from the other: both are past ``fed.init`` and connected."""
    fed.get([f.party("alice").remote(), f.party("bob").remote()])


@scenario
def sigint_mid_get(party: str) -> None:
    """alice is interrupted once both parties are up (bob may still be finishing ``both_up``)."""

    @fed.remote
    def slow() -> int:
        time.sleep(60)
        return 1

    fed.init(addresses=ADDRESSES, party=party, config=comm(expose_error_trace=True))
    try:
        both_up()
        o = slow.party("bob").remote()
        print("WAITING", flush=True)
        fed.get(o)
    except Exception as exc:
        report(describe(exc))
    fed.shutdown()


@scenario
def used_port(party: str) -> None:
    import socket

    host, port = ADDRESSES[party].rsplit(":", 1)
    with socket.socket() as taken:
        taken.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        taken.bind((host, int(port)))
        taken.listen()
        try:
            fed.init(addresses=ADDRESSES, party=party, config=comm())
        except Exception as exc:
            report({"type": type(exc).__name__, "message": str(exc), "address": ADDRESSES[party]})
    fed.init(addresses=ADDRESSES, party=party, config=comm())
    report({"second_init": get_cluster_config().current_party})
    fed.shutdown()


@scenario
def forgot_shutdown(party: str) -> None:
    fed.init(addresses=ADDRESSES, party=party, config=comm())
    o = g.party("bob").remote(f.party("alice").remote())
    report({"value": fed.get(o)})


@scenario
def uncaught_error(party: str) -> None:
    """alice's program fails once both parties are up; bob learns it wherever it is."""
    fed.init(addresses=ADDRESSES, party=party, config=comm(expose_error_trace=True))
    if party == "alice":
        both_up()
        raise MyError("alice's program failed")
    try:
        both_up()
        fed.get(g.party("alice").remote(f.party("bob").remote()))
    except Exception as exc:
        report(describe(exc))
    fed.shutdown()


if __name__ == "__main__":
    SCENARIOS[sys.argv[1]](sys.argv[2])
