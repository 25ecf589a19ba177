"""The live status line of ``silo run``: parties report to a file, the launcher draws on a tty."""

from __future__ import annotations

import io
import json
import logging
import os
import pty
import re
import select
import subprocess
import sys
import time
from pathlib import Path

import pytest

from silo.progress import (
    StatusDisplay,
    format_bytes,
    render,
    reporting,
    status_record,
    write_status,
)
from silo.stats import Counters

from _cli_support import ROOT, run_silo, silo_env, write_federation

PROGRAM = """\
import asyncio
import silo

@silo.remote
def add(a, b):
    return a + b

async def main(party):
    total = 0
    for i in range(3):
        total = add.party("bob").remote(add.party("alice").remote(i, 1), total)
        await asyncio.sleep(0.8)
    print(party, "total", await silo.get(total))
"""

_STATUS = re.compile(
    r"(?P<party>alice|bob): +(?P<done>\d+) calls done, (?P<running>\d+) running "
    r"\| sent (?P<sent>[\d.]+ (?:B|KiB|MiB|GiB)) \| received [\d.]+ (?:B|KiB|MiB|GiB)"
)


def test_format_and_render() -> None:
    assert [format_bytes(n) for n in (0, 800, 5120, 3 << 20, 5 << 40)] == [
        "0 B",
        "800 B",
        "5.0 KiB",
        "3.0 MiB",
        "5120.0 GiB",
    ]
    record = {"done": 12, "running": 1, "sent": 5120, "received": 800}
    assert render("bob", record, 5) == (
        "bob:   12 calls done, 1 running | sent 5.0 KiB | received 800 B"
    )
    assert render("alice", None, 5) == "alice: starting"


def test_status_files_are_written_whole_and_failures_are_quiet(tmp_path: Path) -> None:
    path = tmp_path / "alice.status"
    stats = Counters(["bob"]).snapshot("alice")
    assert write_status(str(path), status_record(stats))
    assert json.loads(path.read_text()) == {"done": 0, "running": 0, "sent": 0, "received": 0}
    assert not write_status(str(tmp_path / "gone" / "alice.status"), status_record(stats))


def test_the_display_erases_and_redraws_its_block(tmp_path: Path) -> None:
    out = io.StringIO()
    display = StatusDisplay(["alice", "bob"], tmp_path, out)
    (tmp_path / "alice.status").write_text('{"done":2,"running":1,"sent":10,"received":20}')
    (tmp_path / "bob.status").write_text('{"done":"x"}')
    display.refresh()
    display.draw()
    first = out.getvalue()
    assert "alice: 2 calls done, 1 running | sent 10 B | received 20 B\n" in first
    assert "bob:   starting\n" in first
    display.draw()
    assert out.getvalue()[len(first) :].startswith("\x1b[2F\x1b[J")
    display.clear()
    display.clear()
    assert out.getvalue().count("\x1b[2F\x1b[J") == 2


class _FakeRuntime:
    party = "alice"
    log = logging.getLogger("silo.test")

    def __init__(self) -> None:
        self.counters = Counters(["bob"])

    def stats(self):  # type: ignore[no-untyped-def]
        return self.counters.snapshot(self.party)


async def test_reporting_writes_periodically_and_at_the_end(tmp_path: Path) -> None:
    import asyncio

    runtime = _FakeRuntime()
    path = tmp_path / "alice.status"
    async with reporting(runtime, str(path), interval=0.05):  # type: ignore[arg-type]
        await asyncio.sleep(0.01)
        assert json.loads(path.read_text())["done"] == 0
        runtime.counters.call_ended(runtime.counters.call_started("f", 1))
        deadline = time.monotonic() + 5
        while json.loads(path.read_text())["done"] != 1:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.01)
        runtime.counters.call_ended(runtime.counters.call_started("f", 2))
    assert json.loads(path.read_text())["done"] == 2


def _run_on_a_terminal(*args: str, timeout: float = 60) -> tuple[int, str]:
    """Run ``python -m silo ARGS`` with stdout and stderr on a pseudo-terminal."""
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "silo", *args],
        stdin=subprocess.DEVNULL,
        stdout=slave,
        stderr=slave,
        env=silo_env({"COLUMNS": "200"}),
        cwd=ROOT,
    )
    os.close(slave)
    chunks: list[bytes] = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.2)
            if not ready:
                if proc.poll() is not None:
                    break
                continue
            try:
                data = os.read(master, 65536)
            except OSError:
                break
            if not data:
                break
            chunks.append(data)
        code = proc.wait(timeout=max(1.0, deadline - time.monotonic()))
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)
    return code, b"".join(chunks).decode("utf-8", "replace")


@pytest.fixture
def federation(tmp_path: Path) -> Path:
    program = tmp_path / "adds.py"
    program.write_text(PROGRAM)
    return write_federation(tmp_path, program, ["alice", "bob"])


def test_status_lines_on_a_terminal(federation: Path) -> None:
    code, output = _run_on_a_terminal("run", str(federation))
    assert code == 0, output
    assert "alice total 6" in output and "bob total 6" in output
    lines = [m for m in _STATUS.finditer(output)]
    parties = {m["party"] for m in lines}
    assert parties == {"alice", "bob"}, output
    final = {m["party"]: m for m in lines}
    assert (int(final["alice"]["done"]), int(final["bob"]["done"])) == (3, 3), output
    assert final["alice"]["sent"] != "0 B" and final["bob"]["sent"] != "0 B", output
    assert "\x1b[J" in output


def test_no_status_lines_with_no_progress(federation: Path) -> None:
    code, output = _run_on_a_terminal("run", str(federation), "--no-progress")
    assert code == 0, output
    assert "alice total 6" in output
    assert not _STATUS.search(output) and "\x1b[" not in output, output


def test_no_status_lines_when_not_on_a_terminal(federation: Path) -> None:
    result = run_silo("run", str(federation))
    assert result.returncode == 0, result
    assert "alice total 6" in result.stdout
    assert not _STATUS.search(result.output) and "\x1b[" not in result.output, result
    assert not list(federation.parent.glob("*.status"))
