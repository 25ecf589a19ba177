"""Helpers for the command-line, example and notebook tests.

Federation files are copied into ``tmp_path`` with free loopback ports and an absolute
``program``, so tests never use a fixed port and can run from any directory.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from silo.certs import Issued, make_certs

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"


def free_ports(n: int) -> list[int]:
    """``n`` distinct free loopback ports (bound at once, then released)."""
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def write_federation(
    directory: Path,
    program: Path | str,
    parties: list[str],
    *,
    name: str = "fed.yaml",
    **extra: Any,
) -> Path:
    """Write a federation file for ``program`` with ``parties`` on free loopback ports."""
    addresses = {
        p: {"address": f"127.0.0.1:{port}"}
        for p, port in zip(parties, free_ports(len(parties)), strict=True)
    }
    data = {"job_name": "test", "program": str(program), "parties": addresses, **extra}
    path = directory / name
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def copy_federation(source: Path, directory: Path, **overrides: Any) -> Path:
    """Copy ``source`` into ``directory`` with free ports and ``program`` made absolute."""
    data = yaml.safe_load(source.read_text())
    program = str(data["program"])
    if program.endswith(".py") or "/" in program:
        data["program"] = str((source.parent / program).resolve())
    ports = free_ports(len(data["parties"]))
    for entry, port in zip(data["parties"].values(), ports, strict=True):
        entry["address"] = f"127.0.0.1:{port}"
    data.update(overrides)
    path = directory / source.name
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


@dataclass
class Finished:
    returncode: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr

    def __str__(self) -> str:
        return f"exit {self.returncode}\n--- stdout\n{self.stdout}\n--- stderr\n{self.stderr}"


def silo_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of a child ``python -m silo``: this checkout first on the path."""
    path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    return {**os.environ, "PYTHONPATH": path, "PYTHONUNBUFFERED": "1", **(extra or {})}


def start_silo(*args: str, cwd: Path | None = None) -> subprocess.Popen[str]:
    """Start ``python -m silo ARGS`` with pipes for its output."""
    return subprocess.Popen(
        [sys.executable, "-m", "silo", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
        cwd=cwd or ROOT,
        env=silo_env(),
    )


def finish(proc: subprocess.Popen[str], timeout: float = 60.0) -> Finished:
    """Wait for ``proc``; kill it (and fail later assertions) if it outlives ``timeout``."""
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        err += f"\n[test] killed after {timeout} s"
    return Finished(proc.returncode, out, err)


def run_silo(*args: str, timeout: float = 60.0, cwd: Path | None = None) -> Finished:
    """Run ``python -m silo ARGS`` to completion."""
    return finish(start_silo(*args, cwd=cwd), timeout)


def wait_for_files(paths: list[Path], timeout: float = 20.0) -> None:
    """Wait until every file in ``paths`` exists (a program's way to say it is ready)."""
    deadline = time.monotonic() + timeout
    while not all(p.exists() for p in paths):
        if time.monotonic() > deadline:
            missing = [str(p) for p in paths if not p.exists()]
            raise AssertionError(f"not created after {timeout} s: {missing}")
        time.sleep(0.05)


def make_tls_files(
    directory: Path, parties: list[str], *, self_signed: bool = False
) -> list[Issued]:
    """With silo's own ``silo.certs``: a CA (``ca.pem``, ``ca.key``) and, per party,
    ``NAME.pem`` and ``NAME.key`` signed by it (or self-signed, without a CA)."""
    hosts = dict.fromkeys(parties, "127.0.0.1")
    return make_certs(directory, hosts, self_signed=self_signed, days=1, echo=lambda _: None)
