"""What users touch: ``remote``, the handles, ``init``, ``get``, ``kill``, ``shutdown``
(``simulate`` is :mod:`silo.simulation`)."""

from __future__ import annotations

import inspect
import socket
from collections.abc import Awaitable, Callable, Generator, Iterable, Mapping
from types import TracebackType
from typing import Any, Generic, TypeVar, overload

from . import context
from .config import (
    Config,
    TLSConfig,
    check_job_name,
    check_plaintext,
    check_tls_parties,
    parse_addresses,
    parse_config,
    parse_tls_config,
)
from .errors import (
    ConfigError,
    NoRuntimeError,
    RuntimeClosedError,
    SendingFailure,
)
from .graph import FedObject
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
_OPTIONS = frozenset({"num_returns"})


def _parse_options(options: Mapping[str, Any], base: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in options.items():
        if key not in _OPTIONS:
            raise ValueError(f"unknown option {key!r}: silo supports {', '.join(sorted(_OPTIONS))}")
        if key == "num_returns" and (
            isinstance(value, bool) or not isinstance(value, int) or value < 1
        ):
            raise ValueError(f"num_returns: expected an integer >= 1, got {value!r}")
        merged[key] = value
    return merged


def _check_party(name: object) -> str:
    if not isinstance(name, str) or not name:
        raise ValueError(f"party: expected a party name, got {name!r}")
    try:
        runtime = context.current_runtime()
    except (NoRuntimeError, RuntimeClosedError):
        return name
    if name not in runtime.addresses:
        raise ValueError(
            f"unknown party {name!r}: this job's parties are {', '.join(sorted(runtime.addresses))}"
        )
    return name


def _runtime_for(party: str | None, what: str) -> Runtime:
    if party is None:
        raise ValueError(f"{what}: call .party(name) before .remote(...) to pin it to a party")
    runtime = context.current_runtime()
    if party not in runtime.addresses:
        raise ValueError(
            f"unknown party {party!r}: this job's parties are "
            f"{', '.join(sorted(runtime.addresses))}"
        )
    return runtime


def _one_or_list(objs: list[FedObject], num_returns: int) -> FedObject | list[FedObject]:
    return objs[0] if num_returns == 1 else objs


class RemoteFunction:
    """A function or coroutine function decorated with ``@silo.remote``."""

    def __init__(
        self,
        fn: Callable[..., Any],
        *,
        party: str | None = None,
        options: dict[str, Any] | None = None,
    ) -> None:
        self._fn = fn
        self._party = party
        self._options = options or {"num_returns": 1}
        self.__name__ = getattr(fn, "__name__", "remote_function")
        self.__qualname__ = getattr(fn, "__qualname__", self.__name__)
        self.__doc__ = fn.__doc__
        self.__wrapped__ = fn

    def party(self, name: str) -> RemoteFunction:
        """A new handle pinned to ``name``. Raises ``ValueError`` for an unknown party."""
        return RemoteFunction(self._fn, party=_check_party(name), options=self._options)

    def options(self, **options: Any) -> RemoteFunction:
        """A new handle with per-call options (``num_returns``)."""
        return RemoteFunction(
            self._fn, party=self._party, options=_parse_options(options, self._options)
        )

    def remote(self, *args: Any, **kwargs: Any) -> Any:
        """Schedule the call; returns a FedObject (a list of them if ``num_returns > 1``)."""
        runtime = _runtime_for(self._party, f"{self.__qualname__}.remote()")
        assert self._party is not None
        n = self._options["num_returns"]
        return _one_or_list(runtime.submit(self._party, self._fn, args, kwargs, n), n)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        raise TypeError(
            f"remote function {self.__qualname__} cannot be called directly: "
            f"use {self.__name__}.party(name).remote(...)"
        )

    def __repr__(self) -> str:
        return f"<silo.remote function {self.__qualname__} party={self._party!r}>"


class RemoteClass:
    """A class decorated with ``@silo.remote``; ``.party(p).remote(...)`` creates an actor."""

    def __init__(
        self, cls: type, *, party: str | None = None, options: dict[str, Any] | None = None
    ) -> None:
        self._cls = cls
        self._party = party
        self._options = options or {"num_returns": 1}
        self.__name__ = cls.__name__
        self.__qualname__ = cls.__qualname__
        self.__doc__ = cls.__doc__
        self.__wrapped__ = cls

    def party(self, name: str) -> RemoteClass:
        return RemoteClass(self._cls, party=_check_party(name), options=self._options)

    def options(self, **options: Any) -> RemoteClass:
        return RemoteClass(
            self._cls, party=self._party, options=_parse_options(options, self._options)
        )

    def remote(self, *args: Any, **kwargs: Any) -> ActorHandle:
        """Create the actor in its party (constructed there once its inputs are ready)."""
        runtime = _runtime_for(self._party, f"{self.__qualname__}.remote()")
        assert self._party is not None
        actor_id = runtime.create_actor(self._party, self._cls, args, kwargs)
        return ActorHandle(self._cls, self._party, actor_id, runtime.token, runtime.release_actor)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        raise TypeError(
            f"remote class {self.__qualname__} cannot be instantiated directly: "
            f"use {self.__name__}.party(name).remote(...)"
        )


class ActorHandle:
    """An actor living in ``party``; its methods are called with ``handle.method.remote()``."""

    def __init__(
        self,
        cls: type,
        party: str,
        actor_id: int,
        runtime_token: int,
        on_release: Callable[[int], None] | None = None,
    ) -> None:
        self._cls = cls
        self._party = party
        self._actor_id = actor_id
        self._runtime_token = runtime_token
        self._on_release = on_release

    def __del__(self) -> None:
        # The program dropped the handle: no call can reach the actor any more (see Runtime).
        on_release = self.__dict__.get("_on_release")
        if on_release is not None:
            try:
                on_release(self._actor_id)
            except Exception:
                pass

    @property
    def party(self) -> str:
        return self._party

    def __getattr__(self, name: str) -> ActorMethod:
        if name.startswith("__") or not callable(getattr(self._cls, name, None)):
            raise AttributeError(f"actor {self._cls.__name__} has no method {name!r}")
        # Not cached on the handle: a method holds its handle, and a cycle would keep a dropped
        # handle (and so its actor) alive until the next garbage collection.
        return ActorMethod(self, name, {"num_returns": 1})

    def __repr__(self) -> str:
        return f"ActorHandle({self._cls.__name__}, party={self._party!r}, id={self._actor_id})"

    def __reduce__(self) -> Any:
        raise TypeError(f"{self!r} cannot be pickled or passed to a remote call")


class ActorMethod:
    """``handle.method``: ``.remote(...)`` schedules it; ``.options(num_returns=n)``."""

    def __init__(self, handle: ActorHandle, name: str, options: dict[str, Any]) -> None:
        self._handle = handle
        self._name = name
        self._options = options

    def options(self, **options: Any) -> ActorMethod:
        return ActorMethod(self._handle, self._name, _parse_options(options, self._options))

    def remote(self, *args: Any, **kwargs: Any) -> Any:
        handle = self._handle
        runtime = _runtime_for(handle.party, f"{handle._cls.__name__}.{self._name}.remote()")
        if runtime.token != handle._runtime_token:
            raise ValueError(f"{handle!r} belongs to another silo runtime")
        n = self._options["num_returns"]
        call = f"{handle._cls.__qualname__}.{self._name}"
        objs = runtime.call_actor(handle.party, handle._actor_id, self._name, args, kwargs, n, call)
        return _one_or_list(objs, n)


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
    options = _parse_options({"num_returns": num_returns}, {})
    if obj is None:
        return lambda target: _make_remote(target, options)
    return _make_remote(obj, options)


def _make_remote(obj: Any, options: dict[str, Any]) -> RemoteFunction | RemoteClass:
    if inspect.isclass(obj):
        return RemoteClass(obj, options=options)
    if inspect.isfunction(obj) or inspect.isbuiltin(obj) or inspect.ismethod(obj):
        return RemoteFunction(obj, options=options)
    raise TypeError(
        f"silo.remote expects a function, coroutine function or class, "
        f"got {obj!r} ({type(obj).__name__})"
    )


class _Init(Generic[T]):
    """What ``silo.init`` returns: awaitable, and an async context manager that shuts down."""

    def __init__(self, start: Callable[[], Awaitable[Runtime]]) -> None:
        self._start = start
        self._runtime: Runtime | None = None

    def __await__(self) -> Generator[Any, None, Runtime]:
        return self._start().__await__()

    async def __aenter__(self) -> Runtime:
        self._runtime = await self._start()
        return self._runtime

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        runtime = self._runtime
        assert runtime is not None
        runtime.program_done = True
        ending = ending_error(runtime.shutdown_request, program_raised=exc is not None)
        if exc is None or ending is not None:
            await runtime.shutdown()
            if ending is not None:
                # The program finished but the job did not, or a signal stopped it: see
                # silo.shutdown.ending_error.
                raise ending from None
            return False
        await runtime.fail(exc)
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
) -> Runtime:
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
    runtime = Runtime(
        party=party,
        job=job,
        addresses=parsed_addresses,
        config=parsed_config,
        tls=tls,
        sending_failure_handler=sending_failure_handler,
        sock=sock,
        transport_factory=transport_factory,
    )
    await runtime.start()
    context.set_current(runtime)
    return runtime


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
        return (await runtime.get([refs], timeout))[0]
    if isinstance(refs, (str, bytes)) or not isinstance(refs, Iterable):
        raise TypeError(
            f"silo.get expects a FedObject or a list of them, got {type(refs).__name__}"
        )
    objs = list(refs)
    for obj in objs:
        if not isinstance(obj, FedObject):
            raise TypeError(f"silo.get expects FedObjects, got {type(obj).__name__} in the list")
    return await runtime.get(objs, timeout)


def kill(actor: ActorHandle) -> None:
    """Stop an actor in its own party; later calls on it fail (``ActorKilledError`` there)."""
    if not isinstance(actor, ActorHandle):
        raise TypeError(f"silo.kill expects an actor handle, got {type(actor).__name__}")
    context.current_runtime().kill_actor(actor.party, actor._actor_id)


async def shutdown() -> None:
    """Intended shutdown of the current runtime; idempotent, a no-op without one."""
    try:
        runtime = context.current_runtime()
    except (NoRuntimeError, RuntimeClosedError):
        return
    await runtime.shutdown()


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
