"""``silo.Runtime``: one party's runtime, as ``silo.init`` returns it.

A small facade over the runtime's parts (:class:`silo.core.Core`), with the names the docs
promise and nothing else::

    async with silo.init(addresses, party) as rt:
        ...
        print(rt.party, rt.stats())

The objects, calls, channel and shutdown live in the parts; see ``docs/architecture.md``.
"""

from __future__ import annotations

from collections.abc import Mapping

from .core import Core
from .errors import SendingFailure
from .stats import Stats

__all__ = ["Runtime"]


class Runtime:
    """One party's runtime. Create with :func:`silo.init`; ``shutdown`` is idempotent."""

    __slots__ = ("_core",)

    def __init__(self, core: Core) -> None:
        self._core = core

    @property
    def party(self) -> str:
        """This party's name."""
        return self._core.party

    @property
    def job(self) -> str:
        """The job's name."""
        return self._core.job

    @property
    def addresses(self) -> Mapping[str, str]:
        """Every party's listen address, ``host:port``."""
        return {party: str(address) for party, address in self._core.addresses.items()}

    @property
    def closed(self) -> bool:
        """Whether the runtime was asked to shut down (the shutdown may still be under way)."""
        return self._core.closed

    @property
    def sending_failures(self) -> list[SendingFailure]:
        """Every send that failed after its retries, in order (see ``sending_failure_handler``)."""
        return list(self._core.outbound.failures)

    def stats(self) -> Stats:
        """A snapshot of this party's counters (:mod:`silo.stats`); callable at any time, also
        after shutdown."""
        return self._core.stats()

    async def shutdown(self) -> None:
        """Intended shutdown: flush pending sends, say goodbye to every peer, close. Idempotent.

        If another shutdown (an error, a signal, a sending failure) came first, waits for that
        one.
        """
        await self._core.lifecycle.shutdown()

    def __repr__(self) -> str:
        state = "closed" if self.closed else "running"
        return f"<silo.Runtime party={self.party!r} job={self.job!r} {state}>"
