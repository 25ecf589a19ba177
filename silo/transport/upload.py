"""Sending one frame as an HTTP request, bounded by progress rather than by total time.

Large DATA frames and control frames go as ``POST`` requests. :func:`post_frame` sends one such
request and returns the peer's answer. ``timeout_s`` bounds each stretch without progress: the
body is streamed slice by slice, and aiohttp asks for the next slice only once the previous one
was written, so a slice taken is progress. A body that stops moving, or an answer that does not
come, for ``timeout_s`` raises :class:`Stalled`; a slow transfer that keeps moving has all the
time it needs. A connection that breaks raises :class:`Broken`, which a new attempt may cure.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import aiohttp

from ..wire import OutFrame
from .base import HEADER_OBJECT, INLINE_LIMIT

__all__ = ["Broken", "Stalled", "post_frame"]

_STREAM_CHUNK = 1 << 20


class Broken(Exception):
    """The request failed on the way (connection refused, reset, closed); retrying may help."""


class Stalled(Exception):
    """Nothing moved for ``timeout_s``: neither body bytes nor the answer."""


async def post_frame(
    session: aiohttp.ClientSession, url: str, frame: OutFrame, timeout_s: float
) -> tuple[int, bytes]:
    """POST ``frame`` to ``url``; return the answer's status and body.

    Raises :class:`Stalled` after ``timeout_s`` without progress and :class:`Broken` when the
    connection fails. Cancellation cancels the request.
    """
    loop = asyncio.get_running_loop()
    progress = [loop.time()]
    task = loop.create_task(_request(session, url, frame, progress))
    try:
        while True:
            left = progress[0] + timeout_s - loop.time()
            done, _ = await asyncio.wait({task}, timeout=max(left, 0.0))
            if done:
                return task.result()
            if loop.time() - progress[0] >= timeout_s:
                raise Stalled()
    finally:
        if not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


async def _request(
    session: aiohttp.ClientSession, url: str, frame: OutFrame, progress: list[float]
) -> tuple[int, bytes]:
    data: bytes | AsyncIterator[bytes | memoryview]
    data = frame.join() if frame.nbytes <= INLINE_LIMIT else _stream(frame, progress)
    try:
        async with session.post(
            url,
            data=data,
            headers={
                "Content-Length": str(frame.nbytes),
                HEADER_OBJECT: f"{frame.header.seq},{frame.header.index}",
                "Content-Type": "application/octet-stream",
            },
        ) as resp:
            return resp.status, await resp.read()
    except (aiohttp.ClientError, OSError) as exc:
        raise Broken(repr(exc)) from exc


async def _stream(frame: OutFrame, progress: list[float]) -> AsyncIterator[bytes | memoryview]:
    """The frame's parts in slices, so the socket buffer never holds a whole large buffer.

    Each slice taken marks progress in ``progress[0]``.
    """
    loop = asyncio.get_running_loop()
    yield frame.head
    for segment in frame.segments:
        view = memoryview(segment).cast("B")
        for start in range(0, len(view), _STREAM_CHUNK):
            progress[0] = loop.time()
            yield view[start : start + _STREAM_CHUNK]
    progress[0] = loop.time()
