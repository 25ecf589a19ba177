"""Data payloads: cloudpickle protocol 5 with out-of-band buffers, and a restricted unpickler.

Large contiguous buffers (numpy arrays, bytes-likes exposing ``PickleBuffer``) are not copied into
the pickle stream: they travel as separate segments and are handed back to the unpickler as
buffers, so the receiver rebuilds an array directly over the memory it read into.

``serializing_allowed_list`` is applied by :class:`AllowListUnpickler` for this job only; nothing
global is patched.
"""

from __future__ import annotations

import io
import pickle
from collections.abc import Mapping, Sequence
from typing import Any

import cloudpickle

from .errors import SerializationError

__all__ = ["AllowListUnpickler", "dumps", "loads"]

#: What every payload may need whatever the allow-list says: containers and cloudpickle's own
#: reconstructors for plain values.
_ALWAYS_ALLOWED: dict[str, frozenset[str]] = {
    "builtins": frozenset(
        {
            "bool",
            "bytearray",
            "bytes",
            "complex",
            "dict",
            "float",
            "frozenset",
            "int",
            "list",
            "range",
            "set",
            "slice",
            "str",
            "tuple",
            "object",
            "getattr",
            "NoneType",
        }
    ),
    "copyreg": frozenset({"_reconstructor"}),
    "collections": frozenset({"OrderedDict", "defaultdict", "deque", "Counter"}),
    "_codecs": frozenset({"encode"}),
}


#: Values whose pickle needs nothing of cloudpickle, for which plain pickle is much faster.
_PLAIN = frozenset({int, float, str, bytes, bool, type(None), complex})


def dumps(value: object, *, max_buffers: int | None = None) -> tuple[bytes, list[memoryview]]:
    """Serialise ``value``; returns the pickle stream and the out-of-band buffers, uncopied.

    A value with more than ``max_buffers`` buffers has them all copied into the stream instead.
    Raises :class:`SerializationError` if the value cannot be pickled.
    """
    if type(value) in _PLAIN:
        return pickle.dumps(value, protocol=5), []
    buffers: list[pickle.PickleBuffer] = []
    try:
        data = cloudpickle.dumps(value, protocol=5, buffer_callback=buffers.append)
        if max_buffers is not None and len(buffers) > max_buffers:
            buffers = []
            data = cloudpickle.dumps(value, protocol=5)
    except Exception as exc:
        raise SerializationError(f"cannot serialise {type(value).__name__}: {exc}") from exc
    views: list[memoryview] = []
    for buf in buffers:
        try:
            views.append(buf.raw())
        except BufferError:
            views.append(memoryview(bytes(buf)))
    return data, views


class AllowListUnpickler(pickle.Unpickler):
    """An unpickler that resolves only globals listed in ``allowed``.

    ``allowed`` maps a module to ``"*"`` or a list of names. A module entry also admits its
    submodules (``"numpy": "*"`` admits ``numpy._core.multiarray``), since libraries move their
    reconstructors between private submodules across versions.
    """

    def __init__(
        self,
        file: io.BytesIO,
        *,
        buffers: Sequence[Any],
        allowed: Mapping[str, tuple[str, ...] | str],
    ) -> None:
        super().__init__(file, buffers=buffers)
        self._allowed = allowed

    def _is_allowed(self, module: str, name: str) -> bool:
        if name in _ALWAYS_ALLOWED.get(module, ()):
            return True
        parts = module.split(".")
        for end in range(len(parts), 0, -1):
            names = self._allowed.get(".".join(parts[:end]))
            if names is None:
                continue
            if names == "*" or name in names:
                return True
        return False

    def find_class(self, module: str, name: str) -> Any:
        if not self._is_allowed(module, name):
            raise SerializationError(
                f"refused to deserialise {module}.{name}: it is not in serializing_allowed_list"
            )
        return super().find_class(module, name)


def loads(
    data: bytes | memoryview,
    buffers: Sequence[Any],
    allowed: Mapping[str, tuple[str, ...] | str] | None,
) -> object:
    """Rebuild a value from :func:`dumps` output, under ``allowed`` when it is set.

    Raises :class:`SerializationError` when a global is refused or the stream is corrupt.
    """
    try:
        if allowed is None:
            return pickle.loads(data, buffers=buffers)
        return AllowListUnpickler(io.BytesIO(data), buffers=buffers, allowed=allowed).load()
    except SerializationError:
        raise
    except Exception as exc:
        raise SerializationError(f"cannot deserialise payload: {exc!r}") from exc
