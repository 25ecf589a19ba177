"""The listener's gate: a client that only claims a party's name cannot end that party's channel."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from aiohttp.test_utils import make_mocked_request

from silo.peers import LinkState, Peers
from silo.transport.gate import Gate

HEADERS = {"X-Silo-Job": "other-job", "X-Silo-Party": "alice", "X-Silo-Protocol": "1"}


class _Trust:
    """Certifies ``certified`` for every connection (what PeerTrust answers, without TLS)."""

    def __init__(self, certified: str) -> None:
        self.certified = certified

    def client_refusal(self, ssl_object: Any, claimed: str) -> str | None:
        if claimed == self.certified:
            return None
        return f"claims to come from {claimed!r}: its certificate names {self.certified!r}"


async def _refuse_for_a_while(gate: Gate) -> None:
    request = make_mocked_request("GET", "/", headers=HEADERS)
    for _ in range(4):
        answer = gate.refuse(request)
        assert answer is not None and answer.status == 409
        gate.note_refusal(request, answer)
        await asyncio.sleep(0.2)


def _gate(trust: _Trust | None) -> tuple[Gate, Peers]:
    peers = Peers({"alice"}, timeout_s=4.0, clock=time.monotonic)
    gate = Gate(
        party="bob",
        job="job",
        peers={"alice"},
        peer_table=peers,
        log=logging.LoggerAdapter(logging.getLogger("silo"), {}),
        trust=trust,  # type: ignore[arg-type]
        timeout_s=4.0,
    )
    return gate, peers


async def test_an_impostor_dialing_with_another_job_does_not_end_the_peer() -> None:
    gate, peers = _gate(_Trust(certified="carol"))
    await _refuse_for_a_while(gate)
    assert peers.state("alice") is not LinkState.REFUSED


async def test_the_peer_itself_dialing_with_another_job_ends_its_channel() -> None:
    gate, peers = _gate(_Trust(certified="alice"))
    await _refuse_for_a_while(gate)
    assert peers.state("alice") is LinkState.REFUSED
    assert "alice runs job 'other-job'" in peers.reason("alice")
