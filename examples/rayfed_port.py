"""A RayFed program ported to silo: only the imports changed, and ray.init/ray.shutdown went.

The RayFed original began with::

    import fed
    import ray
    from fed.exceptions import FedRemoteError
    ...
    ray.init(address="local")
    fed.init(addresses=ADDRESSES, party=party, config=CONFIG)
    ...
    fed.shutdown()
    ray.shutdown()

Everything else below is the RayFed program as it was: synchronous, with ``fed.get`` called
inside an ordinary helper function, RayFed's configuration keys (``timeout_ms``,
``grpc_retry_policy`` in gRPC's form) and RayFed's error handling.

Run one party per terminal, as with RayFed::

    python examples/rayfed_port.py alice
    python examples/rayfed_port.py bob

or both at once on this machine (each party its own process, free ports chosen)::

    python examples/rayfed_port.py
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

from silo import fed
from silo.fed.exceptions import FedRemoteError

ADDRESSES = {"alice": "127.0.0.1:11010", "bob": "127.0.0.1:11011"}
CONFIG = {
    "cross_silo_comm": {
        "timeout_ms": 20 * 1000,
        "expose_error_trace": True,
        "grpc_retry_policy": {
            "maxAttempts": 5,
            "initialBackoff": "0.1s",
            "maxBackoff": "1s",
            "backoffMultiplier": 2,
            "retryableStatusCodes": ["UNAVAILABLE"],
        },
    },
}


@fed.remote
class MyActor:
    def __init__(self, value):
        self.value = value

    def inc(self, num):
        self.value = self.value + num
        return self.value


@fed.remote
def aggregate(val1, val2):
    return val1 + val2


@fed.remote
def check_record(record):
    if record < 0:
        raise ValueError(f"record {record} is negative")
    return record


def mean_of(objects):
    """A library function: synchronous, it calls fed.get itself."""
    values = fed.get(objects)
    return sum(values) / len(values)


def main(party):
    fed.init(addresses=ADDRESSES, party=party, config=CONFIG, logging_level="warning")

    actor_alice = MyActor.party("alice").remote(1)
    actor_bob = MyActor.party("bob").remote(1)
    val_alice = actor_alice.inc.remote(1)
    val_bob = actor_bob.inc.remote(2)
    sum_val_obj = aggregate.party("bob").remote(val_alice, val_bob)
    result = fed.get(sum_val_obj)
    print(f"The result in party {party} is {result}")

    print(f"{party}: mean {mean_of([val_alice, val_bob, sum_val_obj])}")

    try:
        fed.get(check_record.party("alice").remote(-3))
    except FedRemoteError as e:
        print(f"{party}: FedRemoteError from {e.src_party}")
    except ValueError as e:
        print(f"{party}: ValueError {e}")

    fed.shutdown()


def _run_every_party():
    """Start one process per party on free loopback ports; exit non-zero if any failed."""
    socks = [socket.socket() for _ in ADDRESSES]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    addresses = {p: f"127.0.0.1:{port}" for p, port in zip(ADDRESSES, ports, strict=True)}
    for s in socks:
        s.close()
    env = {**os.environ, "RAYFED_PORT_ADDRESSES": json.dumps(addresses)}
    procs = [
        subprocess.Popen([sys.executable, __file__, party], env=env, stdout=subprocess.PIPE)
        for party in addresses
    ]
    # Each party's lines are printed together once it is done, so two parties' prints never mix.
    codes = []
    for proc in procs:
        out, _ = proc.communicate()
        sys.stdout.write(out.decode())
        codes.append(proc.returncode)
    return max(codes)


if __name__ == "__main__":
    if len(sys.argv) == 1:
        sys.exit(_run_every_party())
    ADDRESSES = json.loads(os.environ.get("RAYFED_PORT_ADDRESSES", json.dumps(ADDRESSES)))
    main(sys.argv[1])
