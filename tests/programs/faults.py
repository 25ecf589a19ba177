"""The program run by every party of a fault-injection test (tests/faultmatrix.py).

Usage: ``faults.py PARTY`` with the environment:

* ``SILO_TEST_ADDRESSES``: this process's addresses (its own real one, peers' through a proxy);
* ``PARTIES``: the parties of the rounds, comma-separated (default: the addresses' keys);
* ``JOB``, ``TIMEOUT_MS``, ``HEARTBEAT_MS`` (empty: key not given), ``TLS_DIR`` (optional);
* ``MODE``: ``rounds`` (default) or ``bulk``; ``ROUNDS``, ``BIG_EVERY``, ``BIG_BYTES``, ``PACE_S``;
* ``RAISE_AT`` (``PARTY:ROUND``: that party's program raises after that round);
* ``LEAVE_AT`` (``PARTY:ROUND``: that party leaves cleanly after that round; the others go on
  without it).

Each round, every party makes a value (``BIG_BYTES`` of numbers every ``BIG_EVERY`` rounds) and
every party gets all of them, so each party's pending get depends on every peer directly. Each
value says which round and party made it, and every party checks what it got: a value lost, from
the wrong round, or corrupt fails the program. It prints, with ``time.monotonic()`` (one clock
for every process of the machine):

* ``READY <t>`` when ``init`` returned, ``ROUND <r> <t>`` when round ``r``'s get returned,
  ``FAULT <t>`` just before raising for ``RAISE_AT``;
* ``RESULT <json>`` at the end: ``{"ok": true, "rounds", "total", "t"}``, or
  ``{"ok": false, "error": {type, mro, src, str}, "t"}`` for the exception a get raised;
  then the program re-raises it, so a failed party exits with status 1.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

import silo

ADDRESSES: dict[str, str] = json.loads(os.environ["SILO_TEST_ADDRESSES"])
PARTIES = [p for p in os.environ.get("PARTIES", ",".join(ADDRESSES)).split(",") if p]


def _env_int(name: str, default: int) -> int:
    return int(os.environ.get(name) or default)


def _at(name: str) -> tuple[str, int] | None:
    raw = os.environ.get(name, "")
    if not raw:
        return None
    party, _, round_no = raw.partition(":")
    return party, int(round_no)


def say(*words: object) -> None:
    print(*words, flush=True)


def report(value: dict[str, Any]) -> None:
    say("RESULT " + json.dumps(value))


def describe(exc: BaseException) -> dict[str, Any]:
    return {
        "type": type(exc).__name__,
        "mro": [c.__name__ for c in type(exc).__mro__],
        "src": getattr(exc, "src_party", None),
        "str": str(exc),
    }


@silo.remote
def make(round_no: int, party: str, nbytes: int, pace: float) -> dict[str, Any]:
    """Round ``round_no``'s value of ``party``, after ``pace`` seconds (so that the program is
    almost always inside ``silo.get`` when a fault comes)."""
    time.sleep(pace)
    data = np.arange(nbytes // 8, dtype=np.int64) + round_no * 1000 + len(party)
    return {
        "round": round_no,
        "party": party,
        "data": data,
        "digest": hashlib.sha256(data.tobytes()).hexdigest(),
    }


def check(value: dict[str, Any], round_no: int, party: str, nbytes: int) -> int:
    """The value's contribution to the total; raises AssertionError for a wrong value."""
    data = value["data"]
    assert (value["round"], value["party"]) == (round_no, party), (value["round"], value["party"])
    assert data.nbytes == nbytes // 8 * 8, (data.nbytes, nbytes)
    assert hashlib.sha256(data.tobytes()).hexdigest() == value["digest"], "corrupt value"
    assert int(data[0]) == round_no * 1000 + len(party), "value from another round"
    return round_no * 1000 + len(party)


def config() -> dict[str, Any]:
    comm: dict[str, Any] = {"timeout_in_ms": _env_int("TIMEOUT_MS", 2500)}
    if os.environ.get("HEARTBEAT_MS", "250"):
        comm["heartbeat_interval_ms"] = _env_int("HEARTBEAT_MS", 250)
    return {"cross_silo_comm": comm}


def tls(party: str) -> dict[str, str] | None:
    directory = os.environ.get("TLS_DIR")
    if not directory:
        return None
    base = Path(directory)
    return {
        "ca_cert": str(base / "ca.pem"),
        "cert": str(base / f"{party}.pem"),
        "key": str(base / f"{party}.key"),
    }


async def rounds(party: str) -> dict[str, Any]:
    count = _env_int("ROUNDS", 30)
    big_every = _env_int("BIG_EVERY", 5)
    big_bytes = _env_int("BIG_BYTES", 1 << 20)
    pace = float(os.environ.get("PACE_S") or 0.05)
    raise_at = _at("RAISE_AT")
    leave_at = _at("LEAVE_AT")
    total = done = 0
    for r in range(count):
        members = PARTIES
        if leave_at is not None and r > leave_at[1]:
            if party == leave_at[0]:
                break
            members = [p for p in PARTIES if p != leave_at[0]]
        nbytes = big_bytes if big_every and r % big_every == big_every - 1 else 64
        values = [make.party(p).remote(r, p, nbytes, pace) for p in members]
        got = await silo.get(values)
        total += sum(check(v, r, p, nbytes) for v, p in zip(got, members, strict=True))
        done += 1
        say("ROUND", r, time.monotonic())
        if raise_at == (party, r):
            say("FAULT", time.monotonic())
            raise RuntimeError(f"{party}'s program failed after round {r}")
    return {"rounds": done, "total": total}


async def bulk(party: str) -> dict[str, Any]:
    """The first party makes one ``BIG_BYTES`` value; every party gets it."""
    nbytes = _env_int("BIG_BYTES", 64 << 20)
    value = await silo.get(make.party(PARTIES[0]).remote(0, PARTIES[0], nbytes, 0.0))
    say("ROUND", 0, time.monotonic())
    return {"rounds": 1, "total": check(value, 0, PARTIES[0], nbytes)}


async def main(party: str) -> None:
    async with silo.init(
        ADDRESSES,
        party,
        job_name=os.environ.get("JOB", "faults"),
        config=config(),
        tls_config=tls(party),
        logging_level=os.environ.get("LOG_LEVEL", "warning"),
    ):
        say("READY", time.monotonic())
        try:
            outcome = await (bulk(party) if os.environ.get("MODE") == "bulk" else rounds(party))
        except silo.SiloError as exc:
            report({"ok": False, "error": describe(exc), "t": time.monotonic()})
            raise
        report({"ok": True, **outcome, "t": time.monotonic()})


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
