"""The ``dask`` executor: a party's calls on a Dask distributed cluster.

One asynchronous ``distributed.Client`` per runtime, on the party's loop. A plain call is one
Dask task (``pure=False``: every call runs, none is deduplicated); an actor is a Dask actor
(``actor=True``), whose methods the party awaits one at a time. The address ``"local"`` starts
a ``LocalCluster`` of ``n_workers`` processes owned by the runtime; any other address is a
cluster the party does not own: :meth:`DaskExecutor.aclose` closes the client, never that
cluster.

Failures: a call's exception is raised as it is; a task whose worker died (Dask's
``KilledWorker``), a future cancelled because the scheduler went away, or an actor whose worker
cannot be reached raises :class:`~silo.errors.WorkerLostError`. Only this module imports Dask.
"""

from __future__ import annotations

import asyncio
import functools
import uuid
from collections.abc import Callable, Mapping
from typing import Any

import distributed
from distributed.scheduler import KilledWorker

from ..errors import WorkerLostError
from .base import ActorWorker, Executor, MethodRef

__all__ = ["DaskExecutor"]

_CONNECT_TIMEOUT_S = 10.0
_CLOSE_TIMEOUT_S = 3.0
_UNREACHABLE_ACTOR = "Unable to contact Actor's worker"


def _name(fn: Callable[..., Any]) -> str:
    name = getattr(fn, "__qualname__", None) or type(fn).__name__
    return str(name).replace("<", "").replace(">", "")


def _lost(what: str, exc: BaseException) -> WorkerLostError:
    return WorkerLostError(f"the Dask cluster lost {what}: {type(exc).__name__}: {exc}")


class _DaskActor(ActorWorker):
    """A Dask actor: the instance lives on one worker, which runs its methods."""

    def __init__(self, owner: DaskExecutor, name: str) -> None:
        self._owner = owner
        self._name = name
        self._future: distributed.Future[Any] | None = None
        self._proxy: Any = None
        self._cls: Callable[..., Any] | None = None

    async def construct(
        self, cls: Callable[..., Any], args: tuple[Any, ...], kwargs: Mapping[str, Any]
    ) -> None:
        self._cls = cls
        build = functools.partial(cls, *args, **kwargs) if args or kwargs else cls
        self._future = self._owner.client.submit(
            build, actor=True, pure=False, key=self._owner.key(cls)
        )
        self._proxy = await self._owner.settle(self._future, f"actor {self._name}")

    def method(self, name: str) -> Callable[..., Any]:
        assert self._cls is not None, "method() before construct()"
        return MethodRef(self._cls, name)

    async def run(
        self, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: Mapping[str, Any]
    ) -> Any:
        assert isinstance(fn, MethodRef)
        if self._proxy is None:
            raise WorkerLostError(f"actor {self._name} is closed")
        try:
            return await getattr(self._proxy, fn.name)(*args, **kwargs)
        except OSError as exc:
            if str(exc) == _UNREACHABLE_ACTOR:
                raise _lost(
                    f"the worker of actor {self._name} running {fn.__qualname__}", exc
                ) from None
            raise
        except RuntimeError as exc:
            if "Worker holding Actor was lost" in str(exc):
                raise _lost(f"the worker of actor {self._name}", exc) from None
            raise

    def close(self) -> None:
        self._proxy = None
        if self._future is not None:
            self._future.release()
            self._future = None


class DaskExecutor(Executor):
    """Calls on the cluster at ``address``, or on a ``LocalCluster`` it starts (``"local"``)."""

    kind = "dask"

    def __init__(self, party: str, address: str, n_workers: int) -> None:
        self._party = party
        self._address = address
        self._n_workers = n_workers
        self._client: distributed.Client | None = None
        self._cluster: distributed.LocalCluster | None = None
        self._closed = False

    @property
    def client(self) -> distributed.Client:
        if self._client is None:
            raise WorkerLostError(f"the Dask client of {self._party} is closed")
        return self._client

    async def start(self) -> None:
        address: Any = self._address
        try:
            if self._address == "local":
                self._cluster = await distributed.LocalCluster(
                    n_workers=self._n_workers,
                    threads_per_worker=1,
                    processes=True,
                    dashboard_address=":0",
                    asynchronous=True,
                )
                address = self._cluster
            self._client = await asyncio.wait_for(
                distributed.Client(address, asynchronous=True, timeout=_CONNECT_TIMEOUT_S),
                _CONNECT_TIMEOUT_S + 1,
            )
        except (OSError, asyncio.TimeoutError) as exc:
            await self.aclose()
            raise WorkerLostError(
                f"cannot reach the Dask scheduler at {self._address}: {type(exc).__name__}: {exc}"
            ) from None

    def key(self, fn: Callable[..., Any]) -> str:
        """A unique task key that names the call and the party."""
        return f"silo-{self._party}-{_name(fn)}-{uuid.uuid4().hex}"

    async def settle(self, future: distributed.Future[Any], what: str) -> Any:
        """The future's result; a lost worker or scheduler becomes WorkerLostError."""
        try:
            return await future
        except KilledWorker as exc:
            raise _lost(f"the worker running {what}", exc) from None
        except BaseException as exc:
            # Dask cancels every future when the scheduler goes away (a CancelledError); our
            # own cancellation leaves the future pending and is raised as it is.
            if future.status == "cancelled":
                raise _lost(f"the scheduler (or the task) running {what}", exc) from None
            raise
        finally:
            future.release()

    async def run(
        self, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: Mapping[str, Any]
    ) -> Any:
        task = functools.partial(fn, *args, **kwargs) if args or kwargs else fn
        future = self.client.submit(task, pure=False, key=self.key(fn))
        return await self.settle(future, _name(fn))

    def actor(self, name: str) -> ActorWorker:
        return _DaskActor(self, name)

    async def aclose(self) -> None:
        """Close the client, and the cluster only if this executor started it; bounded."""
        if self._closed:
            return
        self._closed = True
        client, self._client = self._client, None
        cluster, self._cluster = self._cluster, None
        if client is not None:
            await _bounded(client.close(timeout=_CLOSE_TIMEOUT_S))
        if cluster is not None:
            await _bounded(cluster.close(timeout=_CLOSE_TIMEOUT_S))


async def _bounded(closing: Any) -> None:
    """Await ``closing`` for at most a few seconds, then leave it; never raises.

    ``asyncio.wait`` rather than ``wait_for``: a close that ignores its cancellation (a hung
    scheduler) must not hold the caller either.
    """
    task = asyncio.ensure_future(closing)
    task.add_done_callback(_retrieve)
    await asyncio.wait({task}, timeout=_CLOSE_TIMEOUT_S + 1)
    if not task.done():
        task.cancel()


def _retrieve(task: asyncio.Future[Any]) -> None:
    if not task.cancelled():
        task.exception()
