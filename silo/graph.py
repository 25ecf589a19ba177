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


def _opened(value: Any) -> tuple[Any, ...] | list[Any] | None:
    """The items silo looks into inside ``value`` (a list, tuple, named tuple or dict's values),
    or ``None`` for anything else: the one rule both :func:`find_objects` and
    :func:`substitute` follow. Subclasses of list, tuple (other than named tuples) and dict are
    values, not containers."""
    kind = type(value)
    if kind is list or kind is tuple:
        return value  # type: ignore[no-any-return]
    if kind is dict:
        return list(value.values())
    if isinstance(value, tuple) and hasattr(value, "_fields"):
        return value
    return None


def _rebuilt(value: Any, items: list[Any]) -> Any:
    """``value`` (a container :func:`_opened` looked into) with its items replaced."""
    kind = type(value)
    if kind is list:
        return items
    if kind is dict:
        return dict(zip(value.keys(), items, strict=True))
    if kind is tuple:
        return tuple(items)
    return kind(*items)


def _walk(value: Any, visit: Callable[[FedObject], Any]) -> Any:
    if type(value) is FedObject:
        return visit(value)
    items = _opened(value)
    if items is None:
        return value
    return _rebuilt(value, [_walk(v, visit) for v in items])


#: Types that hold no FedObject: arguments made only of these need no walk.
_ATOMS = frozenset({int, float, str, bytes, bool, type(None), complex})


def find_objects(args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> list[FedObject]:
    """Every FedObject in the arguments, also inside lists, tuples and dicts, first use first.

    Builds nothing: a stack of the values still to look at, in reverse order.
    """
    atoms = _ATOMS
    if all(type(a) in atoms for a in args) and (
        not kwargs or all(type(v) in atoms for v in kwargs.values())
    ):
        return []
    found: dict[tuple[int, int], FedObject] = {}
    stack: list[Any] = [*reversed(list(kwargs.values())), *reversed(args)]
    while stack:
        value = stack.pop()
        if type(value) is FedObject:
            found.setdefault(value.id, value)
            continue
        items = _opened(value)
        if items:
            stack.extend(reversed(items))
    return list(found.values())


def substitute(
    args: tuple[Any, ...], kwargs: Mapping[str, Any], values: Mapping[tuple[int, int], Any]
) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """The arguments with every FedObject replaced by its value."""
    if not values:
        return args, dict(kwargs)
    new_args, new_kwargs = _walk((args, dict(kwargs)), lambda obj: values[obj.id])
    return new_args, new_kwargs
