"""What ``@silo.remote`` returns: function, class, actor and actor-method handles.

``.party(name)`` and ``.options(...)`` return new handles (the decorated object never changes);
``.remote(...)`` schedules the call on a runtime and returns FedObjects at once.

How a handle reaches its runtime is a :class:`Binding`: silo's own handles use the runtime
current in this context and schedule right here, on its loop; ``silo.fed``'s handles are the
same classes with a binding that finds the process's session and schedules on its loop thread
(:mod:`silo.fed._handles`). Everything else is one piece of code for both.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Collection, Mapping
from typing import Any, ClassVar, TypeVar

from . import context
from .core import Core
from .errors import NoRuntimeError, RuntimeClosedError
from .graph import FedObject

__all__ = [
    "ActorHandle",
    "ActorMethod",
    "Binding",
    "RemoteClass",
    "RemoteFunction",
    "make_remote",
    "parse_options",
]

T = TypeVar("T")
_OPTIONS = frozenset({"num_returns"})


def parse_options(options: Mapping[str, Any], base: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` updated with ``options``; raises ``ValueError`` naming an unknown option or a
    bad ``num_returns``."""
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


class Binding:
    """How handles reach the runtime their calls go to: here, silo's own way."""

    #: Whether dropping an actor's last handle lets the actor stop (its queued calls run).
    releases_actors = True

    def runtime(self) -> Core:
        """The runtime to schedule on; raises :class:`NoRuntimeError` when there is none."""
        return context.current_runtime()

    def parties(self) -> Collection[str] | None:
        """The parties of the running job, or ``None`` when no job runs (checked later)."""
        try:
            return context.current_runtime().addresses
        except (NoRuntimeError, RuntimeClosedError):
            return None

    def options(
        self, given: Mapping[str, Any], base: Mapping[str, Any], what: str
    ) -> dict[str, Any]:
        """``given`` options merged into ``base`` for the handle named ``what``."""
        return parse_options(given, base)

    def schedule(self, runtime: Core, method: Callable[..., T], *args: Any) -> T:
        """Run a scheduling ``method`` of ``runtime`` (its Scheduler's) with ``args``."""
        return method(*args)


LOCAL = Binding()


def _check_party(binding: Binding, name: object) -> str:
    if not isinstance(name, str) or not name:
        raise ValueError(f"party: expected a party name, got {name!r}")
    parties = binding.parties()
    if parties is not None and name not in parties:
        raise ValueError(
            f"unknown party {name!r}: this job's parties are {', '.join(sorted(parties))}"
        )
    return name


def _runtime_for(binding: Binding, party: str | None, what: str) -> Core:
    if party is None:
        raise ValueError(f"{what}: call .party(name) before .remote(...) to pin it to a party")
    runtime = binding.runtime()
    if party not in runtime.addresses:
        raise ValueError(
            f"unknown party {party!r}: this job's parties are "
            f"{', '.join(sorted(runtime.addresses))}"
        )
    return runtime


def _one_or_list(objs: list[FedObject], num_returns: int) -> FedObject | list[FedObject]:
    return objs[0] if num_returns == 1 else objs


Pinned = TypeVar("Pinned", bound="_Decorated")


class _Decorated:
    """What ``@silo.remote`` makes of a function or a class: the target, the party it is pinned
    to (``None`` until ``.party``) and its options; ``.party`` and ``.options`` make new handles."""

    binding: ClassVar[Binding] = LOCAL

    def __init__(
        self, target: Any, *, party: str | None = None, options: dict[str, Any] | None = None
    ) -> None:
        self._target = target
        self._party = party
        self._options = options or {"num_returns": 1}
        self.__name__: str = getattr(target, "__name__", "remote_function")
        self.__qualname__: str = getattr(target, "__qualname__", self.__name__)
        self.__doc__ = target.__doc__
        self.__wrapped__ = target

    def party(self: Pinned, name: str) -> Pinned:
        """A new handle pinned to ``name``. Raises ``ValueError`` for an unknown party."""
        party = _check_party(self.binding, name)
        return type(self)(self._target, party=party, options=self._options)

    def options(self: Pinned, **options: Any) -> Pinned:
        """A new handle with per-call options (``num_returns``)."""
        merged = self.binding.options(options, self._options, self.__qualname__)
        return type(self)(self._target, party=self._party, options=merged)


class RemoteFunction(_Decorated):
    """A function or coroutine function decorated with ``@silo.remote``."""

    def remote(self, *args: Any, **kwargs: Any) -> Any:
        """Schedule the call; returns a FedObject (a list of them if ``num_returns > 1``)."""
        runtime = _runtime_for(self.binding, self._party, f"{self.__qualname__}.remote()")
        n = self._options["num_returns"]
        submit = runtime.scheduler.submit
        objs = self.binding.schedule(runtime, submit, self._party, self._target, args, kwargs, n)
        return _one_or_list(objs, n)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        raise TypeError(
            f"remote function {self.__qualname__} cannot be called directly: "
            f"use {self.__name__}.party(name).remote(...)"
        )

    def __repr__(self) -> str:
        return f"<silo.remote function {self.__qualname__} party={self._party!r}>"


class ActorHandle:
    """An actor living in ``party``; its methods are called with ``handle.method.remote()``."""

    binding: ClassVar[Binding] = LOCAL

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
        # The program dropped the handle: no call can reach the actor any more.
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

    def runtime(self, what: str) -> Core:
        """The runtime this actor lives in; ``ValueError`` if that one is gone."""
        runtime = _runtime_for(self.binding, self._party, what)
        if runtime.token != self._runtime_token:
            raise ValueError(f"{self!r} belongs to another silo runtime")
        return runtime

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
        what = f"{self._handle._cls.__name__}.{self._name}"
        merged = self._handle.binding.options(options, self._options, what)
        return ActorMethod(self._handle, self._name, merged)

    def remote(self, *args: Any, **kwargs: Any) -> Any:
        handle = self._handle
        runtime = handle.runtime(f"{handle._cls.__name__}.{self._name}.remote()")
        n = self._options["num_returns"]
        call = f"{handle._cls.__qualname__}.{self._name}"
        objs = handle.binding.schedule(
            runtime,
            runtime.scheduler.call_actor,
            handle.party,
            handle._actor_id,
            self._name,
            args,
            kwargs,
            n,
            call,
        )
        return _one_or_list(objs, n)


class RemoteClass(_Decorated):
    """A class decorated with ``@silo.remote``; ``.party(p).remote(...)`` creates an actor."""

    #: The handle type of the actors it creates.
    actor_handle: ClassVar[type[ActorHandle]] = ActorHandle

    def remote(self, *args: Any, **kwargs: Any) -> ActorHandle:
        """Create the actor in its party (constructed there once its inputs are ready)."""
        binding = self.binding
        runtime = _runtime_for(binding, self._party, f"{self.__qualname__}.remote()")
        assert self._party is not None
        scheduler = runtime.scheduler
        actor_id = binding.schedule(
            runtime, scheduler.create_actor, self._party, self._target, args, kwargs
        )
        on_release = scheduler.release_actor if binding.releases_actors else None
        return self.actor_handle(self._target, self._party, actor_id, runtime.token, on_release)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        raise TypeError(
            f"remote class {self.__qualname__} cannot be instantiated directly: "
            f"use {self.__name__}.party(name).remote(...)"
        )


def make_remote(
    obj: Any,
    options: dict[str, Any],
    function: type[RemoteFunction] = RemoteFunction,
    cls: type[RemoteClass] = RemoteClass,
    what: str = "silo.remote",
) -> RemoteFunction | RemoteClass:
    """The handle for a decorated ``obj``: ``cls`` for a class, ``function`` for a function;
    ``TypeError`` naming ``what`` (the decorator) for anything else."""
    if inspect.isclass(obj):
        return cls(obj, options=options)
    if inspect.isfunction(obj) or inspect.isbuiltin(obj) or inspect.ismethod(obj):
        return function(obj, options=options)
    raise TypeError(
        f"{what} expects a function, coroutine function or class, "
        f"got {obj!r} ({type(obj).__name__})"
    )
