"""What this party sends: values it owns, pushed at most once per peer, and error frames.

A value is pushed to a peer when a call placed there consumes it or when the program asks for it
with ``get``. A value whose call failed becomes an error frame (plain msgpack fields). A send that
fails after its retries is a sending failure: recorded, the user's handler run once, and, with
``exit_on_sending_failure``, the runtime stopped.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

from .config import CrossSiloCommConfig
from .divergence import CallLog
from .errors import FrameRejected, SendingFailure, SerializationError, SiloError
from .graph import FedObject
from .log import PartyLogger
from .objects import ObjectTable
from .peers import LinkState, Peers
from .shutdown import Reason, ShutdownFuture, ShutdownRequest
from .tasks import TaskSupervisor
from .tracebacks import format_user_traceback, mark_reported
from .transport import Transport
from .wire import ErrorInfo, ObjectId

__all__ = ["Outbound"]


class Outbound:
    """This party's pushes and error frames, and its sending failures."""

    def __init__(
        self,
        *,
        party: str,
        comm: CrossSiloCommConfig,
        log: PartyLogger,
        table: ObjectTable,
        call_log: CallLog,
        peers: Peers,
        transport: Transport,
        tasks: TaskSupervisor,
        shutdown: ShutdownFuture,
        handler: Callable[[SendingFailure], object] | None,
    ) -> None:
        self._party = party
        self._comm = comm
        self._log = log
        self._table = table
        self._call_log = call_log
        self._peers = peers
        self._transport = transport
        self._tasks = tasks
        self._shutdown = shutdown
        self._handler = handler
        #: Every sending failure, in order (``Runtime.sending_failures``).
        self.failures: list[SendingFailure] = []

    def push_inputs(self, deps: list[FedObject], party: str) -> None:
        """A call placed at ``party`` consumes ``deps``: push the ones this party owns."""
        for dep in deps:
            if dep.owner == self._party:
                self.push(dep.id, party)

    def push(self, object_id: ObjectId, peer: str) -> bool:
        """Send an owned object to ``peer`` once it is ready; at most once per peer. Returns
        whether a push of a value not ready yet began."""
        if not self._table.first_push(object_id, peer) or not self._peers.is_live(peer):
            return False
        fut = self._table.future(object_id, self._party)
        call = self._call_log.name(object_id)
        self._tasks.spawn(
            self._push(object_id, peer, fut, call),
            f"silo-push-{object_id}-{peer}",
            self._tasks.sends,
        )
        return not fut.done()

    async def _push(
        self, object_id: ObjectId, peer: str, fut: asyncio.Future[Any], call: str
    ) -> None:
        try:
            value = await fut
        except Exception as exc:
            await self._send_error(peer, object_id, exc, call)
            return
        try:
            await self._transport.send_data(peer, object_id, value, call)
        except SerializationError as exc:
            self._log.error("object %s cannot be sent to %s: %s", object_id, peer, exc)
            await self._send_error(peer, object_id, exc, call)
        except SendingFailure as exc:
            if self._peers.state(peer) is LinkState.FINISHED:
                self._log.debug("object %s not sent: %s finished", object_id, peer)
                return
            self.sending_failure(exc)
            if not isinstance(exc, FrameRejected) and self._peers.is_live(peer):
                # The value did not arrive: tell the peer on the control path, so it raises
                # instead of waiting for it.
                await self._send_error(peer, object_id, exc, call)

    async def _send_error(
        self, peer: str, object_id: ObjectId, exc: BaseException, call: str = ""
    ) -> None:
        if not isinstance(exc, SiloError) and mark_reported(exc):
            # The failure begins here: its traceback is printed here, once; the parties it
            # reaches print one line each. Formatting it takes longer than sending the frame,
            # so it is printed once the frame is on its way.
            asyncio.get_running_loop().call_soon(self._report_origin, object_id, exc)
        info = ErrorInfo.from_exception(
            exc, party=self._party, expose=self._comm.expose_error_trace
        )
        try:
            await self._transport.send_error(peer, object_id, info, call)
        except SendingFailure as failure:
            if self._peers.state(peer) is LinkState.FINISHED:
                return
            self._log.error(
                "the error frame for object %s could not be delivered: %s will not "
                "learn of the error from us",
                object_id,
                peer,
            )
            self.sending_failure(failure)

    def _report_origin(self, object_id: ObjectId, exc: BaseException) -> None:
        self._log.error(
            "object %s failed here; the parties that need it raise FedRemoteError:\n%s",
            object_id,
            format_user_traceback(exc).rstrip(),
        )

    def sending_failure(self, failure: SendingFailure) -> None:
        """Record a sending failure; the handler runs once, for the first.

        The peer's state is not changed here: the link and the heartbeats decide whether it is
        over, and a peer that is over is sent nothing more.
        """
        self._log.error("sending failure: %s", failure)
        self.failures.append(failure)
        if len(self.failures) == 1:
            self._run_handler(failure)
            if self._comm.exit_on_sending_failure:
                self._shutdown.request(
                    ShutdownRequest(Reason.SENDING_FAILURE, failure, str(failure))
                )

    def _run_handler(self, failure: SendingFailure) -> None:
        """Run the user's ``sending_failure_handler``; an async one becomes a runtime task,
        which the teardown lets finish (bounded)."""
        if self._handler is None:
            return
        try:
            outcome = self._handler(failure)
        except Exception as exc:
            self._log.error("sending_failure_handler raised %r", exc, exc_info=exc)
            return
        if asyncio.iscoroutine(outcome):
            self._tasks.spawn(
                self._logged(outcome), "silo-sending-failure-handler", self._tasks.aux
            )

    async def _logged(self, handler: Coroutine[Any, Any, object]) -> None:
        """An async handler's exception is logged, as a plain handler's is; it fails nothing."""
        try:
            await handler
        except Exception as exc:
            self._log.error("sending_failure_handler raised %r", exc, exc_info=exc)
