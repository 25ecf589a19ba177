"""One party's calls on its own Dask cluster: alice holds the records, bob scores them on Dask.

Run both parties on this machine (needs ``pip install silo[dask]``)::

    python -m silo run examples/dask_party.yaml

bob's ``executor`` in the YAML is ``{kind: dask, address: local, n_workers: 2}``: his runtime
starts a ``LocalCluster`` of two worker processes, runs each ``score`` call there as a Dask task
and the ``Tally`` actor as a Dask actor, and closes the cluster at the end. alice runs hers in
threads, as usual. The scores come back to bob's process, and silo sends them to alice.

Both parties print the total score and how many Dask worker processes did the scoring.
"""

from __future__ import annotations

import os

import silo


@silo.remote
def records(batch: int) -> list[int]:
    """alice's private records: one batch."""
    return [batch * 1000 + i for i in range(2000)]


@silo.remote
def score(batch: list[int]) -> dict[str, int]:
    """Pure-Python work; on bob's cluster each call runs in a Dask worker process."""
    total = 0
    for value in batch:
        total += (value * value) % 97
    return {"score": total, "pid": os.getpid()}


@silo.remote
class Tally:
    """A Dask actor in bob's cluster: the calls arrive one at a time, in order."""

    def __init__(self) -> None:
        self.total = 0
        self.seen = 0

    def add(self, scored: dict[str, int]) -> int:
        self.total += scored["score"]
        self.seen += 1
        return self.seen

    def result(self) -> dict[str, int]:
        return {"total": self.total, "seen": self.seen, "pid": os.getpid()}


async def main(party: str) -> dict[str, int]:
    scores = [score.party("bob").remote(records.party("alice").remote(b)) for b in range(6)]
    tally = Tally.party("bob").remote()
    for scored in scores:
        tally.add.remote(scored)
    summary: dict[str, int] = await silo.get(tally.result.remote())
    workers = {s["pid"] for s in await silo.get(scores)}
    print(
        f"{party}: total score {summary['total']} over {summary['seen']} batches, "
        f"scored by {len(workers)} Dask worker process(es)"
    )
    return summary
