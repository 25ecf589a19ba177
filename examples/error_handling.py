"""Error handling: a task fails in bob; alice learns it as ``silo.FedRemoteError``.

``load_records`` raises ``ValueError`` in bob. In bob, ``await silo.get(records)`` raises that
``ValueError`` itself (its own type: bob is where it began). ``total`` in alice needed
``records``, so alice got an error frame in its place: ``total`` does not run, its result fails
in turn, and ``await silo.get(result)`` raises ``FedRemoteError`` with ``src_party == "bob"``
(and, since the YAML sets ``expose_error_trace: true``, the remote type, message and traceback
in ``e.cause``). Neither party waits for a timeout.

Exit codes, with ``python -m silo run examples/error_handling.yaml``:

* bob's process exits 1 and prints the traceback of its ``ValueError``, then
  ``silo: party bob failed: ValueError: record 3 is corrupt``;
* alice's process exits 1 with ``silo: party alice failed: FedRemoteError occurred at bob ...``;
* the launcher prints ``silo: 2 of 2 parties failed: ...`` and exits 1.

A configuration error (say, a misspelt key in the YAML) exits 2 instead, and 0 means every
party succeeded.
"""

from __future__ import annotations

import asyncio

import silo


@silo.remote
def load_records(n: int) -> list[int]:
    records = list(range(n))
    if n > 3:
        raise ValueError("record 3 is corrupt")
    return records


@silo.remote
def total(records: list[int]) -> int:
    return sum(records)


async def main(party: str) -> int:
    records = load_records.party("bob").remote(5)
    result = total.party("alice").remote(records)
    try:
        value: int = await silo.get(records if party == "bob" else result)
    except silo.FedRemoteError as e:
        print(f"{party}: FedRemoteError from {e.src_party}: {e.cause.message if e.cause else e}")
        raise
    except ValueError as e:
        print(f"{party}: my own task failed: {e!r}")
        raise
    return value


if __name__ == "__main__":
    try:
        asyncio.run(silo.simulate(main, ["alice", "bob"]))
    except ValueError as e:
        print(f"simulate raised the origin's error: {e!r}")
