"""The live status line of ``silo run``: each party reports, the launcher draws.

Theory of operation
-------------------
When ``silo run`` starts every party itself and its stderr is a terminal (and ``--no-progress``
is not given), the launcher makes a private directory and gives each party process the
environment variable :data:`STATUS_ENV` naming a file in it. The party (:func:`reporting`,
entered by :mod:`silo.cli` around the program) writes one compact JSON line there once a second
and once more when its program ends: ``{"done": 12, "running": 1, "sent": 5120, "received":
800}`` (calls run and running, bytes sent and received, from ``Runtime.stats()``). Each write
goes to a temporary file renamed over the status file, so a reader never sees half a line. A
write that fails (the launcher is gone and took its directory with it, a full disk) stops the
reporting quietly: the party never blocks on, nor fails because of, its launcher.

The launcher's :class:`StatusDisplay` reads the files at most once a second and draws one line
per party at the bottom of the terminal::

    alice: 12 calls done, 1 running | sent 5.0 KiB | received 800 B

Before the launcher copies a party's output line it erases the block (:meth:`StatusDisplay.clear`)
and draws it again after (:meth:`StatusDisplay.draw`), so output and status never mix. Lines are
cut to the terminal's width so that each takes exactly one row.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
from collections.abc import AsyncIterator, Iterable, Mapping
from pathlib import Path
from typing import TextIO

from .log import party_logger
from .runtime import Runtime
from .stats import Stats

__all__ = [
    "INTERVAL_S",
    "STATUS_ENV",
    "StatusDisplay",
    "format_bytes",
    "render",
    "reporting",
    "status_record",
    "write_status",
]

#: The environment variable that names the file a party writes its status to.
STATUS_ENV = "SILO_STATUS_FILE"
INTERVAL_S = 1.0
_KEYS = ("done", "running", "sent", "received")


def status_record(stats: Stats) -> dict[str, int]:
    """What a party reports: calls done and running, bytes sent and received."""
    return {
        "done": stats.calls_run,
        "running": stats.calls_running,
        "sent": stats.bytes_sent,
        "received": stats.bytes_received,
    }


def write_status(path: str, record: Mapping[str, int]) -> bool:
    """Replace the status file at ``path`` with ``record`` in one step; ``False`` if it failed."""
    temp = f"{path}.tmp"
    try:
        with open(temp, "w", encoding="utf-8") as out:
            out.write(json.dumps(record, separators=(",", ":")) + "\n")
        os.replace(temp, path)
    except OSError:
        return False
    return True


async def _report(runtime: Runtime, path: str, interval: float) -> None:
    while True:
        if not write_status(path, status_record(runtime.stats())):
            party_logger(runtime.party, runtime.job).debug(
                "stopped writing the status file %s", path
            )
            return
        await asyncio.sleep(interval)


@contextlib.asynccontextmanager
async def reporting(
    runtime: Runtime, path: str, interval: float = INTERVAL_S
) -> AsyncIterator[None]:
    """Write ``runtime``'s status to ``path`` every ``interval`` inside the block, and once more
    at its end. Never raises for a file that cannot be written."""
    task = asyncio.get_running_loop().create_task(
        _report(runtime, path, interval), name=f"silo-status-{runtime.party}"
    )
    try:
        yield
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        write_status(path, status_record(runtime.stats()))


def format_bytes(n: int) -> str:
    """``800 B``, ``5.0 KiB``, ``1.2 MiB``, ``3.4 GiB``."""
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{n} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def render(party: str, record: Mapping[str, int] | None, width: int) -> str:
    """One party's status line (``record`` ``None``: nothing reported yet)."""
    name = f"{party}:".ljust(width + 1)
    if record is None:
        return f"{name} starting"
    return (
        f"{name} {record['done']} calls done, {record['running']} running"
        f" | sent {format_bytes(record['sent'])} | received {format_bytes(record['received'])}"
    )


def _read(path: Path) -> dict[str, int] | None:
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict):
        return None
    values = {key: record.get(key) for key in _KEYS}
    if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in values.values()):
        return None
    return values  # type: ignore[return-value]


class StatusDisplay:
    """The block of status lines the launcher keeps at the bottom of ``stream`` (a terminal).

    Loop thread only. :meth:`run` refreshes it once per ``interval`` until cancelled.
    """

    def __init__(
        self,
        parties: Iterable[str],
        directory: Path,
        stream: TextIO,
        interval: float = INTERVAL_S,
    ) -> None:
        self.parties = list(parties)
        self.directory = directory
        self.stream = stream
        self.interval = interval
        self._records: dict[str, dict[str, int] | None] = dict.fromkeys(self.parties)
        self._drawn = 0
        self._width = max(len(p) for p in self.parties)

    def path(self, party: str) -> Path:
        """The status file ``party`` writes to."""
        return self.directory / f"{party}.status"

    def refresh(self) -> None:
        """Read every party's latest report (a missing or malformed file keeps the last one)."""
        for party in self.parties:
            record = _read(self.path(party))
            if record is not None:
                self._records[party] = record

    def lines(self) -> list[str]:
        columns = max(20, shutil.get_terminal_size().columns - 1)
        return [render(p, self._records[p], self._width)[:columns] for p in self.parties]

    def draw(self) -> None:
        """Draw the block (erasing the previous one first)."""
        self.clear()
        lines = self.lines()
        self.stream.write("".join(f"\x1b[2K{line}\n" for line in lines))
        self.stream.flush()
        self._drawn = len(lines)

    def clear(self) -> None:
        """Erase the block, if drawn, leaving the cursor where it began."""
        if self._drawn:
            self.stream.write(f"\x1b[{self._drawn}F\x1b[J")
            self.stream.flush()
            self._drawn = 0

    async def run(self) -> None:
        """Refresh and redraw every ``interval`` until cancelled; the last block stays drawn."""
        while True:
            self.refresh()
            self.draw()
            await asyncio.sleep(self.interval)
