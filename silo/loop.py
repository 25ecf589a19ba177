"""Running a coroutine on the best loop available: uvloop where installed, else asyncio's."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

__all__ = ["loop_factory", "run", "uvloop_available"]

T = TypeVar("T")


def uvloop_available() -> bool:
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return False
    return True


def loop_factory(use_uvloop: bool | None = None) -> Callable[[], asyncio.AbstractEventLoop]:
    """A loop factory: uvloop when ``use_uvloop`` is true, or when it is ``None`` and uvloop is
    installed and ``SILO_UVLOOP`` is not ``0``. Raises ``RuntimeError`` if uvloop is asked for
    and missing."""
    if use_uvloop is None:
        use_uvloop = os.environ.get("SILO_UVLOOP", "1") != "0" and uvloop_available()
    if use_uvloop:
        try:
            import uvloop
        except ImportError as exc:
            raise RuntimeError("uvloop was asked for but is not installed") from exc
        factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
        return factory
    return asyncio.new_event_loop


def run(main: Coroutine[Any, Any, T], *, use_uvloop: bool | None = None) -> T:
    """Like ``asyncio.run``, on uvloop by default where it is installed."""
    factory = loop_factory(use_uvloop)
    runner_cls: Any = getattr(asyncio, "Runner", None)
    if runner_cls is not None:
        with runner_cls(loop_factory=factory) as runner:
            result: T = runner.run(main)
            return result
    loop = factory()  # Python 3.10: no asyncio.Runner
    try:
        asyncio.set_event_loop(loop)
        return loop.run_until_complete(main)
    finally:
        try:
            loop.run_until_complete(loop.shutdown_asyncgens())
        finally:
            asyncio.set_event_loop(None)
            loop.close()
