"""What the transport and the runtime promise each other."""

from __future__ import annotations

from typing import Protocol

from ..errors import SiloError
from ..intake import Admission
from ..wire import PROTOCOL_VERSION, ErrorInfo, ObjectId

__all__ = [
    "CONTROL_PATH",
    "DATA_PATH",
    "HEADER_JOB",
    "HEADER_OBJECT",
    "HEADER_PARTY",
    "HEADER_PROTOCOL",
    "HEADER_REFUSAL",
    "BULK_PATH",
    "BULK_UPGRADE",
    "INLINE_LIMIT",
    "WS_MAX_MESSAGE",
    "WS_PATH",
    "FrameSink",
]

#: The paths carry the protocol version (:data:`silo.wire.PROTOCOL_VERSION`, the one constant).
WS_PATH = f"/silo/v{PROTOCOL_VERSION}/ws"
DATA_PATH = f"/silo/v{PROTOCOL_VERSION}/data"
CONTROL_PATH = f"/silo/v{PROTOCOL_VERSION}/control"
#: Upgraded to a bulk stream (:mod:`silo.transport.stream`): DATA frames over INLINE_LIMIT.
BULK_PATH = f"/silo/v{PROTOCOL_VERSION}/bulk"
BULK_UPGRADE = "silo-bulk"
HEADER_JOB = "X-Silo-Job"
HEADER_PARTY = "X-Silo-Party"
HEADER_PROTOCOL = "X-Silo-Protocol"
HEADER_REFUSAL = "X-Silo-Refusal"
HEADER_OBJECT = "X-Silo-Object"

#: DATA frames up to this size travel as one websocket message; larger ones go on a bulk stream
#: (a long-lived connection per peer and frame in flight, read straight into each buffer's final
#: memory), so nothing large is joined, masked or copied in user space, and small frames never
#: queue behind a large transfer.
INLINE_LIMIT = 64 << 10
#: The largest websocket message a listener takes (peers before the bulk streams sent up to
#: 4 MiB inline).
WS_MAX_MESSAGE = (4 << 20) + (64 << 10)


class FrameSink(Protocol):
    """The receiving side of the runtime. Every method is synchronous and must not block."""

    def admit(self, src: str, object_id: ObjectId, nbytes: int) -> Admission:
        """Asked before a value or error of ``nbytes`` for ``object_id`` is decoded and
        delivered: store it, drop it (it will never be used), or refuse it (REJECT)."""

    def deliver_data(self, src: str, object_id: ObjectId, value: object, call: str = "") -> None:
        """A value ``src`` pushed, produced there by the call named ``call`` (``""``: unknown)."""

    def deliver_error(
        self, src: str, object_id: ObjectId, info: ErrorInfo, call: str = ""
    ) -> None: ...

    def deliver_refused(self, src: str, object_id: ObjectId, error: SiloError) -> None:
        """This party refused the object (not allowed, too large): it fails here too."""

    def deliver_abort(self, src: str, info: ErrorInfo) -> None: ...
