"""What users touch: ``remote``, ``init``, ``get``, ``kill``, ``shutdown``, ``current_party``
(the handles are :mod:`silo.handles`, ``simulate`` is :mod:`silo.simulation`)."""

from __future__ import annotations

import inspect
import socket
from collections.abc import Awaitable, Callable, Generator, Iterable, Mapping
from types import TracebackType
from typing import Any, Generic, TypeVar, overload

from . import context
from .config import Config, TLSConfig, check_job_name, parse_config
from .core import Core
from .endpoints import check_plaintext, check_tls_parties, parse_addresses, parse_tls_config
from .errors import (
    ConfigError,
    NoRuntimeError,
    RuntimeClosedError,
    SendingFailure,
)
from .graph import FedObject
from .handles import (
    ActorHandle,
    ActorMethod,
    RemoteClass,
    RemoteFunction,
    make_remote,
    parse_options,
)
from .log import configure_logging
from .runtime import Runtime
from .shutdown import ending_error
from .transport import TransportFactory

__all__ = [
    "ActorHandle",
    "ActorMethod",
    "RemoteClass",
    "RemoteFunction",
    "current_party",
    "get",
    "init",
    "kill",
    "remote",
    "shutdown",
]

T = TypeVar("T")


@overload
def remote(obj: type) -> RemoteClass: ...  # type: ignore[overload-overlap]
@overload
def remote(obj: Callable[..., Any]) -> RemoteFunction: ...
@overload
def remote(obj: None = None, *, num_returns: int = 1) -> Callable[[Any], Any]: ...


def remote(obj: Any = None, *, num_returns: int = 1) -> Any:
    """Decorate a function, coroutine function or class; also ``@silo.remote(num_returns=2)``.

    Raises ``TypeError`` for anything else.
    """
    options = parse_options({"num_returns": num_returns}, {})
    if obj is None:
        return lambda target: make_remote(target, options)
    return make_remote(obj, options)


class _Init(Generic[T]):
    """What ``silo.init`` returns: awaitable, and an async context manager that shuts down."""

    def __init__(self, start: Callable[[], Awaitable[Core]]) -> None:
        self._start = start
        self._core: Core | None = None

    def __await__(self) -> Generator[Any, None, Runtime]:
        return self._started().__await__()

    async def _started(self) -> Runtime:
        return Runtime(await self._start())

    async def __aenter__(self) -> Runtime:
        self._core = await self._start()
        return Runtime(self._core)

    @property
    def core(self) -> Core | None:
        """The runtime's parts once entered (for ``silo run``); ``None`` before."""
        return self._core

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        core = self._core
        assert core is not None
        lifecycle = core.lifecycle
        lifecycle.program_done = True
        ending = ending_error(core.shutdown_request, program_raised=exc is not None)
        if exc is None or ending is not None:
            await lifecycle.shutdown()
            if ending is not None:
                # The program finished but the job did not, or a signal stopped it: see
                # silo.shutdown.ending_error.
                raise ending from None
            return False
        await lifecycle.fail(exc)
        return False


def init(
    addresses: Mapping[str, str],
    party: str,
    *,
    job_name: str | None = None,
    config: Mapping[str, Any] | Config | None = None,
    tls_config: Mapping[str, Any] | TLSConfig | None = None,
    sending_failure_handler: Callable[[SendingFailure], object] | None = None,
    logging_level: str | int = "info",
) -> _Init[Runtime]:
    """Start this party's runtime: ``rt = await silo.init(...)`` or ``async with silo.init(...)``.

    Validates everything before binding: a bad argument raises :class:`ConfigError` naming it,
    and so does an address that is not a loopback address when there is no ``tls_config`` (unless
    ``config["allow_plaintext"]``); a taken listen address raises
    :class:`~silo.errors.AddressInUseError` naming it. Does not wait for peers unless
    ``barrier_on_initializing`` is set.
    """
    return _Init(
        lambda: _start(
            addresses,
            party,
            job_name=job_name,
            config=config,
            tls_config=tls_config,
            sending_failure_handler=sending_failure_handler,
            logging_level=logging_level,
        )
    )


async def _start(
    addresses: Mapping[str, str],
    party: str,
    *,
    job_name: str | None,
    config: Mapping[str, Any] | Config | None,
    tls_config: Mapping[str, Any] | TLSConfig | None,
    sending_failure_handler: Callable[[SendingFailure], object] | None,
    logging_level: str | int,
    sock: socket.socket | None = None,
    transport_factory: TransportFactory | None = None,
) -> Core:
    """Validate, build and start a party's runtime; ``silo.init`` without the facade (for
    ``simulate``, ``silo run`` and ``silo.fed``)."""
    parsed_addresses = parse_addresses(addresses, party)
    parsed_config = parse_config(config)
    tls = parse_tls_config(tls_config)
    check_tls_parties(tls, parsed_addresses, party)
    check_plaintext(parsed_addresses, tls, parsed_config)
    job = check_job_name("silo" if job_name is None else job_name)
    if sending_failure_handler is not None and not callable(sending_failure_handler):
        raise ConfigError(
            f"sending_failure_handler: expected a callable, got {sending_failure_handler!r}"
        )
    try:
        configure_logging(logging_level)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    core = Core(
        party=party,
        job=job,
        addresses=parsed_addresses,
        config=parsed_config,
        tls=tls,
        sending_failure_handler=sending_failure_handler,
        sock=sock,
        transport_factory=transport_factory,
    )
    await core.start()
    context.active_runtimes.add(core)
    core.on_finished(lambda: context.active_runtimes.discard(core))
    if parsed_config.barrier_on_initializing:
        await core.lifecycle.barrier()
    context.set_current(core)
    return core


async def get(refs: FedObject | Iterable[FedObject], *, timeout: float | None = None) -> Any:
    """The value of a FedObject, or the values of a list of them, in every party.

    In the party where a call failed, raises the original exception; elsewhere
    :class:`FedRemoteError`. With ``timeout`` (seconds), raises
    :class:`~silo.errors.GetTimeoutError`; the objects themselves are not cancelled.
    """
    if timeout is not None and (
        isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout < 0
    ):
        raise ValueError(f"timeout: expected seconds >= 0 or None, got {timeout!r}")
    runtime = context.current_runtime()
    if isinstance(refs, FedObject):
        return (await runtime.scheduler.get([refs], timeout))[0]
    if isinstance(refs, (str, bytes)) or not isinstance(refs, Iterable):
        raise TypeError(
            f"silo.get expects a FedObject or a list of them, got {type(refs).__name__}"
        )
    objs = list(refs)
    for obj in objs:
        if not isinstance(obj, FedObject):
            raise TypeError(f"silo.get expects FedObjects, got {type(obj).__name__} in the list")
    return await runtime.scheduler.get(objs, timeout)


def kill(actor: ActorHandle) -> None:
    """Stop an actor in its own party; later calls on it fail (``ActorKilledError`` there)."""
    if not isinstance(actor, ActorHandle):
        raise TypeError(f"silo.kill expects an actor handle, got {type(actor).__name__}")
    context.current_runtime().scheduler.kill_actor(actor.party, actor._actor_id)


async def shutdown() -> None:
    """Intended shutdown of the current runtime; idempotent, a no-op without one."""
    try:
        runtime = context.current_runtime()
    except (NoRuntimeError, RuntimeClosedError):
        return
    await runtime.lifecycle.shutdown()


def current_party() -> str:
    """The party of the current runtime. Raises :class:`NoRuntimeError` without one."""
    return context.current_runtime().party


async def call_main(main: Callable[..., Any], party: str) -> Any:
    """Call ``main(party)`` if it takes a parameter, else ``main()``; await it if async."""
    try:
        params = [
            p
            for p in inspect.signature(main).parameters.values()
            if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.VAR_POSITIONAL)
        ]
    except (TypeError, ValueError):
        params = []
    result = main(party) if params else main()
    if inspect.isawaitable(result):
        result = await result
    return result
