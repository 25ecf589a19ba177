"""Every error silo raises.

::

    SiloError
     ├── ConfigError (also ValueError)        a bad argument or configuration value
     ├── FedRemoteError                       another party failed; raised here instead of waiting
     │    ├── PeerUnavailableError            a peer vanished or shut down before sending a value
     │    └── DivergenceError                 the parties' programs issued different calls at one id
     ├── GetTimeoutError (also TimeoutError)  silo.get(timeout=...) ran out
     ├── ActorKilledError                     a call on an actor after silo.kill()
     ├── WorkerLostError                      the worker process or Dask cluster of a call was lost
     ├── SerializationError                   a payload refused by serializing_allowed_list
     ├── ProtocolError                        a malformed frame arrived from the network
     ├── RuntimeClosedError                   the runtime was shut down by us (a local decision)
     ├── NoRuntimeError                       no runtime is active (or several, ambiguously)
     └── TransportError                       the channel to a peer broke
          ├── AddressInUseError               the listen address is taken
          ├── SendingFailure                  a frame was not delivered in time, after retries
          │    └── FrameRejected              refused for good (another job, too large, not allowed)
          └── BarrierTimeoutError             barrier_on_initializing ran out, naming the parties

"We closed it" (``RuntimeClosedError``) is kept apart from "the peer broke it"
(``TransportError`` and its children) so callers can tell an intended shutdown from a failure.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "ActorKilledError",
    "AddressInUseError",
    "BarrierTimeoutError",
    "ConfigError",
    "DivergenceError",
    "FedRemoteError",
    "FrameRejected",
    "GetTimeoutError",
    "NoRuntimeError",
    "PeerUnavailableError",
    "ProtocolError",
    "RemoteCause",
    "RuntimeClosedError",
    "SendingFailure",
    "SerializationError",
    "SiloError",
    "TransportError",
    "WorkerLostError",
]


class SiloError(Exception):
    """Base of every error raised by silo."""


class ConfigError(SiloError, ValueError):
    """A configuration value or argument is wrong; the message names the field."""


@dataclass(frozen=True)
class RemoteCause:
    """What crossed the wire about a remote failure (only when ``expose_error_trace`` is on)."""

    type_name: str
    message: str
    traceback: str

    def __str__(self) -> str:
        head = f"{self.type_name}: {self.message}" if self.message else self.type_name
        return f"{head}\n{self.traceback}" if self.traceback else head


class FedRemoteError(SiloError):
    """Raised in a party when a failure that began in ``src_party`` reaches it.

    ``cause`` is the remote exception's type name, message and traceback text when the origin
    party runs with ``expose_error_trace``; otherwise ``None`` and nothing else crossed the wire.
    ``site`` is the call where it began, ``(name, call id)``, when it began in a remote call
    (call names cross the wire anyway, as fingerprints); else ``None``.
    """

    def __init__(
        self,
        src_party: str,
        cause: RemoteCause | None = None,
        *,
        site: tuple[str, int] | None = None,
    ) -> None:
        self.src_party = src_party
        self.cause = cause
        self.site = site
        super().__init__(src_party, cause)

    def __str__(self) -> str:
        text = f"FedRemoteError occurred at {self.src_party}"
        if self.cause is not None:
            text += f" caused by {self.cause}"
        return text

    def headline(self) -> str:
        """One line for logs and summaries:
        ``FedRemoteError occurred at alice: ValueError: boom (in train, call 12)``."""
        text = f"FedRemoteError occurred at {self.src_party}"
        if self.cause is not None:
            message = self.cause.message.splitlines()[0] if self.cause.message else ""
            text += f": {self.cause.type_name}: {message}".rstrip(": ")
        if self.site is not None:
            text += f" (in {self.site[0]}, call {self.site[1]})"
        return text

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (self.src_party, self.cause), {"site": self.site})


class PeerUnavailableError(FedRemoteError):
    """A peer's process vanished, or it shut down, before sending what this party waits for."""

    def __init__(self, src_party: str, reason: str) -> None:
        self.reason = reason
        super().__init__(src_party, None)
        self.args = (src_party, reason)

    def __str__(self) -> str:
        return f"FedRemoteError occurred at {self.src_party}: {self.reason}"

    def headline(self) -> str:
        return str(self).splitlines()[0]

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (self.src_party, self.reason))


class DivergenceError(FedRemoteError):
    """The parties' programs diverged: at one call id, two parties issued different calls.

    Every party must issue the same ``.remote()`` calls in the same order; a frame carries the
    name of the call that produced it, and the receiver compares it with its own. ``src_party``
    is the other party involved (the sender of the frame, or the party that detected it);
    ``seq`` the call id; the message names both parties' calls.
    """

    def __init__(self, src_party: str, message: str, seq: int = 0) -> None:
        self.message = message
        self.seq = seq
        super().__init__(src_party, None)
        self.args = (src_party, message, seq)

    def __str__(self) -> str:
        return self.message

    def headline(self) -> str:
        return self.message.splitlines()[0] if self.message else "programs diverged"

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (self.src_party, self.message, self.seq))


class GetTimeoutError(SiloError, TimeoutError):
    """``silo.get(..., timeout=...)`` ran out before every value arrived."""


class ActorKilledError(SiloError):
    """A method was called on an actor stopped with ``silo.kill``."""


class WorkerLostError(SiloError):
    """The worker process, Dask worker or Dask scheduler running a call died or went away.

    Raised by the ``processes`` and ``dask`` executors (:mod:`silo.executors`) in the party whose
    call it was; it fails that call's objects like any exception the call raised.
    """


class SerializationError(SiloError):
    """A payload could not be serialised, or was refused by ``serializing_allowed_list``."""


class ProtocolError(SiloError):
    """A frame from the network is malformed, of another protocol version, or of another job."""


class RuntimeClosedError(SiloError):
    """The runtime was shut down (by this party) and cannot take new work."""


class NoRuntimeError(SiloError):
    """No silo runtime is current, or several are active and none is current in this context."""


class TransportError(SiloError):
    """The channel to a peer failed."""


class AddressInUseError(TransportError, OSError):
    """The listen address of this party is already taken."""


class SendingFailure(TransportError):
    """A frame to a peer was not acknowledged in time, after its retries.

    ``peer`` is the party it was for; ``object_id`` the object it carried, if any.
    """

    def __init__(
        self, message: str, *, peer: str, object_id: tuple[int, int] | None = None
    ) -> None:
        super().__init__(message)
        self.peer = peer
        self.object_id = object_id


class FrameRejected(SendingFailure):
    """The receiver refused a frame for good (another job, too large, malformed); no retry helps."""


class BarrierTimeoutError(TransportError):
    """``barrier_on_initializing`` ran out; ``missing`` names the peers that never answered."""

    def __init__(self, message: str, missing: list[str]) -> None:
        super().__init__(message)
        self.missing = missing
