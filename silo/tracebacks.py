"""Tracebacks as a user wants to read them: their own code's frames, not the machinery's.

A failure inside a party's program passes through silo's runtime, asyncio's task and event-loop
code, contextlib and uvloop before it is printed; none of those frames says anything about the
user's bug. :func:`format_user_traceback` keeps the frames of the user's code (and of the
libraries it called), for the exception and for every exception chained to it.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import os
import traceback

from .errors import FedRemoteError

__all__ = [
    "format_user_traceback",
    "headline",
    "is_machinery",
    "last_user_frame",
    "mark_reported",
    "was_reported",
]

_SILO_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep
_MACHINERY_DIRS = tuple(
    os.path.dirname(os.path.abspath(module.__file__ or "")) + os.sep
    for module in (asyncio, concurrent.futures)
)
_MACHINERY_FILES = frozenset({os.path.abspath(contextlib.__file__ or "")})


def is_machinery(filename: str) -> bool:
    """Whether a frame of ``filename`` belongs to silo, asyncio, uvloop or contextlib."""
    if filename.startswith(_SILO_DIR) or filename.startswith(_MACHINERY_DIRS):
        return True
    return filename in _MACHINERY_FILES or filename.startswith("uvloop/")


def _trim(exc: traceback.TracebackException) -> None:
    kept = [frame for frame in exc.stack if not is_machinery(frame.filename)]
    exc.stack = traceback.StackSummary.from_list(kept)
    for chained in (exc.__cause__, exc.__context__):
        if chained is not None:
            _trim(chained)


def format_user_traceback(exc: BaseException) -> str:
    """``exc`` formatted like ``traceback.format_exception``, without machinery frames.

    A chained exception raised by the machinery itself (its whole stack trimmed away) still
    shows its type and message, so the chain reads the same.
    """
    summary = traceback.TracebackException.from_exception(exc)
    _trim(summary)
    return "".join(summary.format())


def last_user_frame(exc: BaseException) -> str | None:
    """``"file.py:12 in main"`` for the innermost frame of ``exc`` outside the machinery, or
    ``None`` when every frame is silo's or asyncio's."""
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if not is_machinery(f.filename)]
    if not frames:
        return None
    frame = frames[-1]
    return f"{os.path.basename(frame.filename)}:{frame.lineno} in {frame.name}"


_REPORTED = "_silo_reported"


def mark_reported(exc: BaseException) -> bool:
    """Note that ``exc``'s traceback was printed; returns whether this call was the first."""
    if getattr(exc, _REPORTED, False):
        return False
    try:
        setattr(exc, _REPORTED, True)
    except AttributeError:
        return True
    return True


def was_reported(exc: BaseException) -> bool:
    """Whether ``exc``'s traceback was already printed (:func:`mark_reported`)."""
    return bool(getattr(exc, _REPORTED, False))


def headline(exc: BaseException) -> str:
    """One line for ``exc``: ``ValueError: boom``; for a FedRemoteError, its
    :meth:`~silo.errors.FedRemoteError.headline` (``FedRemoteError occurred at alice:
    ValueError: boom (in train, call 12)``)."""
    if isinstance(exc, FedRemoteError):
        return exc.headline()
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {text}".rstrip(": ")
