"""A 2-party job attacked by tests/test_fuzz_live.py while it works.

Usage: ``fuzz_target.py PARTY`` with ``SILO_TEST_ADDRESSES`` (JSON), ``SILO_FUZZ_STOP`` (a path:
the job goes on with rounds until it exists) and optionally ``SILO_FUZZ_TLS`` (JSON
``{"ca_cert", "cert", "key"}`` with ``{party}`` in the paths); it runs on uvloop unless
``SILO_UVLOOP=0``. Each round moves a small array and,
every fourth round, one over 4 MiB (the HTTP data path) from each party to bob and back; alice
decides when to stop, so both run the same number of rounds. Prints ``READY`` after the first
round and ``RESULT {"rounds": n, "bad": [...]}`` at the end (``bad``: rounds whose result was not
the known one).
"""

from __future__ import annotations

import json
import os
import sys

import numpy as np

import silo
import silo.loop

ADDRESSES: dict[str, str] = json.loads(os.environ["SILO_TEST_ADDRESSES"])
STOP = os.environ["SILO_FUZZ_STOP"]
TLS = os.environ.get("SILO_FUZZ_TLS")
MIN_ROUNDS = 4
MAX_ROUNDS = 3000
BIG = 600_000


@silo.remote
def make(value: float, n: int) -> np.ndarray:
    return np.full(n, value)


@silo.remote
def total(a: np.ndarray, b: np.ndarray) -> float:
    return float(a.sum() + b.sum())


@silo.remote
def go_on(rounds: int) -> bool:
    return rounds < MIN_ROUNDS or (rounds < MAX_ROUNDS and not os.path.exists(STOP))


async def main(party: str) -> None:
    tls = None if TLS is None else {k: v.format(party=party) for k, v in json.loads(TLS).items()}
    config = {"cross_silo_comm": {"timeout_in_ms": 3000}}
    async with silo.init(
        ADDRESSES, party, job_name="fuzz", config=config, tls_config=tls, logging_level="error"
    ):
        rounds = 0
        bad: list[int] = []
        while await silo.get(go_on.party("alice").remote(rounds)):
            n = BIG if rounds % 4 == 1 else 1000
            a = make.party("alice").remote(float(rounds), n)
            b = make.party("bob").remote(1.0, n)
            result = await silo.get(total.party("bob").remote(a, b))
            if result != n * (rounds + 1.0):
                bad.append(rounds)
            if rounds == 1:
                print("READY", flush=True)
            rounds += 1
        print("RESULT " + json.dumps({"rounds": rounds, "bad": bad}), flush=True)


if __name__ == "__main__":
    silo.loop.run(main(sys.argv[1]))
