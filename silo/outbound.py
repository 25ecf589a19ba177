"""What this party sends: values it owns, pushed at most once per peer, and error frames.

A value is pushed to a peer when a call placed there consumes it or when the program asks for it
with ``get``. A value whose call failed becomes an error frame (plain msgpack fields). A send that
fails after its retries is a sending failure: recorded, the user's handler run once, and, with
``exit_on_sending_failure``, the runtime stopped.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any, cast

from .config import CrossSiloCommConfig
from .divergence import CallLog
from .errors import FrameRejected, SendingFailure, SerializationError, SiloError
from .graph import FedObject
from .log import PartyLogger
from .peers import LinkState, Peers
from .shutdown import Reason
from .tracebacks import format_user_traceback, mark_reported
from .wire import ErrorInfo, ObjectId

if TYPE_CHECKING:
    from .runtime import Runtime
    from .transport import Transport

__all__ = ["Outbound"]


class Outbound:
    """Mixed into :class:`~silo.runtime.Runtime`, which provides the state and hooks below."""

    party: str
    log: PartyLogger
    comm: CrossSiloCommConfig
    sending_failures: list[SendingFailure]
    _asked: set[ObjectId]
    _pushed: set[tuple[ObjectId, str]]
    call_log: CallLog
    peer_table: Peers
    _handler: Callable[[SendingFailure], object] | None

    def future(self, object_id: ObjectId, owner: str) -> asyncio.Future[Any]:
        raise NotImplementedError

    @property
    def transport(self) -> Transport:
        raise NotImplementedError

    @property
    def pending_sends(self) -> set[asyncio.Task[Any]]:
        raise NotImplementedError

    def spawn(
        self,
        coro: Coroutine[Any, Any, Any],
        name: str,
        group: set[asyncio.Task[Any]] | None = None,
    ) -> asyncio.Task[Any]:
        raise NotImplementedError

    def request_shutdown(
        self, reason: Reason, error: BaseException | None = None, detail: str = ""
    ) -> bool:
        raise NotImplementedError

    def _push_inputs(self, deps: list[FedObject], party: str) -> None:
        for dep in deps:
            if dep.owner == self.party:
                self._asked.add(dep.id)
                self.push(dep.id, party)

    def push(self, object_id: ObjectId, peer: str) -> None:
        """Send an owned object to ``peer`` once it is ready; at most once per peer."""
        key = (object_id, peer)
        if key in self._pushed:
            return
        self._pushed.add(key)
        if not self.peer_table.is_live(peer):
            return
        fut = self.future(object_id, self.party)
        call = self.call_log.name(object_id)
        self.spawn(
            self._push(object_id, peer, fut, call),
            f"silo-push-{object_id}-{peer}",
            self.pending_sends,
        )

    async def _push(
        self, object_id: ObjectId, peer: str, fut: asyncio.Future[Any], call: str
    ) -> None:
        try:
            value = await fut
        except Exception as exc:
            await self._send_error(peer, object_id, exc, call)
            return
        try:
            await self.transport.send_data(peer, object_id, value, call)
        except SerializationError as exc:
            self.log.error("object %s cannot be sent to %s: %s", object_id, peer, exc)
            await self._send_error(peer, object_id, exc, call)
        except SendingFailure as exc:
            if self.peer_table.state(peer) is LinkState.FINISHED:
                self.log.debug("object %s not sent: %s finished", object_id, peer)
                return
            self.sending_failure(exc)
            if not isinstance(exc, FrameRejected) and self.peer_table.is_live(peer):
                # The value did not arrive: tell the peer on the control path, so it raises
                # instead of waiting for it.
                await self._send_error(peer, object_id, exc, call)

    async def _send_error(
        self, peer: str, object_id: ObjectId, exc: BaseException, call: str = ""
    ) -> None:
        if not isinstance(exc, SiloError) and mark_reported(exc):
            # The failure begins here: its traceback is printed here, once; the parties it
            # reaches print one line each.
            self.log.error(
                "object %s failed here; the parties that need it raise FedRemoteError:\n%s",
                object_id,
                format_user_traceback(exc).rstrip(),
            )
        info = ErrorInfo.from_exception(exc, party=self.party, expose=self.comm.expose_error_trace)
        try:
            await self.transport.send_error(peer, object_id, info, call)
        except SendingFailure as failure:
            if self.peer_table.state(peer) is LinkState.FINISHED:
                return
            self.log.error(
                "the error frame for object %s could not be delivered: %s will not "
                "learn of the error from us",
                object_id,
                peer,
            )
            self.sending_failure(failure)

    def sending_failure(self, failure: SendingFailure) -> None:
        """Record a sending failure; the handler runs once, for the first.

        The peer's state is not changed here: the link and the heartbeats decide whether it is
        over, and a peer that is over is sent nothing more.
        """
        from . import lifecycle

        self.log.error("sending failure: %s", failure)
        self.sending_failures.append(failure)
        if len(self.sending_failures) == 1:
            lifecycle.run_failure_handler(cast("Runtime", self), self._handler, failure)
            if self.comm.exit_on_sending_failure:
                self.request_shutdown(Reason.SENDING_FAILURE, failure, str(failure))
