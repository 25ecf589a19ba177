"""What ``@fed.remote`` returns: silo's handles, bound to the ``silo.fed`` session.

They are :mod:`silo.handles`' classes with a :class:`FedBinding`: the runtime is the process's
session's, each ``.remote()`` runs silo's scheduling on the session's loop thread (see
:mod:`silo.fed._session`), so calls get their sequence ids in program order, and Ray options
silo has no use for (``num_cpus``, ``resources``, ...) are dropped with an
``IgnoredConfigWarning``. Unlike RayFed, ``.party()`` and ``.options()`` return a new handle
instead of changing the decorated object.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from typing import Any, TypeVar

from ..core import Core
from ..errors import NoRuntimeError, RuntimeClosedError
from ..handles import (
    ActorHandle,
    ActorMethod,
    Binding,
    RemoteClass,
    RemoteFunction,
    parse_options,
)
from ._session import Session, active
from ._translate import translate_options
from .exceptions import as_task_error

__all__ = [
    "FED",
    "FedActorHandle",
    "FedActorMethod",
    "FedBinding",
    "FedRemoteClass",
    "FedRemoteFunction",
]

T = TypeVar("T")


def session() -> tuple[Session, Core]:
    """The process's session and its runtime; :class:`NoRuntimeError` before ``fed.init``."""
    current = active()
    if current is None or current.runtime is None:
        raise NoRuntimeError("silo.fed: call fed.init(addresses=..., party=...) first")
    return current, current.runtime


class FedBinding(Binding):
    """Handles reach the session's runtime and schedule on its loop thread."""

    releases_actors = False

    def runtime(self) -> Core:
        return session()[1]

    def parties(self) -> Collection[str] | None:
        current = active()
        return None if current is None or current.runtime is None else current.runtime.addresses

    def options(
        self, given: Mapping[str, Any], base: Mapping[str, Any], what: str
    ) -> dict[str, Any]:
        return parse_options(translate_options(dict(given), what), base)

    def schedule(self, runtime: Core, method: Callable[..., T], *args: Any) -> T:
        """Run ``method`` on the loop thread. After a shutdown caused by an error (a peer's, a
        signal), raises what a get would: the ``FedRemoteError``, shaped as ``fed.get`` raises
        it, instead of ``RuntimeClosedError``."""
        current, _ = session()
        try:
            return current.call(method, *args)
        except RuntimeClosedError:
            request = runtime.shutdown_request
            if request is None or not request.reason.is_error:
                raise
            raise as_task_error(runtime.lifecycle.pending_error()) from None


FED = FedBinding()


class FedRemoteFunction(RemoteFunction):
    """``@fed.remote`` on a function (plain: runs in a worker thread; ``async``: on the loop)."""

    binding = FED


class FedActorHandle(ActorHandle):
    """An actor living in ``party``; ``handle.method.remote(...)`` calls a method, in order."""

    binding = FED


class FedRemoteClass(RemoteClass):
    """``@fed.remote`` on a class; ``.party(p).remote(...)`` creates an actor there."""

    binding = FED
    actor_handle = FedActorHandle


#: ``handle.method`` of a ``silo.fed`` actor (the same class as silo's).
FedActorMethod = ActorMethod
