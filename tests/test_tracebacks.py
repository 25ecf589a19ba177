"""Tracebacks keep the user's frames and drop silo's, asyncio's and contextlib's."""

from __future__ import annotations

import asyncio
import contextlib
import os

import silo
from silo.tracebacks import format_user_traceback, is_machinery, last_user_frame


def _fail_in_user_code() -> None:
    raise ValueError("user bug")


async def _through_asyncio() -> None:
    async def inner() -> None:
        _fail_in_user_code()

    with contextlib.suppress(KeyError):
        await asyncio.ensure_future(inner())


def test_machinery_frames_are_dropped_and_user_frames_kept() -> None:
    try:
        asyncio.run(_through_asyncio())
    except ValueError as exc:
        error = exc
    text = format_user_traceback(error)
    assert "_fail_in_user_code" in text and "inner" in text and "ValueError: user bug" in text
    assert "asyncio" + os.sep not in text and "contextlib.py" not in text
    assert text.startswith("Traceback (most recent call last):")
    where = last_user_frame(error)
    assert where is not None and where.startswith("test_tracebacks.py:")
    assert where.endswith("in _fail_in_user_code")


def test_chained_exceptions_are_trimmed_too() -> None:
    try:
        try:
            _fail_in_user_code()
        except ValueError as exc:
            raise RuntimeError("wrapped") from exc
    except RuntimeError as exc:
        text = format_user_traceback(exc)
    assert "ValueError: user bug" in text and "RuntimeError: wrapped" in text
    assert "direct cause" in text


def test_silo_and_uvloop_files_are_machinery() -> None:
    assert is_machinery(silo.__file__ or "")
    assert is_machinery(asyncio.__file__ or "")
    assert is_machinery("uvloop/loop.pyx")
    assert not is_machinery(__file__)
