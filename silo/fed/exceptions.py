"""RayFed's exceptions, and how ``fed.get`` raises a failed object, as RayFed does.

``FedRemoteError`` is silo's own :class:`silo.FedRemoteError`, so ``except silo.FedRemoteError``
and ``except fed.exceptions.FedRemoteError`` catch the same errors.

RayFed raises, from ``fed.get``, Ray's task error: an instance of the failure's own class with
``.cause`` holding the failure. :func:`as_task_error` builds the same shape over silo: a subclass
of the failure's class (same name and module, so tracebacks read as the original), also a
:class:`FedTaskError`, whose ``.cause`` is the failure, whose other attributes and ``str`` are the
failure's, and which pickles as the failure itself.
"""

from __future__ import annotations

import threading
from typing import Any

from ..errors import FedRemoteError

__all__ = [
    "FedRemoteError",
    "FedTaskError",
    "IgnoredConfigWarning",
    "UnverifiedIdentityWarning",
    "as_task_error",
]


class FedTaskError:
    """Mixed into every error ``fed.get`` raises for a failed object; ``.cause`` is the failure.

    ``isinstance(e, FedTaskError)`` tells a wrapped failure from the failure itself.
    """

    __slots__ = ()
    cause: BaseException


class IgnoredConfigWarning(UserWarning):
    """A RayFed option or configuration key that silo has no use for; it is ignored."""


class UnverifiedIdentityWarning(UserWarning):
    """The TLS certificate names no party of the job: party identity is not verified."""


_classes: dict[type[BaseException], type[BaseException]] = {}
_lock = threading.Lock()


def _getattr(self: BaseException, name: str) -> Any:
    if name == "cause" or name.startswith("__"):
        raise AttributeError(name)
    return getattr(self.__dict__["cause"], name)


def _str(self: BaseException) -> str:
    return str(self.__dict__["cause"])


def _repr(self: BaseException) -> str:
    return repr(self.__dict__["cause"])


def _reduce(self: BaseException) -> Any:
    return self.__dict__["cause"].__reduce__()


def _wrapper_class(cls: type[BaseException]) -> type[BaseException]:
    with _lock:
        wrapper = _classes.get(cls)
        if wrapper is None:
            namespace = {
                "__module__": cls.__module__,
                "__qualname__": cls.__qualname__,
                "__doc__": cls.__doc__,
                "__getattr__": _getattr,
                "__str__": _str,
                "__repr__": _repr,
                "__reduce__": _reduce,
            }
            wrapper = type(cls.__name__, (cls, FedTaskError), namespace)
            _classes[cls] = wrapper
        return wrapper


def as_task_error(exc: BaseException) -> BaseException:
    """What ``fed.get`` raises for a failed object: an instance of ``type(exc)`` with
    ``.cause = exc`` and ``exc``'s traceback.

    When the class cannot be extended or instantiated without its arguments (rare: a final
    class, a ``__new__`` that needs them), ``exc`` itself is returned with ``.cause`` set to itself
    if that attribute is free.
    """
    if isinstance(exc, FedTaskError) or not isinstance(exc, Exception):
        return exc
    cls = type(exc)
    try:
        wrapper = _wrapper_class(cls)
        error: Exception = cls.__new__(wrapper)  # type: ignore[assignment]
    except Exception:
        if not hasattr(exc, "cause"):
            try:
                exc.cause = exc  # type: ignore[attr-defined]
            except AttributeError:
                pass
        return exc
    error.args = exc.args
    error.__dict__["cause"] = exc
    error.__traceback__ = exc.__traceback__
    error.__suppress_context__ = True
    return error
