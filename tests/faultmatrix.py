"""Run a federation for fault tests: one OS process per party, every link through a FaultProxy.

Every party listens on its real 127.0.0.1 port but dials each peer through the proxy route
``"dialer->peer"`` (each process gets its own addresses map), so a test can cut, stall or slow one
direction of one link, or all of them, while the processes run ``tests/programs/faults.py``.
The harness records every stdout line with the time it read it, and the program stamps its own
lines with ``time.monotonic()`` (one clock for all processes of the machine), so a test can
compare when each party's pending get ended with when the fault was injected.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import IO, Any

from faultproxy import FaultProxy
from multiparty import PROGRAMS

PROGRAM = PROGRAMS / "faults.py"
_runs = itertools.count()


@dataclass(frozen=True)
class Line:
    t: float  # time.monotonic() when the harness read the line
    text: str


@dataclass
class Outcome:
    """What one party did: exit status (negative: the signal that ended it), output, results."""

    party: str
    returncode: int | None
    lines: list[Line]
    stderr: str
    killed_by_harness: bool = False
    results: list[dict[str, Any]] = field(default_factory=list)

    @property
    def result(self) -> dict[str, Any]:
        assert self.results, f"{self.party} reported no RESULT\n{self}"
        return self.results[-1]

    def stamp(self, word: str) -> float | None:
        """The program's own timestamp on its first line ``WORD ... <t>``, if any."""
        for line in self.lines:
            if line.text.startswith(word + " "):
                return float(line.text.split()[-1])
        return None

    def rounds_done(self) -> int:
        done = [int(line.text.split()[1]) for line in self.lines if line.text.startswith("ROUND ")]
        return max(done) + 1 if done else 0

    def __str__(self) -> str:
        out = "\n".join(line.text for line in self.lines)
        note = " (killed by the harness)" if self.killed_by_harness else ""
        return f"--- {self.party}: exit {self.returncode}{note}\n{out}\n--- stderr\n{self.stderr}"


class Party:
    """One running party; its output is read by two daemon threads as it comes."""

    def __init__(self, name: str, proc: subprocess.Popen[str]) -> None:
        self.name = name
        self.proc = proc
        self.lines: list[Line] = []
        self.stderr: list[str] = []
        self.changed = threading.Condition()
        self.killed_by_harness = False
        assert proc.stdout is not None and proc.stderr is not None
        self._threads = [
            threading.Thread(target=self._read, args=(proc.stdout, True), daemon=True),
            threading.Thread(target=self._read, args=(proc.stderr, False), daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    def _read(self, stream: IO[str], is_stdout: bool) -> None:
        for text in stream:
            with self.changed:
                if is_stdout:
                    self.lines.append(Line(time.monotonic(), text.rstrip("\n")))
                else:
                    self.stderr.append(text)
                self.changed.notify_all()

    def wait_line(self, predicate: Callable[[str], bool], deadline: float) -> Line | None:
        """The first line satisfying ``predicate``, waiting until ``deadline`` (monotonic)."""
        with self.changed:
            while True:
                for line in self.lines:
                    if predicate(line.text):
                        return line
                left = deadline - time.monotonic()
                if left <= 0 or (self.proc.poll() is not None and not self._reading()):
                    return None
                self.changed.wait(min(left, 0.1))

    def _reading(self) -> bool:
        return any(t.is_alive() for t in self._threads)

    def outcome(self, *, join: bool = True) -> Outcome:
        """What the party did so far; ``join``: first wait (5 s at most) for its output's end."""
        for thread in self._threads if join else []:
            thread.join(5)
        with self.changed:
            lines = list(self.lines)
            stderr = "".join(self.stderr)
        results = [json.loads(x.text[7:]) for x in lines if x.text.startswith("RESULT ")]
        return Outcome(
            self.name, self.proc.returncode, lines, stderr, self.killed_by_harness, results
        )


class Federation:
    """Parties of one test, their proxy, and the harness's deadline for all of it.

    Use as a context manager: on exit every process still running is continued (SIGCONT), then
    killed, and the proxy is closed, so a test that fails never leaves anything behind.
    """

    def __init__(
        self,
        parties: list[str],
        *,
        env: Mapping[str, str] | None = None,
        party_env: Mapping[str, Mapping[str, str]] | None = None,
    ) -> None:
        self.parties = parties
        # The parties' ports stay reserved while the proxy binds its own, so the kernel cannot
        # hand the proxy a port a party is about to listen on.
        reserved = [socket.socket() for _ in parties]
        try:
            for sock in reserved:
                sock.bind(("127.0.0.1", 0))
            self.real = {
                p: f"127.0.0.1:{sock.getsockname()[1]}"
                for p, sock in zip(parties, reserved, strict=True)
            }
            self.proxy = FaultProxy(
                {f"{a}->{b}": self.real[b] for a in parties for b in parties if a != b}
            )
        finally:
            for sock in reserved:
                sock.close()
        # A job name of its own: a process of another test that took a port meanwhile (ports are
        # picked free, then bound by the parties) refuses the job instead of answering for it.
        job = f"faults-{os.getpid()}-{next(_runs)}"
        self.env = {"PARTIES": ",".join(parties), "JOB": job, **(env or {})}
        self.party_env = party_env or {}
        self.running: dict[str, Party] = {}

    def addresses(self, party: str) -> dict[str, str]:
        """``party``'s addresses map: its own real address, every peer through the proxy."""
        return {
            p: self.real[p] if p == party else self.proxy.address(f"{party}->{p}")
            for p in self.parties
        }

    def link(self, a: str, b: str) -> list[str]:
        """The proxy routes of the link between ``a`` and ``b`` (both directions)."""
        return [f"{a}->{b}", f"{b}->{a}"]

    def start(self, party: str) -> Party:
        env = {
            **os.environ,
            **self.env,
            **self.party_env.get(party, {}),
            "SILO_TEST_ADDRESSES": json.dumps(self.addresses(party)),
            "PYTHONUNBUFFERED": "1",
        }
        proc = subprocess.Popen(
            [sys.executable, str(PROGRAM), party],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        self.running[party] = Party(party, proc)
        return self.running[party]

    def start_all(self) -> None:
        for party in self.parties:
            self.start(party)

    def wait_line(self, word: str, deadline: float, parties: list[str] | None = None) -> None:
        """Wait until every running party (or ``parties``) printed a line starting with WORD."""
        for name in parties or list(self.running):
            party = self.running[name]
            if party.wait_line(lambda text: text.startswith(word), deadline) is None:
                raise AssertionError(f"{name} did not print {word!r} in time\n{self.dump()}")

    def wait_round(self, round_no: int, deadline: float) -> None:
        """Wait until every running party has finished round ``round_no``."""
        for name, party in self.running.items():
            found = party.wait_line(
                lambda text: text.startswith("ROUND ") and int(text.split()[1]) >= round_no,
                deadline,
            )
            if found is None:
                raise AssertionError(f"{name} did not reach round {round_no}\n{self.dump()}")

    def signal(self, party: str, sig: signal.Signals) -> None:
        self.running[party].proc.send_signal(sig)

    def finish(self, deadline: float, parties: list[str] | None = None) -> dict[str, Outcome]:
        """Wait for the parties (all by default) until ``deadline``, killing any still running."""
        names = parties or list(self.running)
        for name in names:
            party = self.running[name]
            try:
                party.proc.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                party.killed_by_harness = True
                self._kill(party)
        return {name: self.running[name].outcome() for name in names}

    def dump(self) -> str:
        return "\n".join(str(p.outcome(join=False)) for p in self.running.values())

    def _kill(self, party: Party) -> None:
        if party.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                party.proc.send_signal(signal.SIGCONT)
                party.proc.kill()
        party.proc.wait()
        party.outcome()
        for stream in (party.proc.stdout, party.proc.stderr):
            if stream is not None:
                stream.close()

    def __enter__(self) -> Federation:
        return self

    def __exit__(self, *exc: object) -> None:
        for party in self.running.values():
            self._kill(party)
        self.proxy.close()
