"""Objects, ids and the arguments of a call. No sockets, no loop.

Every party runs the same program, so the n-th ``.remote()`` gets sequence id n in every party
and an object's id ``(seq, index)`` names the same value everywhere.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["FedObject", "find_objects", "substitute"]


class FedObject:
    """A value that will exist in its ``owner`` party; ``await silo.get(obj)`` fetches it."""

    __slots__ = ("__weakref__", "_on_release", "_runtime_token", "index", "owner", "seq")

    def __init__(
        self,
        owner: str,
        seq: int,
        index: int,
        runtime_token: int,
        on_release: Callable[[tuple[int, int]], None] | None = None,
    ) -> None:
        self.owner = owner
        self.seq = seq
        self.index = index
        self._runtime_token = runtime_token
        self._on_release = on_release

    def __del__(self) -> None:
        # The program dropped this handle: its party may forget the value (see Runtime).
        on_release = self._on_release
        if on_release is not None:
            try:
                on_release((self.seq, self.index))
            except Exception:
                pass

    @property
    def id(self) -> tuple[int, int]:
        return (self.seq, self.index)

    def __repr__(self) -> str:
        return f"FedObject(owner={self.owner!r}, id={self.id})"

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, FedObject)
            and self.id == other.id
            and self._runtime_token == other._runtime_token
        )

    def __hash__(self) -> int:
        return hash((self.seq, self.index, self._runtime_token))

    def __reduce__(self) -> Any:
        raise TypeError(
            f"{self!r} cannot be pickled: pass it as an argument of a remote call "
            f"(directly or inside a list, tuple or dict) and silo resolves it"
        )


def _walk(value: Any, visit: Callable[[FedObject], Any]) -> Any:
    if isinstance(value, FedObject):
        return visit(value)
    if type(value) is list:
        return [_walk(v, visit) for v in value]
    if type(value) is tuple:
        return tuple(_walk(v, visit) for v in value)
    if isinstance(value, tuple) and hasattr(value, "_fields"):
        return type(value)(*(_walk(v, visit) for v in value))
    if type(value) is dict:
        return {k: _walk(v, visit) for k, v in value.items()}
    return value


def find_objects(args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> list[FedObject]:
    """Every FedObject in the arguments, also inside lists, tuples and dicts, first use first.

    Builds nothing: a stack of the values still to look at, in reverse order.
    """
    found: dict[tuple[int, int], FedObject] = {}
    stack: list[Any] = [*reversed(list(kwargs.values())), *reversed(args)]
    while stack:
        value = stack.pop()
        kind = type(value)
        if kind is FedObject:
            found.setdefault(value.id, value)
        elif (
            kind is list
            or kind is tuple
            or (isinstance(value, tuple) and hasattr(value, "_fields"))
        ):
            stack.extend(reversed(value))
        elif kind is dict:
            stack.extend(reversed(list(value.values())))
    return list(found.values())


def substitute(
    args: tuple[Any, ...], kwargs: Mapping[str, Any], values: Mapping[tuple[int, int], Any]
) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """The arguments with every FedObject replaced by its value."""
    if not values:
        return args, dict(kwargs)
    new_args, new_kwargs = _walk((args, dict(kwargs)), lambda obj: values[obj.id])
    return new_args, new_kwargs
