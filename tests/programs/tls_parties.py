"""One party of the TLS identity tests (tests/test_tls_identity.py), run as its own process.

``python tls_parties.py PARTY`` with, in the environment:

* ``SILO_TEST_ADDRESSES``: ``{party: "host:port"}`` as JSON;
* ``SILO_TEST_TLS``: this party's ``tls_config`` as JSON (absent: plain text);
* ``SILO_TEST_DIR``: a directory where the party writes ``PARTY.ready`` once the object it
  awaits is scheduled, and where ``go`` appears when the test has finished its attacks.

alice's call waits for ``go`` and returns 42; every party gets it and prints ``RESULT 42``. So
bob awaits object (1, 0) from alice while the test attacks bob's listener.

``idle`` (``program: tls_parties.py:idle`` in a federation file) sends nothing and returns after
a second and a half: long enough for its links to dial every peer a few times.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from pathlib import Path

import silo


@silo.remote
def produce(go: str) -> int:
    deadline = time.monotonic() + 30
    while not os.path.exists(go):
        if time.monotonic() > deadline:
            raise TimeoutError("the test never said go")
        time.sleep(0.02)
    return 42


async def main(party: str) -> None:
    directory = Path(os.environ["SILO_TEST_DIR"])
    tls = os.environ.get("SILO_TEST_TLS")
    async with silo.init(
        json.loads(os.environ["SILO_TEST_ADDRESSES"]),
        party,
        job_name="identity",
        config={"cross_silo_comm": {"timeout_in_ms": 20000}},
        tls_config=json.loads(tls) if tls else None,
        logging_level="warning",
    ):
        value = produce.party("alice").remote(str(directory / "go"))
        (directory / f"{party}.ready").touch()
        print("RESULT", json.dumps(await silo.get(value)), flush=True)


async def idle() -> None:
    await asyncio.sleep(1.5)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
