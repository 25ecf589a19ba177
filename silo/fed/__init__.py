"""RayFed's synchronous API over silo: ``from silo import fed`` runs RayFed programs.

``fed.init``, ``fed.remote``, ``fed.get``, ``fed.kill`` and ``fed.shutdown`` behave as RayFed's
do, over one silo runtime per process running on a background event-loop thread (see
:mod:`silo.fed._session`). RayFed's configuration is accepted as RayFed programs write it (see
:mod:`silo.fed._translate`). A failed object raises, in ``fed.get``, an instance of the failure's
class with ``.cause`` (see :mod:`silo.fed.exceptions`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from ..errors import GetTimeoutError, NoRuntimeError, RuntimeClosedError, SendingFailure
from ..graph import FedObject
from ..handles import RemoteClass, RemoteFunction, make_remote
from . import config, exceptions
from ._handles import FED, FedActorHandle, FedActorMethod, FedRemoteClass, FedRemoteFunction
from ._session import active, begin, end
from ._tls import check_identity
from ._translate import translate_config, warn_ignored
from .exceptions import (
    FedRemoteError,
    FedTaskError,
    IgnoredConfigWarning,
    UnverifiedIdentityWarning,
    as_task_error,
)

__all__ = [
    "FedActorHandle",
    "FedActorMethod",
    "FedObject",
    "FedRemoteClass",
    "FedRemoteError",
    "FedRemoteFunction",
    "FedTaskError",
    "IgnoredConfigWarning",
    "UnverifiedIdentityWarning",
    "config",
    "exceptions",
    "get",
    "init",
    "kill",
    "remote",
    "shutdown",
]

_PROXY_ARGUMENTS = ("sender_proxy_cls", "receiver_proxy_cls", "receiver_sender_proxy_cls")


def init(
    addresses: Mapping[str, str],
    party: str,
    config: Mapping[str, Any] | None = None,
    tls_config: Mapping[str, Any] | None = None,
    logging_level: str = "info",
    sending_failure_handler: Callable[[SendingFailure], object] | None = None,
    job_name: str | None = None,
    **proxy_classes: Any,
) -> None:
    """Start this party: RayFed's ``fed.init``, without ``ray.init`` first.

    ``config`` is RayFed's (translated, unknown RayFed keys warned and ignored); ``tls_config``
    is ``{"ca_cert", "cert", "key"}``, and a certificate naming no party warns
    :class:`UnverifiedIdentityWarning`. RayFed's ``sender_proxy_cls``, ``receiver_proxy_cls`` and
    ``receiver_sender_proxy_cls`` are ignored with a warning (silo has no proxy actors).

    Raises :class:`~silo.ConfigError` for a bad argument (naming it) or when this process already
    runs a job; :class:`~silo.AddressInUseError` when ``addresses[party]`` is taken. Does not
    wait for peers unless ``barrier_on_initializing`` is set.
    """
    for name, value in proxy_classes.items():
        if name not in _PROXY_ARGUMENTS:
            raise TypeError(f"fed.init() got an unexpected keyword argument {name!r}")
        if value is not None:
            warn_ignored(f"fed.init({name}=...)", "silo has no proxy actors")
    silo_config = translate_config(config)
    parties = list(addresses) if isinstance(addresses, Mapping) else []
    silo_tls = tls_config
    if tls_config is not None and not check_identity(tls_config, parties):
        silo_tls = {**tls_config, "verify_identity": False}
    init_kwargs = {
        "addresses": addresses,
        "party": party,
        "job_name": job_name,
        "config": silo_config,
        "tls_config": silo_tls,
        "sending_failure_handler": sending_failure_handler,
        "logging_level": logging_level,
    }
    session = begin(init_kwargs, config or {})
    session.tls_config = tls_config
    comm = (config or {}).get("cross_silo_comm") or {}
    if comm.get("serializing_allowed_list") is None:
        assert session.runtime is not None
        session.runtime.log.info(
            "no serializing_allowed_list: peers' values are unpickled with full trust, as "
            "RayFed does; set one to restrict what a peer can make this party import"
        )


def remote(*args: Any, **options: Any) -> Any:
    """``@fed.remote`` on a function, coroutine function or class; also
    ``@fed.remote(num_returns=2)`` (Ray's resource options are warned and dropped).

    Raises ``TypeError`` for anything else.
    """
    if len(args) == 1 and not options:
        return _make_remote(args[0], {"num_returns": 1})
    if args:
        raise TypeError(
            "fed.remote: use @fed.remote or @fed.remote(option=value, ...), "
            f"got positional arguments {args!r}"
        )
    return lambda target: _make_remote(target, options)


def _make_remote(target: Any, options: dict[str, Any]) -> RemoteFunction | RemoteClass:
    what = getattr(target, "__qualname__", repr(target))
    parsed = FED.options(options, {"num_returns": 1}, what)
    return make_remote(target, parsed, FedRemoteFunction, FedRemoteClass, "fed.remote")


def get(fed_objects: Any) -> Any:
    """The value of a FedObject, the values of a list of them, or a plain value as it is.

    Blocks only the calling thread: the main thread or a task's worker thread. A list may mix
    FedObjects and plain values; a tuple holding FedObjects gives a list, as in RayFed.

    In the party where a call failed, raises an instance of the user's exception class whose
    ``.cause`` is that exception; elsewhere an instance of :class:`FedRemoteError` whose
    ``.cause`` is the ``FedRemoteError`` (see :mod:`silo.fed.exceptions`). Raises
    :class:`~silo.NoRuntimeError` for FedObjects without a running job.
    """
    if isinstance(fed_objects, FedObject):
        return _values([fed_objects])[0]
    if isinstance(fed_objects, (list, tuple)):
        objs = [x for x in fed_objects if isinstance(x, FedObject)]
        if not objs:
            return fed_objects if isinstance(fed_objects, tuple) else list(fed_objects)
        values = iter(_values(objs))
        return [next(values) if isinstance(x, FedObject) else x for x in fed_objects]
    return fed_objects


def _values(objs: list[FedObject]) -> list[Any]:
    session = active()
    if session is None or session.runtime is None:
        raise NoRuntimeError("silo.fed: call fed.init(addresses=..., party=...) first")
    runtime = session.runtime
    try:
        values: list[Any] = session.run(runtime.scheduler.get(objs, None))
    except RuntimeClosedError:
        request = runtime.shutdown_request
        if request is None or not request.reason.is_error:
            raise
        raise as_task_error(runtime.lifecycle.pending_error()) from None
    except (NoRuntimeError, GetTimeoutError):
        raise
    except Exception as exc:
        raise as_task_error(exc) from None
    return values


def kill(actor: FedActorHandle, *, no_restart: bool = True) -> None:
    """Stop an actor in its own party; later calls on it fail there. ``no_restart`` is
    accepted for RayFed's sake: silo never restarts actors."""
    if not isinstance(actor, FedActorHandle):
        raise TypeError(f"fed.kill expects an actor handle, got {type(actor).__name__}")
    runtime = actor.runtime("fed.kill")
    FED.schedule(runtime, runtime.scheduler.kill_actor, actor.party, actor._actor_id)


def shutdown() -> None:
    """Shut this party down: pending sends are flushed, peers told goodbye, the loop thread
    stopped. Idempotent; a no-op without ``fed.init``. After it, ``fed.init`` may run again."""
    end()
