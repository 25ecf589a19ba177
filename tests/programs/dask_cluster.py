"""A Dask ``LocalCluster`` for the tests, in a process of its own.

Importing ``distributed`` installs tblib's pickling of exceptions in the whole process, which
the test process must not get (other tests pickle exceptions). ``allowed-failures`` is 0, so a
task that kills its worker fails at once instead of being retried on the other worker.

Prints the scheduler's address, then answers lines on stdin: ``pids`` prints the workers' pids
as a JSON list, ``wait`` waits for 2 workers and prints ``ok``. End of input closes the cluster.
"""

from __future__ import annotations

import json
import os
import sys

import dask
import distributed


def main() -> None:
    with dask.config.set({"distributed.scheduler.allowed-failures": 0}):
        cluster = distributed.LocalCluster(
            n_workers=2, processes=True, threads_per_worker=1, dashboard_address=":0"
        )
    client = distributed.Client(cluster, timeout=20)
    try:
        print(cluster.scheduler_address, flush=True)
        for line in sys.stdin:
            if line.strip() == "pids":
                print(json.dumps(sorted(client.run(os.getpid).values())), flush=True)
            elif line.strip() == "wait":
                client.wait_for_workers(2, timeout=30)
                print("ok", flush=True)
    finally:
        client.close(timeout=5)
        cluster.close(timeout=5)


if __name__ == "__main__":
    main()
