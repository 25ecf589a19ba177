"""Checking what users give: ``init``'s arguments, ``config`` mappings, federation files.

One set of checks, used by :mod:`silo.config` and :mod:`silo.federation` alike, so a value is
judged the same wherever it was written. Every failure is a :class:`ConfigError` that names the
key where the value sits, what was expected, and what was given (value and type).

The key is a :class:`KeyPath`, written the way the user wrote it: Python mappings name it as they
are indexed (``config['cross_silo_comm']['timeout_in_ms']``), YAML files by dotted keys after
the file's name (``fed.yaml: cross_silo_comm.timeout_in_ms``).
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Mapping, Sequence
from typing import Any

from .errors import ConfigError

__all__ = [
    "KeyPath",
    "describe",
    "expect_bool",
    "expect_int",
    "expect_mapping",
    "expect_number",
    "expect_string",
    "reject_unknown",
]


class KeyPath:
    """Where a value sits. ``path / "key"`` is the path of one of its keys. Immutable."""

    __slots__ = ("_dotted", "_keys", "_root")

    def __init__(self, root: str, *, dotted: bool = False, keys: tuple[object, ...] = ()) -> None:
        self._root = root
        self._dotted = dotted
        self._keys = keys

    @classmethod
    def in_file(cls, source: str) -> KeyPath:
        """The top of a file named ``source``: its keys are dotted after ``source: ``."""
        return cls(source, dotted=True)

    def __truediv__(self, key: object) -> KeyPath:
        return KeyPath(self._root, dotted=self._dotted, keys=(*self._keys, key))

    def __str__(self) -> str:
        if not self._dotted:
            return self._root + "".join(f"[{key!r}]" for key in self._keys)
        if not self._keys:
            return self._root
        dotted = ".".join(str(key) for key in self._keys)
        return f"{self._root}: {dotted}" if self._root else dotted

    def __repr__(self) -> str:
        return f"KeyPath({str(self)!r})"

    def error(self, expected: str) -> ConfigError:
        """``ConfigError("<path>: <expected>")``."""
        return ConfigError(f"{self}: {expected}")


def describe(value: object) -> str:
    """A value as error messages show it: ``-5 (int)``."""
    return f"{value!r} ({type(value).__name__})"


def expect_int(path: KeyPath, value: object, *, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise path.error(f"expected an integer >= {minimum}, got {describe(value)}")
    return value


def expect_number(
    path: KeyPath, value: object, *, minimum: float, inclusive: bool = True, what: str = "a number"
) -> float:
    """A finite int or float ``>= minimum`` (``> minimum`` unless ``inclusive``)."""
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not math.isfinite(value)
        or value < minimum
        or (not inclusive and value == minimum)
    ):
        bound = f">= {minimum:g}" if inclusive else f"> {minimum:g}"
        raise path.error(f"expected {what} {bound}, got {describe(value)}")
    return float(value)


def expect_bool(path: KeyPath, value: object) -> bool:
    if not isinstance(value, bool):
        raise path.error(f"expected true or false, got {describe(value)}")
    return value


def expect_string(path: KeyPath, value: object) -> str:
    """A string with something in it besides white space."""
    if not isinstance(value, str) or not value.strip():
        raise path.error(f"expected a non-empty string, got {describe(value)}")
    return value


def expect_mapping(path: KeyPath, value: object) -> Mapping[str, Any]:
    """A mapping whose keys are all strings."""
    if not isinstance(value, Mapping):
        raise path.error(f"expected a mapping, got {describe(value)}")
    for key in value:
        if not isinstance(key, str):
            raise path.error(f"expected string keys, got {describe(key)}")
    return value


def reject_unknown(
    path: KeyPath,
    given: Mapping[str, Any],
    known: Sequence[str],
    hints: Mapping[str, str] | None = None,
) -> None:
    """Raise for the first key of ``given`` not in ``known``, with the advice ``hints`` has for
    it, or else the closest known key ("did you mean"), and every known key."""
    for key in given:
        if key in known:
            continue
        hint = (hints or {}).get(key)
        if hint is None:
            close = difflib.get_close_matches(key, known, n=1)
            hint = f"did you mean {close[0]!r}?" if close else None
        advice = f" ({hint})" if hint else ""
        raise path.error(f"unknown key {key!r}{advice}; expected one of: {', '.join(known)}")
