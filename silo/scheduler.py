"""The program's side of a party: issuing calls, creating actors, and ``get``.

Every party runs the same program, so every party issues every call, in the same order: the n-th
``.remote()`` gets sequence id n everywhere (:mod:`silo.graph`). What a party does with a call
depends on where it is pinned. Pinned here, the call waits for its inputs and runs
(:class:`~silo.execution.Execution`); pinned elsewhere, this party only pushes the inputs it owns
to the party that runs it (:class:`~silo.outbound.Outbound`). ``get`` pushes the owned values to
every peer and waits for the others.

Handles may be dropped on any thread (the garbage collector runs where it runs): releases are
handed to the loop thread; everything else runs on it.
"""

from __future__ import annotations

import asyncio
import itertools
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from .divergence import CallLog, check_not_nested
from .errors import GetTimeoutError, SiloError
from .execution import Execution
from .graph import FedObject, find_objects
from .inbound import Inbound
from .intake import Intake
from .objects import ObjectTable
from .outbound import Outbound
from .shutdown import ShutdownFuture, closed_error
from .waiting import SlowGets
from .wire import ObjectId

__all__ = ["Scheduler"]


class Scheduler:
    """Turns the program's calls into work here or pushes to peers."""

    def __init__(
        self,
        *,
        party: str,
        peers: Sequence[str],
        token: int,
        loop: asyncio.AbstractEventLoop,
        table: ObjectTable,
        call_log: CallLog,
        intake: Intake,
        execution: Execution,
        inbound: Inbound,
        outbound: Outbound,
        shutdown: ShutdownFuture,
        slow_gets: SlowGets,
    ) -> None:
        self._party = party
        self._peers = list(peers)
        self._token = token
        self._loop = loop
        self._loop_thread = threading.get_ident()
        self._table = table
        self._call_log = call_log
        self._intake = intake
        self._execution = execution
        self._inbound = inbound
        self._outbound = outbound
        self._shutdown = shutdown
        self._slow_gets = slow_gets
        self._seq = itertools.count(1)

    def _check_open(self) -> None:
        request = self._shutdown.requested
        if request is not None:
            raise closed_error(self._party, request)

    def _check_objects(self, objs: Sequence[FedObject]) -> None:
        for obj in objs:
            if obj._runtime_token != self._token:
                raise SiloError(
                    f"{obj!r} belongs to another silo runtime (one that was shut "
                    f"down, or another party's); it cannot be used here"
                )

    def _outputs(self, party: str, num_returns: int, call: str) -> list[FedObject]:
        """The output objects of the next call, named ``call`` (its fingerprint).

        Raises :class:`SiloError` inside a remote call (see :func:`check_not_nested`),
        :class:`RuntimeClosedError` once shut down.
        """
        check_not_nested(call)
        self._check_open()
        seq = next(self._seq)
        release = self._released
        outputs = [FedObject(party, seq, i, self._token, release) for i in range(num_returns)]
        for orphan in self._intake.issue(outputs):
            self._table.forget(orphan)
            self._call_log.forget(orphan)
        diverged = self._call_log.issue(seq, num_returns, call)
        if diverged is not None:
            self._inbound.diverged(diverged)
        return outputs

    def _place(
        self, party: str, args: tuple[Any, ...], kwargs: Mapping[str, Any]
    ) -> list[FedObject] | None:
        """The inputs of a call pinned to ``party``.

        If the call runs here, its inputs are awaited from now on and returned; otherwise the
        inputs this party owns are pushed to ``party`` and ``None`` is returned.
        """
        deps = find_objects(args, kwargs)
        self._check_objects(deps)
        if party != self._party:
            self._outbound.push_inputs(deps, party)
            return None
        for dep in deps:
            self._table.ask(dep)
        return deps

    def submit(
        self,
        party: str,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: Mapping[str, Any],
        num_returns: int,
    ) -> list[FedObject]:
        """Schedule a function call pinned to ``party``; returns its output objects at once."""
        outputs = self._outputs(party, num_returns, getattr(fn, "__qualname__", "function"))
        deps = self._place(party, args, kwargs)
        if deps is not None:
            futs = [self._table.future(o.id, party) for o in outputs]
            self._execution.run(fn, args, kwargs, deps, futs, outputs[0].seq)
        return outputs

    def create_actor(
        self, party: str, cls: type, args: tuple[Any, ...], kwargs: Mapping[str, Any]
    ) -> int:
        """Schedule the construction of an actor pinned to ``party``; returns its id."""
        actor_id = self._outputs(party, 1, cls.__qualname__)[0].seq
        deps = self._place(party, args, kwargs)
        if deps is not None:
            self._execution.create_actor(actor_id, cls, args, kwargs, deps)
        return actor_id

    def call_actor(
        self,
        party: str,
        actor_id: int,
        method: str,
        args: tuple[Any, ...],
        kwargs: Mapping[str, Any],
        num_returns: int,
        call: str = "",
    ) -> list[FedObject]:
        """Schedule ``method`` of an actor; ``call`` names it (``Class.method``) in frames."""
        outputs = self._outputs(party, num_returns, call or method)
        deps = self._place(party, args, kwargs)
        if deps is not None:
            futs = [self._table.future(o.id, party) for o in outputs]
            self._execution.call_actor(actor_id, method, args, kwargs, deps, futs)
        return outputs

    def kill_actor(self, party: str, actor_id: int) -> None:
        if party == self._party:
            self._execution.kill_actor(actor_id)

    async def get(self, objs: list[FedObject], timeout: float | None) -> list[Any]:
        """Values of ``objs``: pushes owned ones to every peer, waits for the others."""
        self._check_objects(objs)
        pushing = False
        for obj in objs:
            if obj.owner == self._party:
                for peer in self._peers:
                    pushing |= self._outbound.push(obj.id, peer)
        if pushing:
            # Let the pushes start waiting for their values before this program does: when a
            # value is ready, its pushes then go out before the program moves on.
            await asyncio.sleep(0)
        wait = self._slow_gets.begin(objs)
        try:
            if timeout is None:
                values = await self._table.resolve(objs)
                return [values[o.id] for o in objs]
            try:
                values = await asyncio.wait_for(self._table.resolve(objs), timeout)
            except asyncio.TimeoutError:
                missing = [o for o in objs if not self._table.future(o.id, o.owner).done()]
                raise GetTimeoutError(
                    f"silo.get timed out after {timeout} s waiting for "
                    f"{', '.join(map(repr, missing))}"
                ) from None
            return [values[o.id] for o in objs]
        finally:
            self._slow_gets.end(wait)

    def _on_loop(self, callback: Callable[[Any], None], arg: Any) -> bool:
        """Whether the caller is on the loop thread; if not, ``callback(arg)`` is handed to
        the loop (dropped if it is closed)."""
        if threading.get_ident() == self._loop_thread:
            return True
        if not self._loop.is_closed():
            try:
                self._loop.call_soon_threadsafe(callback, arg)
            except RuntimeError:
                pass
        return False

    def _released(self, object_id: ObjectId) -> None:
        """The program dropped its last handle to an object: its entry leaves the table once
        settled. Calls, pushes and gets that still need it hold the handle or the future."""
        if not self._on_loop(self._released, object_id) or self._loop.is_closed():
            return
        self._intake.release(object_id)
        entry = self._table.get(object_id)
        if entry is not None and not entry.future.done():
            entry.future.add_done_callback(lambda _: self._released(object_id))
            return
        self._call_log.forget(object_id)
        if entry is not None and self._shutdown.requested is None:
            self._table.remove(object_id)

    def release_actor(self, actor_id: int) -> None:
        """The program dropped its handle to an actor: no call can reach it any more, so it
        stops once the calls already queued have run, and leaves the actor table."""
        if not self._on_loop(self.release_actor, actor_id) or self._loop.is_closed():
            return
        if self._shutdown.requested is None:
            self._execution.finish_actor(actor_id)
