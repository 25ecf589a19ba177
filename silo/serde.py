"""Data payloads: cloudpickle protocol 5 with out-of-band buffers, and a restricted unpickler.

Large contiguous buffers (numpy arrays, bytes-likes exposing ``PickleBuffer``) are not copied into
the pickle stream: they travel as separate segments and are handed back to the unpickler as
buffers, so the receiver rebuilds an array directly over the memory it read into.

Every received value is rebuilt by :class:`SafeUnpickler`, which resolves only the built-in safe
set of :mod:`silo.safe_globals` plus what ``serializing_allowed_list`` adds, for this job only;
nothing global is patched. Only ``serializing_allowed_list: "*"`` (full trust) uses plain
``pickle.loads``.
"""

from __future__ import annotations

import copyreg
import functools
import importlib
import io
import pickle
import re
import types
from collections import ChainMap
from collections.abc import Mapping, Sequence
from typing import Any, TypeAlias

import cloudpickle

from .errors import SerializationError
from .safe_globals import SAFE_GLOBALS, dangerous, dangerous_object, names_it

__all__ = ["AllowList", "SafeUnpickler", "dumps", "loads"]

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
        data = _cloudpickle(value, buffers.append)
        if max_buffers is not None and len(buffers) > max_buffers:
            buffers = []
            data = _cloudpickle(value, None)
    except Exception as exc:
        raise SerializationError(f"cannot serialise {type(value).__name__}: {exc}") from exc
    views: list[memoryview] = []
    for buf in buffers:
        try:
            views.append(buf.raw())
        except BufferError:
            views.append(memoryview(bytes(buf)))
    return data, views


def _cloudpickle(value: object, buffer_callback: Any) -> bytes:
    file = io.BytesIO()
    pickler = cloudpickle.Pickler.__new__(cloudpickle.Pickler)
    table = _own_dispatch_table()
    if table is not None:
        # Read once, by the pickler's __init__: it must be there before.
        pickler.dispatch_table = table
    pickler.__init__(file, protocol=5, buffer_callback=buffer_callback)
    pickler.dump(value)
    return file.getvalue()


_own_table: tuple[int, ChainMap[Any, Any] | None] = (-1, None)


def _own_dispatch_table() -> ChainMap[Any, Any] | None:
    """cloudpickle's reducers without those another library put in ``copyreg`` for every
    exception class (tblib's, which Dask installs), or ``None`` when there are none.

    Those reducers rebuild an exception through tblib's functions, which no receiver's
    restricted unpickler admits: a party using the Dask executor could no longer send a silo
    error or a user's exception as a value. Kept per size of ``copyreg.dispatch_table``.
    """
    global _own_table
    registry = copyreg.dispatch_table
    if _own_table[0] == len(registry):
        return _own_table[1]
    foreign = [
        cls
        for cls, reducer in registry.items()
        if str(getattr(reducer, "__module__", "")).startswith("tblib")
    ]
    table = None
    if foreign:
        kept = {cls: reducer for cls, reducer in registry.items() if cls not in foreign}
        table = ChainMap(cloudpickle.Pickler.dispatch_table.maps[0], kept)
    _own_table = (len(registry), table)
    return table


AllowList: TypeAlias = "Mapping[str, tuple[str, ...] | str] | str | None"
"""``serializing_allowed_list`` as parsed: ``None`` (safe set only), ``{module: names or "*"}``
(safe set plus these), or ``"*"`` (full trust: plain ``pickle.loads``)."""

#: Opcodes that name a global: GLOBAL, INST, EXT1, EXT2, EXT4, STACK_GLOBAL. A stream with none of
#: these bytes anywhere can build only plain data (no callable is reachable), so it needs no check.
_names_a_global = re.compile(rb"[ci\x82\x83\x84\x93]").search


_BY_VALUE_HINT = (
    " (cloudpickle rebuilds a function or class sent by value, such as one defined in __main__ or"
    ' a notebook; only serializing_allowed_list "*" admits those)'
)

#: numpy's private package before and since numpy 2.
_NUMPY_OLD, _NUMPY_NEW = "numpy.core.", "numpy._core."


class SafeUnpickler(pickle.Unpickler):
    """An unpickler that resolves only the safe set plus the names ``allowed`` adds.

    ``allowed`` maps a module to ``"*"`` or a tuple of names. A module entry also admits its
    submodules (``"numpy": "*"`` admits ``numpy.linalg``), since libraries move their classes
    between private submodules across versions. A wildcard never admits what
    :func:`~silo.safe_globals.dangerous` names, and no admission lets in an object that is
    really a dangerous one (:func:`~silo.safe_globals.dangerous_object`) unless the list names
    it (:func:`~silo.safe_globals.names_it`). A refusal raises :class:`SerializationError`
    naming ``module.name``.
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

    def _admission(self, module: str, name: str) -> str | None:
        """``"listed"`` (named one by one), ``"wildcard"``, or ``None``: refused."""
        parts = module.split(".")
        for end in range(len(parts), 0, -1):
            names = self._allowed.get(".".join(parts[:end]))
            if names is None:
                continue
            if names != "*" and name in names:
                return "listed" if end == len(parts) else "wildcard"
            if names == "*" or "*" in names:
                return "wildcard"
        return None

    def find_class(self, module: str, name: str) -> Any:
        if name in SAFE_GLOBALS.get(module, ()):
            return _safe_global(module, name)
        admission = self._admission(module, name)
        if admission is None:
            hint = _BY_VALUE_HINT if module.split(".")[0] == "cloudpickle" else ""
            raise SerializationError(
                f"refused to deserialise {module}.{name}: it is neither in silo's safe set "
                f"nor in serializing_allowed_list{hint}"
            )
        if admission == "wildcard" and dangerous(module, name):
            raise SerializationError(
                f"refused to deserialise {module}.{name}: it can reach arbitrary code, so a "
                f'wildcard never admits it; list it by name ({{"{module}": ["{name}"]}}) only '
                f"if you trust every peer with this party's process"
            )
        obj = super().find_class(_import(module).__name__, name)
        real = dangerous_object(obj)
        if real is not None and not (admission == "listed" and names_it(module, name, real)):
            raise SerializationError(
                f"refused to deserialise {module}.{name}: it is {real}, which can reach "
                f"arbitrary code; list {real} by name only if you trust every peer"
            )
        return obj


def _import(module: str) -> types.ModuleType:
    """Import ``module``, taking numpy's private modules from where this numpy keeps them.

    numpy 2 moved ``numpy.core`` to ``numpy._core`` (the old name warns) and numpy 1.x may lack
    the new one: a peer on the other major version names the other module.
    """
    if module.startswith(_NUMPY_OLD):
        try:
            return importlib.import_module(_NUMPY_NEW + module[len(_NUMPY_OLD) :])
        except ImportError:
            pass
    try:
        return importlib.import_module(module)
    except ImportError:
        if not module.startswith(_NUMPY_NEW):
            raise
        return importlib.import_module(_NUMPY_OLD + module[len(_NUMPY_NEW) :])


@functools.cache
def _safe_global(module: str, name: str) -> Any:
    """A name of the safe set, resolved once per process (the set is fixed and small)."""
    return getattr(_import(module), name)


def loads(data: bytes | memoryview, buffers: Sequence[Any], allowed: AllowList) -> object:
    """Rebuild a value from :func:`dumps` output with the restricted unpickler.

    ``allowed`` adds to the safe set (see :data:`AllowList`); ``"*"`` skips every check.
    Raises :class:`SerializationError` naming ``module.name`` when a global is refused, and
    when the stream is corrupt.
    """
    try:
        if _names_a_global(data) is None or allowed == "*":
            return pickle.loads(data, buffers=buffers)
        extra = allowed if isinstance(allowed, Mapping) else {}
        return SafeUnpickler(io.BytesIO(data), buffers=buffers, allowed=extra).load()
    except SerializationError:
        raise
    except Exception as exc:
        raise SerializationError(f"cannot deserialise payload: {exc!r}") from exc
