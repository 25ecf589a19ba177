"""Peer-loss detection: from a SIGKILL of bob to ``PeerUnavailableError`` in alice's ``get``.

Both parties meet on two tiny ``get`` (one value each way); then both issue a call pinned to
bob and alice waits for its result, while bob records ``time.monotonic_ns()``, prints it and
kills itself with SIGKILL (no goodbye, no closing handshake: the kernel resets its connections).
Alice records when her ``get`` raises. Measured with the default ``timeout_in_ms`` and with a
short one: a peer whose connection is reset is retried within ``timeout_in_ms`` (a brief outage
is not a failure), so detection takes about ``timeout_in_ms`` plus one heartbeat.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from typing import Any

import silo

from .harness import Figure, Settings, Spec, addresses, loop_name, run_parties
from .worker import RESULT_PREFIX

NAME = "peerloss"
SHORT_MS = 500
DEFAULT_MS = silo.CrossSiloCommConfig().timeout_in_ms


@silo.remote
def meet(i: int) -> int:
    return i


@silo.remote
def wait(seconds: float) -> int:
    time.sleep(seconds)
    return 0


async def party(
    party: str, addresses: dict[str, str], timeout_ms: int | None, uvloop: bool
) -> dict[str, Any]:
    config = {} if timeout_ms is None else {"cross_silo_comm": {"timeout_in_ms": timeout_ms}}
    detected = 0
    other: BaseException | None = None
    try:
        async with silo.init(
            addresses, party, job_name="bench-peerloss", config=config, logging_level="critical"
        ):
            await silo.get(meet.party("bob").remote(0))
            # Alice pushes this only from her own get, once she has bob's value above.
            await silo.get(meet.party("alice").remote(1))
            pending = wait.party("bob").remote(600.0)
            if party == "bob":
                killed = time.monotonic_ns()
                sys.stdout.write(RESULT_PREFIX + json.dumps({"killed_ns": killed}) + "\n")
                sys.stdout.flush()
                os.kill(os.getpid(), signal.SIGKILL)
            try:
                await silo.get(pending)
            except silo.PeerUnavailableError:
                detected = time.monotonic_ns()
    except silo.FedRemoteError as exc:
        other = exc
    if not detected:
        raise AssertionError(f"alice's get did not raise PeerUnavailableError, but {other!r}")
    return {"detected_ns": detected}


def one_run(settings: Settings, uvloop: bool, timeout_ms: int | None) -> float:
    """Seconds from bob's SIGKILL to alice's PeerUnavailableError, in one fresh pair."""
    addrs = addresses(["alice", "bob"])
    kwargs = {"addresses": addrs, "timeout_ms": timeout_ms}
    outcomes = run_parties(
        [
            Spec(p, "peer_loss", "party", {**kwargs, "party": p}, killed_ok=p == "bob")
            for p in ("alice", "bob")
        ],
        uvloop=uvloop,
        timeout=(timeout_ms or 60_000) / 1000 + 60,
        settings=settings,
        tag="peerloss",
    )
    alice, bob = (o.result for o in outcomes)
    return (alice["detected_ns"] - bob["killed_ns"]) / 1e9


def run(settings: Settings) -> list[Figure]:
    figures = []
    cases: list[tuple[str, int | None, int]] = [(f"timeout_in_ms={SHORT_MS}", SHORT_MS, 0)]
    if not settings.smoke:
        # The default waits a minute per run: measured once per loop.
        cases.append((f"default timeout_in_ms={DEFAULT_MS}", None, 1))
    for label, timeout_ms, runs in cases:
        for uvloop in settings.loops:
            samples = [
                one_run(settings, uvloop, timeout_ms) for _ in range(runs or settings.runs_for())
            ]
            figures.append(
                Figure(
                    NAME,
                    f"SIGKILL of bob -> PeerUnavailableError in alice ({label})",
                    loop_name(uvloop),
                    "s",
                    samples,
                    note="a reset connection is retried within timeout_in_ms, then the peer "
                    "is lost",
                )
            )
    return figures
