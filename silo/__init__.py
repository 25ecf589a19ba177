"""silo: an asyncio-native runtime for cross-silo (multi-party) programs, with no Ray."""

from . import faults
from .api import (
    ActorHandle,
    RemoteClass,
    RemoteFunction,
    current_party,
    get,
    init,
    kill,
    remote,
    shutdown,
)
from .config import Config, CrossSiloCommConfig, RetryPolicy, TLSConfig
from .errors import (
    ActorKilledError,
    AddressInUseError,
    BarrierTimeoutError,
    ConfigError,
    DivergenceError,
    FedRemoteError,
    FrameRejected,
    GetTimeoutError,
    NoRuntimeError,
    PeerUnavailableError,
    ProtocolError,
    RemoteCause,
    RuntimeClosedError,
    SendingFailure,
    SerializationError,
    SiloError,
    TransportError,
)
from .graph import FedObject
from .runtime import Runtime
from .simulation import simulate

__version__ = "0.1.0"

__all__ = [
    "ActorHandle",
    "ActorKilledError",
    "AddressInUseError",
    "BarrierTimeoutError",
    "Config",
    "ConfigError",
    "CrossSiloCommConfig",
    "FedObject",
    "FedRemoteError",
    "FrameRejected",
    "GetTimeoutError",
    "NoRuntimeError",
    "PeerUnavailableError",
    "DivergenceError",
    "ProtocolError",
    "RemoteCause",
    "RemoteClass",
    "RemoteFunction",
    "RetryPolicy",
    "Runtime",
    "RuntimeClosedError",
    "SendingFailure",
    "SerializationError",
    "SiloError",
    "TLSConfig",
    "TransportError",
    "__version__",
    "current_party",
    "faults",
    "get",
    "init",
    "kill",
    "remote",
    "shutdown",
    "simulate",
]
