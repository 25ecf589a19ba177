"""``silo run FILE`` without a party: every party as its own process on this machine.

:class:`Launcher` starts ``python -m silo run FILE --party NAME`` per party, prefixes each line
of their output with ``[name]``, forwards SIGINT/SIGTERM to all of them, stops the others some
seconds after one failed (silo's error broadcast normally stops them at once), and ends with a
short summary: which party failed first and with what, and each party's exit status. With
``progress`` and a terminal on stderr, it keeps a live status line per party at the bottom
(:mod:`silo.progress`).

How a party failed is read from the last line a party prints when it fails
(``silo: party bob failed: RuntimeError: boom``, written by :mod:`silo.cli`); the party where
the failure began is the one whose failure is not a ``FedRemoteError`` (a peer's failure
reaching it), else the party those ``FedRemoteError`` lines name.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import signal
import sys
import tempfile
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TextIO

from .federation import Federation
from .progress import STATUS_ENV, StatusDisplay

__all__ = ["EXIT_CONFIG", "EXIT_FAILED", "EXIT_OK", "GRACE_S", "Launcher", "describe_code"]

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_CONFIG = 2

_SIGNALS = (signal.SIGINT, signal.SIGTERM)
#: After a child fails (or a signal was forwarded), the others get this long to stop by
#: themselves before SIGTERM, then SIGKILL.
GRACE_S = 10.0
_KILL_AFTER_S = 5.0
_FAILED_LINE = re.compile(
    r"^silo: party (?P<party>\S+) (?P<how>failed: .*|interrupted|stopped .*)$"
)
_REMOTE = re.compile(r"^FedRemoteError occurred at (?P<origin>\S+?)(?::| caused by|$)")


class Launcher:
    """Runs every party of ``fed`` as a child process; :meth:`run` returns the exit status.

    ``log_dir``: each child also writes its output to ``log_dir/<party>.log``. ``progress``:
    show a live status line per party, if stderr is a terminal.
    """

    def __init__(
        self, fed: Federation, *, log_dir: Path | None = None, progress: bool = False
    ) -> None:
        self.fed = fed
        self.log_dir = log_dir
        self.display: StatusDisplay | None = None
        if progress and sys.stderr.isatty():
            directory = Path(tempfile.mkdtemp(prefix="silo-status-"))
            self.display = StatusDisplay(fed.parties, directory, sys.stderr)
        self.procs: dict[str, asyncio.subprocess.Process] = {}
        self.width = max(len(name) for name in fed.parties)
        self.signalled: signal.Signals | None = None
        self.escalation: asyncio.Task[None] | None = None
        #: What each party said when it stopped, and in which order they stopped.
        self.how: dict[str, str] = {}
        self.exit_order: list[str] = []

    async def run(self) -> int:
        """Run every party; return 0, 1 (a party failed), 2 (configuration) or 128+signal."""
        loop = asyncio.get_running_loop()
        for sig in _SIGNALS:
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.add_signal_handler(sig, self._forward, sig)
        pumps: list[asyncio.Task[None]] = []
        display = self.display
        status: asyncio.Task[None] | None = None
        try:
            for name in self.fed.parties:
                proc = await self._spawn(name)
                self.procs[name] = proc
                prefix = f"[{name}]".ljust(self.width + 2) + " "
                assert proc.stdout is not None and proc.stderr is not None
                pumps.append(
                    asyncio.ensure_future(_pump(proc.stdout, sys.stdout, prefix, None, display))
                )
                pumps.append(
                    asyncio.ensure_future(
                        _pump(proc.stderr, sys.stderr, prefix, self._watch_for(name), display)
                    )
                )
            if display is not None:
                status = asyncio.ensure_future(display.run())
            waits = {asyncio.ensure_future(p.wait()): n for n, p in self.procs.items()}
            pending = set(waits)
            while pending:
                done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                self.exit_order += sorted(waits[task] for task in done)
                if any(task.result() != 0 for task in done) and pending:
                    self._escalate_later()
            await asyncio.gather(*pumps)
        finally:
            for sig in _SIGNALS:
                with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                    loop.remove_signal_handler(sig)
            self._signal_all(signal.SIGKILL)
            if self.escalation is not None:
                self.escalation.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self.escalation
            for pump in pumps:
                pump.cancel()
            if status is not None:
                status.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await status
            if display is not None:
                display.refresh()
                display.draw()
                shutil.rmtree(display.directory, ignore_errors=True)
        return self._summary()

    def _watch_for(self, name: str) -> Callable[[str], None]:
        def watch(line: str) -> None:
            match = _FAILED_LINE.match(line)
            if match is not None and match["party"] == name:
                how = match["how"]
                self.how[name] = how[len("failed: ") :] if how.startswith("failed: ") else how

        return watch

    async def _spawn(self, name: str) -> asyncio.subprocess.Process:
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        env.pop(STATUS_ENV, None)
        if self.display is not None:
            env[STATUS_ENV] = str(self.display.path(name))
        extra: list[str] = [] if self.log_dir is None else ["--log-dir", str(self.log_dir)]
        return await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "silo",
            "run",
            self.fed.source,
            "--party",
            name,
            *extra,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=env,
            start_new_session=os.name == "posix",
        )

    def _forward(self, sig: signal.Signals) -> None:
        if self.signalled is not None:
            print("silo: second signal: killing every party", file=sys.stderr)
            self._signal_all(signal.SIGKILL)
            return
        self.signalled = sig
        print(f"silo: received {sig.name}: stopping every party", file=sys.stderr)
        self._signal_all(sig)
        self._escalate_later(_KILL_AFTER_S)

    def _signal_all(self, sig: signal.Signals) -> None:
        for proc in self.procs.values():
            if proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.send_signal(sig)

    def _escalate_later(self, grace: float = GRACE_S) -> None:
        if self.escalation is None:
            self.escalation = asyncio.ensure_future(self._escalate(grace))

    async def _escalate(self, grace: float) -> None:
        await asyncio.sleep(grace)
        running = [n for n, p in self.procs.items() if p.returncode is None]
        print(
            f"silo: {', '.join(running)} still running after {grace:.0f} s: terminating",
            file=sys.stderr,
        )
        self._signal_all(signal.SIGTERM)
        await asyncio.sleep(_KILL_AFTER_S)
        self._signal_all(signal.SIGKILL)

    def _summary(self) -> int:
        codes = {name: proc.returncode for name, proc in self.procs.items()}
        failed = {name: code for name, code in codes.items() if code != 0}
        if not failed and self.signalled is None:
            return EXIT_OK
        for line in summary_lines(codes, self.how, self.exit_order):
            print(line, file=sys.stderr)
        if self.signalled is not None:
            return 128 + int(self.signalled)
        return EXIT_CONFIG if EXIT_CONFIG in failed.values() else EXIT_FAILED


def first_failure(
    codes: dict[str, int | None], how: dict[str, str], exit_order: Sequence[str]
) -> str | None:
    """The party where the failure began: one that failed with its own error (the first to
    stop, if several), else the party most ``FedRemoteError`` lines name, else the first to
    stop with a non-zero status."""
    failed = [name for name in exit_order if codes.get(name) not in (0, None)]
    own = [name for name in failed if name in how and not _REMOTE.match(how[name])]
    if own:
        return own[0]
    named = Counter(m["origin"] for text in how.values() if (m := _REMOTE.match(text)))
    if named:
        return named.most_common(1)[0][0]
    return failed[0] if failed else None


def summary_lines(
    codes: dict[str, int | None], how: dict[str, str], exit_order: Sequence[str]
) -> list[str]:
    """The end-of-run summary: a headline, then one line per party with its exit status."""
    failed = [name for name, code in codes.items() if code != 0]
    origin = first_failure(codes, how, exit_order)
    headline = f"silo: {len(failed)} of {len(codes)} parties failed"
    if origin is not None:
        headline += f"; {origin} failed first"
        if origin in how:
            headline += f": {how[origin]}"
    width = max(len(name) for name in codes)
    lines = [headline]
    for name, code in codes.items():
        text = f"silo:   {name.ljust(width)}  exit {describe_code(code)}"
        if name in how and code != 0:
            text += f"  {how[name]}"
        lines.append(text)
    return lines


def describe_code(code: int | None) -> str:
    """An exit status as a person reads it: ``1``, ``killed by SIGKILL``."""
    if code is not None and code < 0:
        with contextlib.suppress(ValueError):
            return f"{code} (killed by {signal.Signals(-code).name})"
    return str(code)


async def _pump(
    stream: asyncio.StreamReader,
    out: TextIO,
    prefix: str,
    watch: Callable[[str], None] | None = None,
    display: StatusDisplay | None = None,
) -> None:
    """Copy ``stream`` to ``out`` line by line, each line prefixed; no line length limit.
    ``watch`` sees every line, unprefixed. ``display``'s status block is erased before the
    lines are written and drawn again after."""
    pending = b""
    while chunk := await stream.read(65536):
        *lines, pending = (pending + chunk).split(b"\n")
        if display is not None and lines:
            display.clear()
        for raw in lines:
            line = raw.decode("utf-8", "replace").rstrip("\r")
            if watch is not None:
                watch(line)
            out.write(prefix + line + "\n")
        out.flush()
        if display is not None and lines:
            display.draw()
    if pending:
        line = pending.decode("utf-8", "replace")
        if watch is not None:
            watch(line)
        if display is not None:
            display.clear()
        out.write(prefix + line + "\n")
        out.flush()
        if display is not None:
            display.draw()
