"""Where a party's output goes: prefixed by party under ``simulate``, copied to a log file.

Under :func:`silo.simulate` every party's program runs in the same process, so their ``print``
lines would interleave with nothing to tell them apart. :func:`party_prefixed_stdout` replaces
``sys.stdout`` for the duration with a :class:`PartyPrefixedOutput`, which looks up the party
whose runtime is current in the writing context (a party's task, or a worker thread running one
of its calls, since workers run in a copy of the caller's context) and writes ``[alice] `` before
each of its lines, as ``silo run`` does for parties in separate processes. A line is written
whole once its newline arrives; a party's unfinished line is written when the simulation ends.
Text written outside any party's context passes through unchanged.

:func:`tee_output` copies everything a party process writes to ``sys.stdout`` and
``sys.stderr`` (its program's prints, silo's log lines, the failure report) to a log file as
well, for ``silo run --log-dir``.
"""

from __future__ import annotations

import io
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TextIO

__all__ = ["PartyPrefixedOutput", "Tee", "party_prefixed_stdout", "tee_output"]


class _Wrapper(io.TextIOBase):
    """A text stream over ``target`` that reports ``target``'s encoding and terminal-ness."""

    def __init__(self, target: TextIO) -> None:
        super().__init__()
        self.target = target

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return getattr(self.target, "encoding", "utf-8")

    def writable(self) -> bool:
        return True

    def isatty(self) -> bool:
        return bool(getattr(self.target, "isatty", lambda: False)())


class PartyPrefixedOutput(_Wrapper):
    """A text stream that prefixes each line with the current party's name.

    ``party_of_context`` returns the name of the party current in the calling context, or
    ``None``. Thread-safe: worker threads of several parties may write at once.
    """

    def __init__(self, target: TextIO, party_of_context: Callable[[], str | None]) -> None:
        super().__init__(target)
        self._party_of_context = party_of_context
        self._partial: dict[str, str] = {}
        self._lock = threading.Lock()

    def write(self, text: str) -> int:
        party = self._party_of_context()
        if party is None:
            with self._lock:
                self.target.write(text)
            return len(text)
        with self._lock:
            pending = self._partial.pop(party, "") + text
            *lines, rest = pending.split("\n")
            if rest:
                self._partial[party] = rest
            if lines:
                self.target.write("".join(f"[{party}] {line}\n" for line in lines))
        return len(text)

    def flush(self) -> None:
        with self._lock:
            self.target.flush()

    def finish(self) -> None:
        """Write every party's unfinished line, then flush."""
        with self._lock:
            for party, rest in self._partial.items():
                self.target.write(f"[{party}] {rest}\n")
            self._partial.clear()
            self.target.flush()


@contextmanager
def party_prefixed_stdout(party_of_context: Callable[[], str | None]) -> Iterator[None]:
    """Prefix ``sys.stdout`` lines by party inside the block; restore it after.

    Nested or concurrent uses share the outer wrapper. ``sys.stdout`` is put back only if
    nobody replaced it meanwhile (a replacement made inside the block is left in place).
    """
    if isinstance(sys.stdout, PartyPrefixedOutput):
        yield
        return
    wrapper = PartyPrefixedOutput(sys.stdout, party_of_context)
    sys.stdout = wrapper
    try:
        yield
    finally:
        wrapper.finish()
        if sys.stdout is wrapper:
            sys.stdout = wrapper.target


class Tee(_Wrapper):
    """Writes to ``target`` and to ``copy``; reports ``target``'s terminal-ness and encoding."""

    def __init__(self, target: TextIO, copy: TextIO, lock: threading.Lock) -> None:
        super().__init__(target)
        self._copy = copy
        self._lock = lock

    def fileno(self) -> int:
        return self.target.fileno()

    def write(self, text: str) -> int:
        with self._lock:
            self.target.write(text)
            self._copy.write(text)
        return len(text)

    def flush(self) -> None:
        with self._lock:
            self.target.flush()
            self._copy.flush()


@contextmanager
def tee_output(path: Path) -> Iterator[None]:
    """Copy ``sys.stdout`` and ``sys.stderr`` to ``path`` (appended, line-buffered) inside the
    block; restore both after, and close the file.

    Raises ``OSError`` if ``path`` cannot be opened.
    """
    log = path.open("a", encoding="utf-8", buffering=1)
    lock = threading.Lock()
    out, err = sys.stdout, sys.stderr
    sys.stdout = Tee(out, log, lock)
    sys.stderr = Tee(err, log, lock)
    try:
        yield
    finally:
        sys.stdout, sys.stderr = out, err
        log.close()
