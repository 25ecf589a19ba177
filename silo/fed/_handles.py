"""What ``@fed.remote`` returns: function, class and actor handles that schedule on the session.

They mirror RayFed's: ``.party(name)``, ``.options(num_returns=n, ...)``, ``.remote(...)``, and
``actor.method.remote(...)``. Each ``.remote()`` runs silo's scheduling on the loop thread (see
:mod:`silo.fed._session`), so calls get their sequence ids in program order. Ray options silo
has no use for (``num_cpus``, ``resources``, ...) are dropped with an ``IgnoredConfigWarning``.
Unlike RayFed, ``.party()`` and ``.options()`` return a new handle instead of changing the
decorated object.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from ..api import _parse_options
from ..core import Core
from ..errors import NoRuntimeError, RuntimeClosedError
from ..graph import FedObject
from ._session import Session, active
from ._translate import translate_options
from .exceptions import as_task_error

__all__ = ["FedActorHandle", "FedActorMethod", "FedRemoteClass", "FedRemoteFunction"]

T = TypeVar("T")


def _session() -> tuple[Session, Core]:
    session = active()
    if session is None or session.runtime is None:
        raise NoRuntimeError("silo.fed: call fed.init(addresses=..., party=...) first")
    return session, session.runtime


def _schedule(session: Session, runtime: Core, fn: Callable[..., T], *args: Any) -> T:
    """Run a scheduling method of the runtime on its loop thread.

    After a shutdown caused by an error (a peer's, a signal), raises what a get would: the
    ``FedRemoteError``, shaped as ``fed.get`` raises it, instead of ``RuntimeClosedError``.
    """
    try:
        return session.call(fn, *args)
    except RuntimeClosedError:
        request = runtime.shutdown_request
        if request is None or not request.reason.is_error:
            raise
        raise as_task_error(runtime.lifecycle.pending_error()) from None


def _check_party(name: object) -> str:
    if not isinstance(name, str) or not name:
        raise ValueError(f"party: expected a party name, got {name!r}")
    session = active()
    if session is not None and session.runtime is not None:
        parties = session.runtime.addresses
        if name not in parties:
            raise ValueError(
                f"unknown party {name!r}: this job's parties are {', '.join(sorted(parties))}"
            )
    return name


def _options(given: dict[str, Any], base: dict[str, Any], what: str) -> dict[str, Any]:
    return _parse_options(translate_options(given, what), base)


def _one_or_list(objs: list[FedObject], num_returns: int) -> FedObject | list[FedObject]:
    return objs[0] if num_returns == 1 else objs


class FedRemoteFunction:
    """``@fed.remote`` on a function (plain: runs in a worker thread; ``async``: on the loop)."""

    def __init__(
        self,
        fn: Callable[..., Any],
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

    def party(self, name: str) -> FedRemoteFunction:
        """A handle pinned to ``name``. Raises ``ValueError`` for a party not in the job."""
        return FedRemoteFunction(self._fn, _check_party(name), self._options)

    def options(self, **options: Any) -> FedRemoteFunction:
        """A handle with these options: ``num_returns``; Ray's own are dropped with a warning."""
        merged = _options(options, self._options, self.__qualname__)
        return FedRemoteFunction(self._fn, self._party, merged)

    def remote(self, *args: Any, **kwargs: Any) -> Any:
        """Schedule the call; returns a FedObject (a list of them with ``num_returns > 1``)."""
        if self._party is None:
            raise ValueError(f"{self.__qualname__}: call .party(name) before .remote(...)")
        session, runtime = _session()
        n = self._options["num_returns"]
        objs = _schedule(
            session,
            runtime,
            runtime.scheduler.submit,
            _check_party(self._party),
            self._fn,
            args,
            kwargs,
            n,
        )
        return _one_or_list(objs, n)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        raise TypeError(
            f"remote function {self.__qualname__} cannot be called directly: "
            f"use {self.__name__}.party(name).remote(...)"
        )


class FedRemoteClass:
    """``@fed.remote`` on a class; ``.party(p).remote(...)`` creates an actor there."""

    def __init__(
        self, cls: type, party: str | None = None, options: dict[str, Any] | None = None
    ) -> None:
        self._cls = cls
        self._party = party
        self._options = options or {"num_returns": 1}
        self.__name__ = cls.__name__
        self.__qualname__ = cls.__qualname__
        self.__doc__ = cls.__doc__
        self.__wrapped__ = cls

    def party(self, name: str) -> FedRemoteClass:
        return FedRemoteClass(self._cls, _check_party(name), self._options)

    def options(self, **options: Any) -> FedRemoteClass:
        merged = _options(options, self._options, self.__qualname__)
        return FedRemoteClass(self._cls, self._party, merged)

    def remote(self, *args: Any, **kwargs: Any) -> FedActorHandle:
        """Create the actor in its party (constructed there once its inputs are ready)."""
        if self._party is None:
            raise ValueError(f"{self.__qualname__}: call .party(name) before .remote(...)")
        session, runtime = _session()
        party = _check_party(self._party)
        actor_id = _schedule(
            session, runtime, runtime.scheduler.create_actor, party, self._cls, args, kwargs
        )
        return FedActorHandle(self._cls, party, actor_id, runtime.token)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        raise TypeError(
            f"remote class {self.__qualname__} cannot be instantiated directly: "
            f"use {self.__name__}.party(name).remote(...)"
        )


class FedActorHandle:
    """An actor living in ``party``; ``handle.method.remote(...)`` calls a method, in order."""

    def __init__(self, cls: type, party: str, actor_id: int, runtime_token: int) -> None:
        self._cls = cls
        self._party = party
        self._actor_id = actor_id
        self._runtime_token = runtime_token

    @property
    def party(self) -> str:
        return self._party

    def __getattr__(self, name: str) -> FedActorMethod:
        if name.startswith("__") or not callable(getattr(self._cls, name, None)):
            raise AttributeError(f"actor {self._cls.__name__} has no method {name!r}")
        method = FedActorMethod(self, name, {"num_returns": 1})
        self.__dict__[name] = method
        return method

    def __repr__(self) -> str:
        return f"FedActorHandle({self._cls.__name__}, party={self._party!r}, id={self._actor_id})"

    def __reduce__(self) -> Any:
        raise TypeError(f"{self!r} cannot be pickled or passed to a remote call")

    def _runtime(self) -> tuple[Session, Core]:
        session, runtime = _session()
        if runtime.token != self._runtime_token:
            raise ValueError(f"{self!r} belongs to a silo.fed runtime that was shut down")
        return session, runtime


class FedActorMethod:
    """``handle.method``: ``.remote(...)`` schedules it; ``.options(num_returns=n)``."""

    def __init__(self, handle: FedActorHandle, name: str, options: dict[str, Any]) -> None:
        self._handle = handle
        self._name = name
        self._options = options

    def options(self, **options: Any) -> FedActorMethod:
        what = f"{self._handle._cls.__name__}.{self._name}"
        return FedActorMethod(self._handle, self._name, _options(options, self._options, what))

    def remote(self, *args: Any, **kwargs: Any) -> Any:
        handle = self._handle
        session, runtime = handle._runtime()
        n = self._options["num_returns"]
        objs = _schedule(
            session,
            runtime,
            runtime.scheduler.call_actor,
            handle.party,
            handle._actor_id,
            self._name,
            args,
            kwargs,
            n,
        )
        return _one_or_list(objs, n)
