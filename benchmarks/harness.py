"""Parent-side machinery: settings, free ports, party processes with deadlines, figures.

Every party is a child process ``python -m benchmarks.worker ...``. :func:`run_parties` starts a
group, waits for all of them under one deadline and kills the whole group as soon as one fails
or the deadline passes, so the suite always stops by itself.
"""

from __future__ import annotations

import json
import os
import selectors
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from .worker import RESULT_PREFIX

ROOT = Path(__file__).resolve().parent.parent


class BenchError(Exception):
    """A benchmark could not produce its figure (a party failed or timed out)."""


@dataclass(frozen=True)
class Settings:
    """What the command line asked for."""

    runs: int = 5
    smoke: bool = False
    loops: tuple[bool, ...] = (True, False)
    profile_dir: Path | None = None

    def runs_for(self, minimum: int = 1) -> int:
        return max(self.runs, minimum)


@dataclass(frozen=True)
class Spec:
    """One party process: ``benchmarks.<module>.<func>(**kwargs)``; ``role`` names it."""

    role: str
    module: str
    func: str
    kwargs: dict[str, Any]
    #: The party kills itself with SIGKILL on purpose (after printing its result).
    killed_ok: bool = False


@dataclass(frozen=True)
class Outcome:
    role: str
    spawned_ns: int
    result: dict[str, Any]


@dataclass
class Figure:
    """One row of the table: samples of one metric, and how it compares."""

    bench: str
    case: str
    loop: str
    unit: str
    samples: list[float]
    baseline: str = ""
    target: str = ""
    met: bool | None = None
    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def median(self) -> float:
        return statistics.median(self.samples) if self.samples else float("nan")

    @property
    def low(self) -> float:
        return min(self.samples) if self.samples else float("nan")

    @property
    def high(self) -> float:
        return max(self.samples) if self.samples else float("nan")


def loop_name(uvloop: bool) -> str:
    return "uvloop" if uvloop else "asyncio"


def free_ports(count: int) -> list[int]:
    """``count`` distinct free loopback ports, found by binding port 0 (all held at once)."""
    socks = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind(("127.0.0.1", 0))
            socks.append(sock)
        return [s.getsockname()[1] for s in socks]
    finally:
        for sock in socks:
            sock.close()


def addresses(parties: Sequence[str]) -> dict[str, str]:
    return {
        p: f"127.0.0.1:{port}" for p, port in zip(parties, free_ports(len(parties)), strict=True)
    }


def _tail(handle: IO[bytes], limit: int = 2000) -> str:
    handle.seek(0)
    return handle.read().decode("utf-8", "replace")[-limit:]


def _parse(role: str, out: IO[bytes], err: IO[bytes]) -> dict[str, Any]:
    out.seek(0)
    for line in reversed(out.read().decode("utf-8", "replace").splitlines()):
        if line.startswith(RESULT_PREFIX):
            result: dict[str, Any] = json.loads(line[len(RESULT_PREFIX) :])
            return result
    raise BenchError(f"party {role} printed no result; stderr:\n{_tail(err)}")


def _wait_all(
    procs: list[subprocess.Popen[bytes]], deadline: float, killed_ok: Sequence[bool]
) -> int | None:
    """Wait until every process exited or one failed (a SIGKILL is no failure where
    ``killed_ok`` says so); returns the index of a failed one."""
    running = dict(enumerate(procs))
    fds: list[int] = []
    with selectors.DefaultSelector() as sel:
        try:
            for index, proc in running.items():
                fds.append(os.pidfd_open(proc.pid))
                sel.register(fds[-1], selectors.EVENT_READ, index)
            while running:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError
                for key, _ in sel.select(left):
                    i: int = key.data
                    sel.unregister(key.fd)
                    code = running.pop(i).wait()
                    if code != 0 and not (killed_ok[i] and code == -signal.SIGKILL):
                        return i
        finally:
            for fd in fds:
                os.close(fd)
    return None


def run_parties(
    specs: Sequence[Spec], *, uvloop: bool, timeout: float, settings: Settings, tag: str = ""
) -> list[Outcome]:
    """Start one process per spec, wait for all (bounded by ``timeout`` seconds), and return
    their results in order. Raises :class:`BenchError` (after killing the group) if one fails."""
    procs: list[subprocess.Popen[bytes]] = []
    files: list[tuple[IO[bytes], IO[bytes]]] = []
    out: IO[bytes]
    err: IO[bytes]
    spawned: list[int] = []
    env = dict(os.environ)
    env["SILO_UVLOOP"] = "1" if uvloop else "0"
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    try:
        for spec in specs:
            out, err = tempfile.TemporaryFile(), tempfile.TemporaryFile()
            files.append((out, err))
            cmd = [sys.executable, "-m", "benchmarks.worker", spec.module, spec.func]
            cmd.append(json.dumps({**spec.kwargs, "uvloop": uvloop}))
            child_env = env
            if settings.profile_dir is not None:
                prefix = settings.profile_dir / f"{tag or spec.module}-{loop_name(uvloop)}"
                child_env = {**env, "BENCH_PROFILE": str(prefix)}
            spawned.append(time.monotonic_ns())
            procs.append(subprocess.Popen(cmd, stdout=out, stderr=err, env=child_env, cwd=ROOT))
        try:
            failed = _wait_all(procs, time.monotonic() + timeout, [s.killed_ok for s in specs])
        except TimeoutError:
            raise BenchError(
                f"{specs[0].module}: parties still running after {timeout:.0f} s; stderr of "
                f"{specs[0].role}:\n{_tail(files[0][1])}"
            ) from None
        if failed is not None:
            raise BenchError(
                f"{specs[failed].module}: party {specs[failed].role} exited with status "
                f"{procs[failed].returncode}; stderr:\n{_tail(files[failed][1])}"
            )
        return [
            Outcome(spec.role, t, _parse(spec.role, out, err))
            for spec, t, (out, err) in zip(specs, spawned, files, strict=True)
        ]
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        for out, err in files:
            out.close()
            err.close()


def peak_rss_mib() -> float:
    """This process's peak resident set size (VmHWM) in MiB."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status")
