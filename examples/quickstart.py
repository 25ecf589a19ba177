"""Quickstart: two parties, an actor in each, and a function that adds their results.

Run every party on this machine (one process each, output prefixed with the party name)::

    python -m silo run examples/quickstart.yaml

or one party per terminal (or machine)::

    python -m silo run examples/quickstart.yaml --party alice
    python -m silo run examples/quickstart.yaml --party bob

or both in one process, without the YAML::

    python examples/quickstart.py

Both parties print ``5``.
"""

from __future__ import annotations

import asyncio

import silo


@silo.remote
class Counter:
    def __init__(self, value: int) -> None:
        self.value = value

    def inc(self, n: int) -> int:
        self.value += n
        return self.value


@silo.remote
def add(a: int, b: int) -> int:
    return a + b


async def main(party: str) -> int:
    """Runs in every party, inside a runtime the CLI (or ``silo.simulate``) has started."""
    a = Counter.party("alice").remote(1)
    b = Counter.party("bob").remote(1)
    total = add.party("bob").remote(a.inc.remote(1), b.inc.remote(2))
    value: int = await silo.get(total)
    print(f"{party}: {value}")
    return value


if __name__ == "__main__":
    print(asyncio.run(silo.simulate(main, ["alice", "bob"])))
