"""One party's runtime as silo's own modules see it: its parts, each owning its state, wired.

The parts and what each owns (drawn in ``docs/architecture.md``):

* :class:`~silo.objects.ObjectTable`: one entry per object (future, owner, asked, pushed to);
* :class:`~silo.peers.Peers`: the state of every peer, shared with the transport's links;
* :class:`~silo.tasks.TaskSupervisor`: every task the runtime starts;
* :class:`~silo.inbound.Inbound`: what arrives (the transport's frame sink);
* :class:`~silo.outbound.Outbound`: what this party sends, and its sending failures;
* :class:`~silo.execution.Execution`: running this party's calls, its actors and worker threads;
* :class:`~silo.scheduler.Scheduler`: the program's side (calls, actors, ``get``);
* :class:`~silo.lifecycle.Lifecycle`: start, loop hooks, and the one teardown;
* :class:`~silo.transport.Transport`: the channel.

Each part gets, when built, the few others it uses; none holds the whole. Users hold a
:class:`~silo.runtime.Runtime`, a facade with the names the docs promise.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Callable
from typing import Any

from . import loophandler
from .config import Address, Config, TLSConfig
from .divergence import CallLog
from .errors import SendingFailure
from .execution import Execution
from .inbound import Inbound
from .intake import Intake
from .lifecycle import Lifecycle
from .log import party_logger
from .objects import ObjectTable
from .outbound import Outbound
from .peers import Peers
from .scheduler import Scheduler
from .shutdown import ShutdownFuture, ShutdownRequest
from .stats import Counters, Stats
from .tasks import TaskSupervisor
from .tracing import Tracing
from .transport import TcpTransport, TransportFactory
from .waiting import SlowGets

__all__ = ["Core"]

_tokens = itertools.count(1)


class Core:
    """The parts of one party's runtime. Built on the loop that will run it."""

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
        transport_factory: TransportFactory | None = None,
    ) -> None:
        loop = asyncio.get_running_loop()
        comm = config.cross_silo_comm
        peer_names = [p for p in addresses if p != party]
        self.party = party
        self.job = job
        self.addresses = addresses
        self.config = config
        self.loop = loop
        self.token = next(_tokens)
        self.log = log = party_logger(party, job)
        self._shutdown = shutdown = ShutdownFuture(loop)
        self.peers = peers = Peers(peer_names, timeout_s=comm.timeout_s, clock=time.monotonic)
        self.counters = counters = Counters(peer_names)
        self.tracing = tracing = Tracing.create(party)
        self.tasks = tasks = TaskSupervisor(lambda: loop, self._task_failed)
        self.table = table = ObjectTable(loop, party, peers, shutdown, log)
        self.call_log = call_log = CallLog(party)
        self.intake = intake = Intake.for_limit(party, comm.messages_max_size_in_bytes)
        self.inbound = inbound = Inbound(
            party=party,
            log=log,
            table=table,
            call_log=call_log,
            intake=intake,
            peers=peers,
            shutdown=shutdown,
        )
        factory: TransportFactory = transport_factory or TcpTransport
        self.transport = transport = factory(
            party=party,
            job=job,
            addresses=addresses,
            sink=inbound,
            comm=comm,
            log=log,
            peer_table=peers,
            tls=tls,
            sock=sock,
            counters=counters,
            tracing=tracing,
        )
        self.outbound = outbound = Outbound(
            party=party,
            comm=comm,
            log=log,
            table=table,
            call_log=call_log,
            peers=peers,
            transport=transport,
            tasks=tasks,
            shutdown=shutdown,
            handler=sending_failure_handler,
        )
        self.execution = execution = Execution(
            party=party,
            table=table,
            tasks=tasks,
            counters=counters,
            tracing=tracing,
            executor=config.executor,
        )
        self.lifecycle = Lifecycle(
            party=party,
            comm=comm,
            log=log,
            loop=loop,
            shutdown=shutdown,
            table=table,
            tasks=tasks,
            peers=peers,
            execution=execution,
            transport=transport,
        )
        slow_gets = SlowGets(
            party=party,
            loop=loop,
            interval=config.slow_get_warning_s,
            log=log,
            table=table,
            counters=counters,
            peers=peers,
            stopped=lambda: shutdown.requested is not None,
        )
        self.scheduler = Scheduler(
            party=party,
            peers=peer_names,
            token=self.token,
            loop=loop,
            table=table,
            call_log=call_log,
            intake=intake,
            execution=execution,
            inbound=inbound,
            outbound=outbound,
            shutdown=shutdown,
            slow_gets=slow_gets,
        )

    def _task_failed(self, task: asyncio.Task[Any], exc: BaseException) -> None:
        loophandler.report(self.lifecycle, task, exc)

    @property
    def closed(self) -> bool:
        """Whether a shutdown was asked for (it may still be under way)."""
        return self._shutdown.requested is not None

    @property
    def shutdown_request(self) -> ShutdownRequest | None:
        return self._shutdown.requested

    async def start(self) -> None:
        """Listen and start connecting to peers (see :meth:`Lifecycle.start`)."""
        await self.lifecycle.start()
        self.log.info(
            "listening on %s; peers: %s",
            self.addresses[self.party],
            ", ".join(self.peers.names) or "none",
        )

    def on_finished(self, callback: Callable[[], None]) -> None:
        """Run ``callback()`` once the teardown is complete."""
        self._shutdown.on_finished(callback)

    def sizes(self) -> dict[str, int]:
        """How many entries the runtime's tables hold: objects, call names, pushes and actors
        (what must stay bounded over a long job)."""
        return {
            "objects": len(self.table),
            "calls": len(self.call_log),
            "pushed": self.table.pushes(),
            "actors": len(self.execution.actors),
        }

    def stats(self) -> Stats:
        """A snapshot of this party's counters (:mod:`silo.stats`)."""
        return self.counters.snapshot(self.party)
