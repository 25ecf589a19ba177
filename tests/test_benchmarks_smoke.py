"""The benchmark suite still runs end to end: ``python -m benchmarks --smoke`` (no timings)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BENCHMARKS = (
    "tiny",
    "transfer",
    "error",
    "peerloss",
    "startup",
    "fanin",
    "memory",
    "scale",
    "executors",
)


@pytest.mark.timeout(180)
def test_smoke_suite_writes_every_benchmark(tmp_path: Path) -> None:
    output = tmp_path / "b.md"
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--smoke", "--output", str(output)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=170,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    page = output.read_text()
    table_rows = [line for line in page.splitlines() if line.startswith("| ")]
    for name in BENCHMARKS:
        assert any(row.startswith(f"| {name} |") for row in table_rows), name
        assert any(line.startswith(f"{name} ") for line in proc.stdout.splitlines()), name
    for loop in ("uvloop", "asyncio"):
        assert any(f"| {loop} |" in row for row in table_rows), loop
    assert "## Machine" in page and "## How to rerun" in page
