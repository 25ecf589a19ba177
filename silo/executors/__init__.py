"""Where a party's plain functions and actors run: threads, processes, or a Dask cluster.

:func:`create_executor` makes and starts the executor ``config["executor"]`` names (see
:mod:`silo.executors.base` for the interface). The Dask backend is imported only when asked for,
so ``import silo`` never imports Dask.
"""

from __future__ import annotations

import os

from ..config import ExecutorConfig
from .base import ActorWorker, Executor, MethodRef, Runner
from .processes import ProcessExecutor
from .threads import ThreadExecutor

__all__ = ["ActorWorker", "Executor", "MethodRef", "Runner", "create_executor"]


async def create_executor(config: ExecutorConfig, party: str) -> Executor:
    """The started executor for ``config``; raises WorkerLostError if a cluster is unreachable."""
    executor: Executor
    if config.kind == "threads":
        executor = ThreadExecutor(party, config.max_workers or min(32, (os.cpu_count() or 1) + 4))
    elif config.kind == "processes":
        executor = ProcessExecutor(party, config.max_workers or os.cpu_count() or 1)
    else:
        from .dask import DaskExecutor

        assert config.address is not None
        executor = DaskExecutor(party, config.address, config.n_workers)
    await executor.start()
    return executor
