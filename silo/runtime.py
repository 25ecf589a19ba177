"""The per-party runtime: owns the loop wiring, the objects, the calls, the channel and shutdown.

Objects live in one table of futures keyed by ``(seq, index)``: a local call fills its outputs,
a frame from a peer fills the object it carries. A call pinned to this party starts as soon as
its inputs are there; a value this party owns is pushed to a peer at most once, when a call
placed there consumes it or when the program asks for it with ``get``.

Teardown lives in :mod:`silo.lifecycle`; this module is the running state.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Mapping
from typing import Any

from . import context, loophandler
from .actors import Actor
from .config import Address, Config, TLSConfig
from .divergence import CallLog, check_not_nested
from .errors import (
    ActorKilledError,
    FedRemoteError,
    GetTimeoutError,
    SendingFailure,
    SiloError,
)
from .execution import Execution, fail_all
from .graph import FedObject, find_objects
from .inbound import Inbound
from .intake import Admission, Intake
from .log import party_logger
from .loophandler import Dispatcher
from .outbound import Outbound
from .peers import Peers
from .shutdown import (
    Reason,
    ShutdownFuture,
    ShutdownRequest,
    closed_error,
    pending_error,
)
from .stats import Counters, Stats
from .tasks import TaskSupervisor
from .tracing import Tracing
from .transport import Transport
from .waiting import SlowGets
from .wire import ObjectId
from .workers import WorkerPool

__all__ = ["Runtime"]

_tokens = itertools.count(1)


class Runtime(Inbound, Outbound, Execution):
    """One party's runtime. Create with :func:`silo.init`; ``shutdown`` is idempotent."""

    def __init__(
        self,
        *,
        party: str,
        job: str,
        addresses: dict[str, Address],
        config: Config,
        tls: TLSConfig | None = None,
        sending_failure_handler: Callable[[SendingFailure], object] | None = None,
        sock: Any = None,
    ) -> None:
        self.party = party
        self.job = job
        self.addresses = addresses
        self.config = config
        self.comm = config.cross_silo_comm
        self.peers = [p for p in addresses if p != party]
        self.token = next(_tokens)
        self.log = party_logger(party, job)
        self._tls = tls
        self._sock = sock
        self._handler = sending_failure_handler
        self._seq = itertools.count(1)
        self._objects: dict[ObjectId, asyncio.Future[Any]] = {}
        self._owner_of: dict[ObjectId, str] = {}
        self.intake = Intake.for_limit(party, self.comm.messages_max_size_in_bytes)
        self._asked: set[ObjectId] = set()
        #: The name of this party's call behind each live object id (see silo.divergence).
        self.call_log = CallLog(party)
        self._pushed: set[tuple[ObjectId, str]] = set()
        self.tasks = TaskSupervisor(
            lambda: self.loop, lambda task, exc: loophandler.report(self, task, exc)
        )
        self._actors: dict[int, Actor] = {}
        #: The one source of truth for every peer's state, shared with the transport.
        self.peer_table = Peers(self.peers, timeout_s=self.comm.timeout_s, clock=time.monotonic)
        self.peer_table.subscribe(self.peer_over)
        #: Frames, bytes and calls (:mod:`silo.stats`), shared with the transport.
        self.counters = Counters(self.peers)
        self.tracing: Tracing | None = None
        self._slow_gets = SlowGets(self)
        self.sending_failures: list[SendingFailure] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread = 0
        self._pool: WorkerPool | None = None
        self._transport: Transport | None = None
        self._shutdown: ShutdownFuture | None = None
        self._teardown_task: asyncio.Task[None] | None = None
        self.main_task: asyncio.Task[Any] | None = None
        #: Set when the program has left ``async with silo.init(...)``: a signal then no longer
        #: cancels it.
        self.program_done = False
        self._coroutine_functions: dict[object, bool] = {}
        #: The loop's exception handler this runtime is registered with (see silo.loophandler).
        self.loop_handler: Dispatcher | None = None
        #: Called on the loop after the teardown when ``exit_on_sending_failure`` ends the
        #: process; ``None`` raises ``SystemExit(1)`` there. ``silo.fed`` sets its own, since its
        #: loop runs on a background thread where ``SystemExit`` would end only that thread.
        self.exit_process: Callable[[], None] | None = None

    # ------------------------------------------------------------------ lifecycle

    @property
    def closed(self) -> bool:
        return self._shutdown is not None and self._shutdown.requested is not None

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        assert self._loop is not None, "runtime not started"
        return self._loop

    @property
    def transport(self) -> Transport:
        assert self._transport is not None, "runtime not started"
        return self._transport

    @property
    def shutdown_request(self) -> ShutdownRequest | None:
        return self._shutdown.requested if self._shutdown else None

    async def start(self) -> None:
        """Listen, start connecting to peers, install handlers; honour the barrier if set."""
        from . import lifecycle

        loop = asyncio.get_running_loop()
        self._loop = loop
        self._loop_thread = threading.get_ident()
        self._shutdown = ShutdownFuture(loop)
        self._pool = WorkerPool(f"silo-{self.party}", min(32, (os.cpu_count() or 1) + 4))
        self.tracing = Tracing.create(self.party)
        self._transport = Transport(
            party=self.party,
            job=self.job,
            addresses=self.addresses,
            sink=self,
            comm=self.comm,
            log=self.log,
            peer_table=self.peer_table,
            tls=self._tls,
            sock=self._sock,
            counters=self.counters,
            tracing=self.tracing,
        )
        await self._transport.start()
        self.main_task = asyncio.current_task()
        self._shutdown.on_requested(self._begin_teardown)
        lifecycle.install_hooks(self)
        context.active_runtimes.add(self)
        self.log.info(
            "listening on %s; peers: %s",
            self.addresses[self.party],
            ", ".join(self.peers) or "none",
        )
        if self.config.barrier_on_initializing:
            await lifecycle.barrier(self)

    def _begin_teardown(self, request: ShutdownRequest) -> None:
        from . import lifecycle

        self._teardown_task = self.loop.create_task(
            lifecycle.teardown(self, request), name=f"silo-teardown-{self.party}"
        )

    def request_shutdown(
        self, reason: Reason, error: BaseException | None = None, detail: str = ""
    ) -> bool:
        """Ask for shutdown; the first request wins. Returns whether this one won."""
        assert self._shutdown is not None
        return self._shutdown.request(ShutdownRequest(reason, error, detail))

    async def shutdown(self) -> None:
        """Intended shutdown: flush pending sends, say goodbye, close. Idempotent.

        If another shutdown (error, signal, sending failure) came first, waits for that one.
        """
        if self._shutdown is None:
            return
        self.request_shutdown(Reason.INTENDED)
        await self._shutdown.wait_finished()

    async def fail(self, error: BaseException) -> None:
        """The program failed with ``error``: broadcast it to every peer and shut down."""
        assert self._shutdown is not None
        self.request_shutdown(Reason.PROGRAM_ERROR, error)
        await self._shutdown.wait_finished()

    def mark_finished(self) -> None:
        assert self._shutdown is not None
        self._shutdown.mark_finished()

    def stats(self) -> Stats:
        """A snapshot of this party's counters (:mod:`silo.stats`); callable at any time, also
        after shutdown."""
        return self.counters.snapshot(self.party)

    # ------------------------------------------------------------------ tasks

    def spawn(
        self,
        coro: Coroutine[Any, Any, Any] | Awaitable[Any],
        name: str,
        group: set[asyncio.Task[Any]] | None = None,
    ) -> asyncio.Task[Any]:
        """Start a runtime-owned task (:class:`~silo.tasks.TaskSupervisor`); its failure goes to
        the loop's exception handler, which asks :meth:`owns`."""
        return self.tasks.spawn(coro, name, group)

    def internal_error(self, exc: BaseException, what: str) -> None:
        """A runtime-owned task failed and nobody awaits it: broadcast and shut down."""
        self.log.error("%s: %r", what, exc, exc_info=exc)
        self.request_shutdown(Reason.PROGRAM_ERROR, exc, what)

    def owns(self, task_or_future: object) -> bool:
        return self.tasks.owns(task_or_future)

    @property
    def pending_calls(self) -> set[asyncio.Task[Any]]:
        return self.tasks.calls

    @property
    def pending_sends(self) -> set[asyncio.Task[Any]]:
        return self.tasks.sends

    @property
    def actor_tasks(self) -> set[asyncio.Task[Any]]:
        return self.tasks.actors

    @property
    def aux_tasks(self) -> set[asyncio.Task[Any]]:
        """Tasks the teardown lets finish (the user's async sending_failure_handler)."""
        return self.tasks.aux

    @property
    def actors(self) -> dict[int, Actor]:
        return self._actors

    @property
    def pool(self) -> WorkerPool:
        assert self._pool is not None
        return self._pool

    # ------------------------------------------------------------------ objects

    def _check_open(self) -> None:
        request = self.shutdown_request
        if request is not None:
            raise closed_error(self.party, request)

    def future(self, object_id: ObjectId, owner: str) -> asyncio.Future[Any]:
        """The future of an object, created on first use."""
        fut = self._objects.get(object_id)
        if fut is None:
            fut = self.loop.create_future()
            self._objects[object_id] = fut
            self._owner_of[object_id] = owner
            unavailable = self.unavailable(owner) if owner != self.party else None
            if unavailable is not None:
                fut.set_exception(unavailable)
            elif owner != self.party and self._stopped_receiving():
                fut.set_exception(self.shutdown_error())
        return fut

    def _stopped_receiving(self) -> bool:
        """After an error shutdown, or once a clean one is over, nothing more will arrive.

        During a clean shutdown the channel is still open: this party's own calls may still be
        waiting for their inputs, and those will come.
        """
        request = self.shutdown_request
        if request is None:
            return False
        assert self._shutdown is not None
        return request.reason.is_error or self._shutdown.finished

    def shutdown_error(self) -> BaseException:
        """What a pending get raises once the runtime has stopped (see
        :func:`silo.shutdown.pending_error`)."""
        return pending_error(self.party, self.shutdown_request)

    def objects(self) -> Mapping[ObjectId, asyncio.Future[Any]]:
        return self._objects

    def _check_objects(self, objs: Iterable[FedObject]) -> None:
        for obj in objs:
            if obj._runtime_token != self.token:
                raise SiloError(
                    f"{obj!r} belongs to another silo runtime (one that was shut "
                    f"down, or another party's); it cannot be used here"
                )

    # ------------------------------------------------------------------ calls

    def new_outputs(self, party: str, num_returns: int, call: str) -> list[FedObject]:
        """The output objects of the next call, named ``call`` (its fingerprint).

        Raises :class:`SiloError` inside a remote call (see :func:`check_not_nested`),
        :class:`RuntimeClosedError` once shut down.
        """
        check_not_nested(f"{call}.remote()")
        self._check_open()
        seq = next(self._seq)
        release = self._released
        outputs = [FedObject(party, seq, i, self.token, release) for i in range(num_returns)]
        for orphan in self.intake.issue(outputs):
            self._forget(orphan)
        diverged = self.call_log.issue(seq, num_returns, call)
        if diverged is not None:
            self.diverged(diverged)
        return outputs

    def admit(self, src: str, object_id: ObjectId, nbytes: int) -> Admission:
        """Whether to keep what a frame from ``src`` carries for ``object_id`` (see
        :mod:`silo.intake`): values for ids this party will never use are not kept."""
        return self.intake.admit(src, object_id, nbytes, known=object_id in self._objects)

    def _forget(self, object_id: ObjectId) -> None:
        """Drop an entry nothing can ask for (a peer pushed an id no call here has)."""
        fut = self._objects.pop(object_id, None)
        self._owner_of.pop(object_id, None)
        self.call_log.forget(object_id)
        if fut is not None and fut.done() and not fut.cancelled():
            fut.exception()

    def _released(self, object_id: ObjectId) -> None:
        """The program dropped its last handle to an object: forget the value once complete.

        Calls, pushes and gets that still need it hold the handle or the future themselves.
        """
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        if threading.get_ident() != self._loop_thread:
            loop.call_soon_threadsafe(self._released, object_id)
            return
        fut = self._objects.get(object_id)
        if fut is None:
            # Never in this party's table (a call that neither runs here nor is consumed or
            # asked for here), so never pushed either: nothing per peer to forget.
            self.call_log.forget(object_id)
            return
        if fut.done():
            self.call_log.forget(object_id)
            for peer in self.peers:
                self._pushed.discard((object_id, peer))
        if self.shutdown_request is not None:
            return
        if not fut.done():
            fut.add_done_callback(lambda _: self._released(object_id))
            return
        self.warn_if_unasked(object_id, fut)
        del self._objects[object_id]
        self._owner_of.pop(object_id, None)
        self._asked.discard(object_id)

    def warn_if_unasked(self, object_id: ObjectId, fut: asyncio.Future[Any]) -> None:
        """A call of this party failed and nobody asked for its result: say so (once the object
        is released, or at shutdown). Marks the exception retrieved."""
        exc = None if fut.cancelled() else fut.exception()
        if (
            exc is not None
            and not isinstance(exc, FedRemoteError)
            and self._owner_of.get(object_id) == self.party
            and object_id not in self._asked
        ):
            self.log.warning("object %s failed and nobody asked for it: %r", object_id, exc)

    def submit(
        self,
        party: str,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: Mapping[str, Any],
        num_returns: int,
    ) -> list[FedObject]:
        """Schedule a function call pinned to ``party``; returns its output objects at once."""
        outputs = self.new_outputs(party, num_returns, getattr(fn, "__qualname__", "function"))
        deps = self._place(party, args, kwargs)
        if deps is not None:
            futs = [self.future(o.id, party) for o in outputs]
            self.spawn(
                self.execute(fn, args, kwargs, deps, futs, self.pool, seq=outputs[0].seq),
                f"silo-call-{getattr(fn, '__name__', 'fn')}-{outputs[0].seq}",
            )
        return outputs

    def create_actor(
        self, party: str, cls: type, args: tuple[Any, ...], kwargs: Mapping[str, Any]
    ) -> int:
        """Schedule the construction of an actor pinned to ``party``; returns its id."""
        actor_id = self.new_outputs(party, 1, cls.__qualname__)[0].seq
        deps = self._place(party, args, kwargs)
        if deps is not None:
            actor = Actor(
                cls=cls,
                name=f"{cls.__name__}#{actor_id}",
                execute=self.execute,
                spawn=lambda coro, name: self.spawn(coro, name, self.tasks.actors),
            )
            self._actors[actor_id] = actor
            actor.task.add_done_callback(lambda _: self._actors.pop(actor_id, None))
            actor.construct(args, kwargs, deps)
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
        outputs = self.new_outputs(party, num_returns, call or method)
        deps = self._place(party, args, kwargs)
        if deps is not None:
            futs = [self.future(o.id, party) for o in outputs]
            actor = self._actors.get(actor_id)
            if actor is None:
                # Created here (every party issues the same calls) and since stopped by kill.
                killed = ActorKilledError(f"actor #{actor_id} was killed; cannot run .{method}")
                fail_all(futs, killed)
            else:
                actor.call(method, args, kwargs, deps, futs)
        return outputs

    def release_actor(self, actor_id: int) -> None:
        """The program dropped its handle to an actor: no call can reach it any more, so it
        stops once the calls already queued have run, and leaves the actor table."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        if threading.get_ident() != self._loop_thread:
            loop.call_soon_threadsafe(self.release_actor, actor_id)
            return
        actor = self._actors.get(actor_id)
        if actor is not None and self.shutdown_request is None:
            actor.finish()

    def _place(
        self, party: str, args: tuple[Any, ...], kwargs: Mapping[str, Any]
    ) -> list[FedObject] | None:
        """The inputs of a call pinned to ``party``.

        If the call runs here, its inputs are awaited from now on and returned; otherwise the
        inputs this party owns are pushed to ``party`` and ``None`` is returned.
        """
        deps = find_objects(args, kwargs)
        self._check_objects(deps)
        if party != self.party:
            self._push_inputs(deps, party)
            return None
        for dep in deps:
            self._asked.add(dep.id)
            self.future(dep.id, dep.owner)
        return deps

    def kill_actor(self, party: str, actor_id: int) -> None:
        if party == self.party and actor_id in self._actors:
            self._actors[actor_id].kill()

    async def get(self, objs: list[FedObject], timeout: float | None) -> list[Any]:
        """Values of ``objs``: pushes owned ones to every peer, waits for the others."""
        self._check_objects(objs)
        for obj in objs:
            if obj.owner == self.party:
                for peer in self.peers:
                    self.push(obj.id, peer)
        wait = self._slow_gets.begin(objs)
        try:
            if timeout is None:
                values = await self.resolve(objs)
                return [values[o.id] for o in objs]
            try:
                values = await asyncio.wait_for(self.resolve(objs), timeout)
            except asyncio.TimeoutError:
                missing = [o for o in objs if not self.future(o.id, o.owner).done()]
                raise GetTimeoutError(
                    f"silo.get timed out after {timeout} s waiting for "
                    f"{', '.join(map(repr, missing))}"
                ) from None
            return [values[o.id] for o in objs]
        finally:
            self._slow_gets.end(wait)
